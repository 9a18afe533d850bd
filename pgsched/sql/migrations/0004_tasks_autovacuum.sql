-- pgsched schema, revision 0004: autovacuum visits pgsched.tasks after a fixed share of 2%
-- dead rows (plus 1,000), not PostgreSQL's default 20%.
--
-- Every claimed task leaves a dead entry in the ready index until a vacuum removes it, and a
-- claim walks those entries before it reaches a live one. Beside 1M rows due later, a drain
-- of 100k tasks is 9% of the table: under the default threshold, so autovacuum never came,
-- and every one-row claim kept reading ~1,100 index pages (python bench/probes.py
-- vacuum-after-drain). Settings of the table only: the server's own are left alone.
ALTER TABLE pgsched.tasks SET (autovacuum_vacuum_scale_factor = 0.02,
                               autovacuum_vacuum_threshold = 1000);
