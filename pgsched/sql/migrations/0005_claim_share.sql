-- pgsched schema, revision 0005: the claim checks only this worker's own row.
--
-- The load-weighted share moves to the heartbeat (worker.sql, `heartbeat`): load samples
-- change only with heartbeats, so the share is computed once per heartbeat instead of on
-- every claim, and the worker turns it into a number of tasks it holds at once
-- (pgsched/worker/share.py). What remains per claim is what must be exact at claim time:
-- the worker is active (not paused, draining or declared dead) and under its ceilings.
--
-- One lookup by the unique name index and no scan of the fleet's rows. The old function's
-- scan over pgsched.workers, planned on a session with sequential scans disabled, cost
-- 1e10 before PostgreSQL 18 and crossed every JIT threshold: each weighted claim compiled
-- for 120-200 ms on servers with JIT on. Nothing here can cost that much on any version.
DROP FUNCTION pgsched.claim_limit(text, text[], integer, boolean, real, real,
                                  double precision, timestamptz);

-- k: the free slots asked for; 0 when the worker is not active, or, with weighting on, when
-- its last heartbeat's load is above a ceiling.
CREATE FUNCTION pgsched.claim_limit(
    worker text, slots integer, weighted boolean, cpu_ceiling real, memory_ceiling real
) RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    my_status text;
    cpu real;
    memory real;
BEGIN
    SELECT w.status, w.cpu_usage, w.memory_usage INTO my_status, cpu, memory
    FROM pgsched.workers w WHERE w.name = worker;
    IF my_status IS DISTINCT FROM 'active' THEN
        RETURN 0;
    ELSIF weighted AND (cpu > cpu_ceiling OR memory > memory_ceiling) THEN
        RETURN 0;
    END IF;
    RETURN slots;
END
$$;
