-- The progress trigger as revision 0001 made it.
CREATE OR REPLACE FUNCTION pgsched.workflow_task_finished() RETURNS trigger
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
