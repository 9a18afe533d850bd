-- pgsched schema, revision 0006: the durations a task or schedule holds are at most 100 years
-- (interval '36500 days'; pgsched.models.DURATION_MAX_DAYS).
--
-- An interval holds far more, but a worker adds them to now() and waits on them: a row's
-- backoff_base of '1000000 years' made its retry's run_at "interval out of range", and the task
-- stayed running; a timeout of '300 years' overflowed the worker's timeout thread. The worker
-- now clamps what it reads too; these CHECKs keep such values from being written. Values
-- already over the bound are lowered to it first (a timeout or a delay of a century is no
-- practical limit either way).
UPDATE pgsched.tasks SET timeout = interval '36500 days' WHERE timeout > interval '36500 days';
UPDATE pgsched.tasks SET backoff_base = interval '36500 days'
WHERE backoff_base > interval '36500 days';
UPDATE pgsched.tasks SET backoff_cap = interval '36500 days'
WHERE backoff_cap > interval '36500 days';
UPDATE pgsched.schedules SET timeout = interval '36500 days'
WHERE timeout > interval '36500 days';

ALTER TABLE pgsched.tasks
    ADD CONSTRAINT tasks_timeout_bounded CHECK (timeout <= interval '36500 days'),
    ADD CONSTRAINT tasks_backoff_base_bounded CHECK (backoff_base <= interval '36500 days'),
    ADD CONSTRAINT tasks_backoff_cap_bounded CHECK (backoff_cap <= interval '36500 days');
ALTER TABLE pgsched.schedules
    ADD CONSTRAINT schedules_timeout_bounded CHECK (timeout <= interval '36500 days');
