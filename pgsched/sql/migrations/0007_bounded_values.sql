-- pgsched schema, revision 0007: a row holds only what the code can handle.
--
-- Durations a task or schedule holds are at most 100 years (interval '36500 days';
-- pgsched.models.DURATION_MAX_DAYS). An interval holds far more, but a worker adds them to
-- now() and waits on them: a row's backoff_base of '1000000 years' made its retry's run_at
-- "interval out of range", and the task stayed running; a timeout of '300 years' overflowed
-- the worker's timeout thread; a schedule's next tick past year 9999 cannot be computed.
-- The worker clamps what it reads too; these CHECKs keep such values from being written.
-- Values already over the bound are lowered to it first.
UPDATE pgsched.tasks SET timeout = interval '36500 days' WHERE timeout > interval '36500 days';
UPDATE pgsched.tasks SET backoff_base = interval '36500 days'
WHERE backoff_base > interval '36500 days';
UPDATE pgsched.tasks SET backoff_cap = interval '36500 days'
WHERE backoff_cap > interval '36500 days';
UPDATE pgsched.schedules SET timeout = interval '36500 days'
WHERE timeout > interval '36500 days';
UPDATE pgsched.schedules SET every = interval '36500 days' WHERE every > interval '36500 days';

-- A task's run_at is a finite time from 1900 to 9999 (pgsched.models.TIME_MIN/TIME_MAX):
-- 'infinity', '-infinity' and years past 9999 are valid timestamptz values that Python's
-- datetime cannot hold, and every read of such a row failed (list, status, top). Times
-- already outside are moved to the nearest bound.
UPDATE pgsched.tasks
SET run_at = greatest(least(run_at, timestamptz '9999-01-01 00:00+00'),
                      timestamptz '1900-01-01 00:00+00')
WHERE NOT run_at BETWEEN timestamptz '1900-01-01 00:00+00' AND timestamptz '9999-01-01 00:00+00';

-- A ready task (pending, retrying) has an attempt left: the claim skips one without, so it
-- waited for good. Those already there fail, as a run out of attempts does. A blocked task
-- belongs to a workflow (its parents unblock it); one without is made pending.
WITH f AS (
    UPDATE pgsched.tasks
    SET status = 'failed', finished_at = now(), version = version + 1,
        last_error = coalesce(last_error, 'no attempts left')
    WHERE status IN ('pending', 'retrying') AND attempts >= max_attempts
    RETURNING id, queue, task_type, payload, attempts, last_error
)
INSERT INTO pgsched.dead_letter (task_id, queue, task_type, payload, attempts, last_error)
SELECT id, queue, task_type, payload, attempts, last_error FROM f
ON CONFLICT ON CONSTRAINT dead_letter_task_unique DO NOTHING;
UPDATE pgsched.tasks SET status = 'pending', version = version + 1
WHERE status = 'blocked' AND workflow_id IS NULL;

ALTER TABLE pgsched.tasks
    ADD CONSTRAINT tasks_timeout_bounded CHECK (timeout <= interval '36500 days'),
    ADD CONSTRAINT tasks_backoff_base_bounded CHECK (backoff_base <= interval '36500 days'),
    ADD CONSTRAINT tasks_backoff_cap_bounded CHECK (backoff_cap <= interval '36500 days'),
    ADD CONSTRAINT tasks_run_at_range CHECK (
        run_at BETWEEN timestamptz '1900-01-01 00:00+00' AND timestamptz '9999-01-01 00:00+00'),
    ADD CONSTRAINT tasks_ready_has_attempts CHECK (
        status NOT IN ('pending', 'retrying') OR attempts < max_attempts),
    ADD CONSTRAINT tasks_blocked_in_workflow CHECK (
        status <> 'blocked' OR workflow_id IS NOT NULL);
ALTER TABLE pgsched.schedules
    ADD CONSTRAINT schedules_timeout_bounded CHECK (timeout <= interval '36500 days'),
    ADD CONSTRAINT schedules_every_bounded CHECK (every <= interval '36500 days');
