-- pgsched schema, revision 0015: finished tasks leave the hot table.
--
-- pgsched.tasks keeps the tasks that can still change: blocked, pending, running and retrying.
-- A task's completion that ends it (succeeded, failed, cancelled) moves its row to
-- pgsched.finished_tasks in the completion's own statement, so the hot table holds little more
-- than the work in flight, its indexes stay small, and a finished task costs one INSERT into a
-- table that is never updated instead of one more row version (and index entries) in the hot
-- table. pgsched.all_tasks shows both tables as one.
--
-- Tasks with a unique key stay in pgsched.tasks when they finish: an idempotency key, a
-- workflow node or a schedule tick is unique only within one table, and a finished task's key
-- must keep refusing its duplicate. So do tasks that end outside a worker's completion
-- (cancelled before they ran, failed by the recovery of a dead worker); the retention prune
-- removes finished rows from both tables.
--
-- The dependency edges lose their foreign keys to pgsched.tasks: each key checked every
-- deleted task row (the move is a DELETE), about 8 µs per task for the two of them. Workflow
-- tasks, the only ones with edges, never move; the prune deletes their edges with them.

ALTER TABLE pgsched.task_dependencies DROP CONSTRAINT task_dependencies_task_id_fkey;
ALTER TABLE pgsched.task_dependencies DROP CONSTRAINT task_dependencies_depends_on_fkey;

-- The same columns in the same order as pgsched.tasks (a move is INSERT ... SELECT *): a
-- revision that adds a column to one adds it to the other. No copy of the CHECKs of
-- pgsched.tasks: its rows passed them on the way in, and a row from before a CHECK was added
-- (NOT VALID) must move all the same, not fail its completion's whole batch. Never updated:
-- no autovacuum setting of its own, and the finish time indexed by BRIN (rows come in finish
-- order) for the prune.
CREATE TABLE pgsched.finished_tasks (
    LIKE pgsched.tasks INCLUDING DEFAULTS,
    CONSTRAINT finished_tasks_pkey PRIMARY KEY (id),
    CONSTRAINT finished_tasks_finished CHECK (
        status IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL)
);
CREATE INDEX finished_tasks_finished_brin ON pgsched.finished_tasks USING brin (finished_at);

WITH moved AS (
    DELETE FROM pgsched.tasks
    WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at IS NOT NULL
      AND idempotency_key IS NULL AND workflow_id IS NULL AND schedule_id IS NULL
    RETURNING *
)
INSERT INTO pgsched.finished_tasks SELECT * FROM moved;

-- Every task, wherever it is stored: what `pgsched status`, `list`, the API and the dashboard
-- read.
CREATE VIEW pgsched.all_tasks AS
    SELECT * FROM pgsched.tasks
    UNION ALL
    SELECT * FROM pgsched.finished_tasks;

-- A failed task that moved is dead-lettered all the same (tasks_alert fires on the updates
-- that stay in pgsched.tasks).
CREATE TRIGGER finished_tasks_alert
    AFTER INSERT ON pgsched.finished_tasks
    FOR EACH ROW WHEN (NEW.status = 'failed' AND NEW.task_type <> 'pgsched.alert')
    EXECUTE FUNCTION pgsched.alert_task_changed();

-- `pgsched retry` and `dlq requeue` on a task that moved: its row back into pgsched.tasks as
-- it is (failed or cancelled, nothing to claim), where the retry statement then sets it
-- pending. SECURITY DEFINER: putting a shell task back is not submitting one (the INSERT would
-- otherwise meet check_shell_submitter), and the function moves rows and changes none.
CREATE FUNCTION pgsched.reopen_tasks(ids bigint[]) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgsched AS $$
    WITH back AS (
        DELETE FROM pgsched.finished_tasks
        WHERE id = ANY(ids) AND status IN ('failed', 'cancelled')
        RETURNING *)
    INSERT INTO pgsched.tasks SELECT * FROM back;
$$;
REVOKE ALL ON FUNCTION pgsched.reopen_tasks(bigint[]) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_read') THEN
        GRANT SELECT ON pgsched.finished_tasks, pgsched.all_tasks TO pgsched_read;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_worker') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgsched.finished_tasks TO pgsched_worker;
        GRANT SELECT ON pgsched.all_tasks TO pgsched_worker;
        GRANT EXECUTE ON FUNCTION pgsched.reopen_tasks(bigint[]) TO pgsched_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgsched.finished_tasks TO pgsched_admin;
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgsched.all_tasks TO pgsched_admin;
        GRANT EXECUTE ON FUNCTION pgsched.reopen_tasks(bigint[]) TO pgsched_admin;
    END IF;
END
$$;
