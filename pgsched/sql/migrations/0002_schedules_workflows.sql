-- pgsched schema, revision 0002: schedule wake-ups and workflow (DAG) progress, in the database
-- so that they work whoever changes the rows. Applied by
-- migrations/versions/0002_schedules_workflows.py.

-- Schedulers sleep until the earliest next_tick; a changed definition wakes them early.
-- Their own advance of next_tick (forward) notifies nobody.
CREATE FUNCTION pgsched.notify_schedule_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pgsched_schedules', NEW.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER schedules_notify_insert
    AFTER INSERT ON pgsched.schedules
    FOR EACH ROW EXECUTE FUNCTION pgsched.notify_schedule_changed();

CREATE TRIGGER schedules_notify_update
    AFTER UPDATE ON pgsched.schedules
    FOR EACH ROW WHEN (
        ROW(NEW.cron, NEW.every, NEW.timezone, NEW.enabled, NEW.paused)
            IS DISTINCT FROM ROW(OLD.cron, OLD.every, OLD.timezone, OLD.enabled, OLD.paused)
        OR NEW.next_tick IS NULL
        OR OLD.next_tick IS NULL
        OR NEW.next_tick < OLD.next_tick)
    EXECUTE FUNCTION pgsched.notify_schedule_changed();

CREATE INDEX schedules_next_tick_idx ON pgsched.schedules (next_tick)
    WHERE enabled AND NOT paused;

-- Workflow progress. Fires only for tasks of a workflow reaching a terminal status, so it costs
-- nothing elsewhere. Whoever completes the task (a worker, the CLI, plain SQL):
--   succeeded -> children whose parents have all succeeded go blocked -> pending (and NOTIFY);
--   failed    -> unfinished descendants are cancelled ('upstream failed'), the workflow fails;
--   cancelled -> unfinished descendants are cancelled ('upstream cancelled');
-- and once no task of the workflow is unfinished, the workflow gets its final status.
-- Completions within one workflow serialize on the workflow row (FOR UPDATE), so two parents
-- finishing in concurrent transactions cannot both miss that the other one is done: the second
-- waits for the first to commit, and each statement below takes a fresh snapshot.
CREATE FUNCTION pgsched.workflow_task_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wf_status text;
    woken bigint;
BEGIN
    -- Rows this function changes fire it again (nested): the outer call has done the work.
    IF pg_trigger_depth() > 1 THEN
        RETURN NULL;
    END IF;

    SELECT w.status INTO wf_status FROM pgsched.workflows w
    WHERE w.id = NEW.workflow_id FOR UPDATE;

    IF NEW.status = 'succeeded' THEN
        WITH ready AS (
            UPDATE pgsched.tasks c
            SET status = 'pending', run_at = greatest(c.run_at, now()), version = c.version + 1
            FROM pgsched.task_dependencies d
            WHERE d.depends_on = NEW.id AND c.id = d.task_id AND c.status = 'blocked'
              AND NOT EXISTS (
                  SELECT 1 FROM pgsched.task_dependencies d2
                  JOIN pgsched.tasks p ON p.id = d2.depends_on
                  WHERE d2.task_id = c.id AND p.status <> 'succeeded')
            RETURNING c.queue
        )
        SELECT count(pg_notify('pgsched', q.queue)) INTO woken
        FROM (SELECT DISTINCT queue FROM ready) q;
    ELSE
        WITH RECURSIVE below AS (
            SELECT d.task_id AS id FROM pgsched.task_dependencies d WHERE d.depends_on = NEW.id
            UNION
            SELECT d.task_id FROM pgsched.task_dependencies d JOIN below b ON d.depends_on = b.id
        )
        UPDATE pgsched.tasks c
        SET status = 'cancelled', finished_at = now(), version = c.version + 1,
            last_error = CASE WHEN NEW.status = 'failed' THEN 'upstream failed'
                              ELSE 'upstream cancelled' END
        FROM below
        WHERE c.id = below.id AND c.status IN ('blocked', 'pending', 'retrying');
        IF NEW.status = 'failed' AND wf_status = 'running' THEN
            UPDATE pgsched.workflows SET status = 'failed' WHERE id = NEW.workflow_id;
            wf_status := 'failed';
        END IF;
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM pgsched.tasks t
        WHERE t.workflow_id = NEW.workflow_id
          AND t.status NOT IN ('succeeded', 'failed', 'cancelled'))
    THEN
        UPDATE pgsched.workflows w
        SET finished_at = coalesce(w.finished_at, now()),
            status = CASE WHEN w.status <> 'running' THEN w.status
                          WHEN EXISTS (SELECT 1 FROM pgsched.tasks t
                                       WHERE t.workflow_id = w.id AND t.status = 'failed')
                               THEN 'failed'
                          WHEN EXISTS (SELECT 1 FROM pgsched.tasks t
                                       WHERE t.workflow_id = w.id AND t.status = 'cancelled')
                               THEN 'cancelled'
                          ELSE 'succeeded' END
        WHERE w.id = NEW.workflow_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_workflow_progress
    AFTER UPDATE OF status ON pgsched.tasks
    FOR EACH ROW WHEN (
        NEW.workflow_id IS NOT NULL
        AND NEW.status IN ('succeeded', 'failed', 'cancelled')
        AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION pgsched.workflow_task_finished();
