DROP FUNCTION IF EXISTS pgsched.claim_limit(text, text[], integer, boolean, real, real,
                                            double precision, timestamptz);
