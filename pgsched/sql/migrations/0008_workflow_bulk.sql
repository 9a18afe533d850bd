-- pgsched schema, revision 0008: workflow operations are set-based.
--
-- `cancel --workflow` was one UPDATE of the workflow's tasks, but the progress trigger ran for
-- every row it cancelled, and each run searched the task's descendants and the workflow's
-- unfinished tasks: 1k tasks took 4.8 s, 10k 48 s. The trigger now stands aside while the
-- transaction has pgsched.workflow_bulk = 'on' (set_config(..., true): for that transaction
-- only), and the cancel settles the workflow in one more statement (workflow_settle in
-- pgsched/sql/workflows.sql). Every other path (a worker's completion, plain SQL) runs the
-- trigger as before.
CREATE OR REPLACE FUNCTION pgsched.workflow_task_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wf_status text;
    woken bigint;
BEGIN
    -- Rows this function changes fire it again (nested): the outer call has done the work.
    -- A set-based statement over a whole workflow (cancel) sets pgsched.workflow_bulk for
    -- its transaction and settles the workflow itself: run per row, this function's search
    -- of the descendants and of the unfinished tasks made such a statement quadratic.
    IF pg_trigger_depth() > 1
       OR coalesce(current_setting('pgsched.workflow_bulk', true), '') = 'on' THEN
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
