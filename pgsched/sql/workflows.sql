-- Workflows (DAGs): submission, reading, cancel, retry (pgsched/workflows.py). Progress
-- (blocked -> pending, upstream failure, the workflow's final status) is the trigger
-- pgsched.workflow_task_finished() in migrations/0001_initial.sql.

-- name: workflow_insert :scalar
-- The whole DAG in one statement: the workflow, its tasks (roots pending, the rest blocked)
-- and the edges, matched by node name. The insert trigger wakes workers for the roots.
WITH wf AS (
    INSERT INTO pgsched.workflows (name, description)
    VALUES (%(name)s::text, %(description)s::text) RETURNING id
), t AS (
    INSERT INTO pgsched.tasks
        (workflow_id, workflow_node, task_type, payload, queue, priority, max_attempts,
         timeout, status)
    SELECT wf.id, u.node, u.task_type, u.payload, coalesce(u.queue, 'default'),
           coalesce(u.priority, 0), coalesce(u.max_attempts, 3), u.timeout, u.status
    FROM wf, unnest(%(nodes)s::text[], %(task_types)s::text[], %(payloads)s::jsonb[],
                    %(queues)s::text[], %(priorities)s::int[], %(max_attempts)s::int[],
                    %(timeouts)s::interval[], %(statuses)s::text[]) WITH ORDINALITY
         AS u(node, task_type, payload, queue, priority, max_attempts, timeout, status, ord)
    ORDER BY u.ord
    RETURNING id, workflow_node
), edges AS (
    INSERT INTO pgsched.task_dependencies (task_id, depends_on)
    SELECT c.id, p.id
    FROM unnest(%(children)s::text[], %(parents)s::text[]) AS e(child, parent)
    JOIN t c ON c.workflow_node = e.child
    JOIN t p ON p.workflow_node = e.parent
)
SELECT id FROM wf;

-- name: workflow_get :one
SELECT id, name, status, created_at, finished_at FROM pgsched.workflows WHERE id = %(id)s::bigint;

-- name: workflow_summary :one
-- A workflow with its task counts (GET /api/v1/dags/{id}).
SELECT w.id, w.name, w.description, w.status, w.created_at, w.finished_at,
       count(t.id) AS total_tasks,
       count(t.id) FILTER (WHERE t.status = 'succeeded') AS completed_tasks,
       count(t.id) FILTER (WHERE t.status = 'failed') AS failed_tasks,
       count(t.id) FILTER (WHERE t.status = 'cancelled') AS cancelled_tasks,
       count(t.id) FILTER (WHERE t.status = 'running') AS running_tasks
FROM pgsched.workflows w
LEFT JOIN pgsched.tasks t ON t.workflow_id = w.id
WHERE w.id = %(id)s::bigint
GROUP BY w.id;

-- name: workflow_lock :one
-- Serializes cancel/retry with the progress trigger, which takes the same row lock.
SELECT id, name, status FROM pgsched.workflows WHERE id = %(id)s::bigint FOR UPDATE;

-- name: workflow_tasks :many
-- Set-based: the parents' names are gathered in one aggregate over the workflow's edges and
-- joined once. A correlated sub-select per task was planned, on a freshly filled table
-- without statistics, as a sequential scan of the tasks for every task: a 10k-task workflow
-- took 20 s (EXPLAIN ANALYZE), quadratic in its size.
SELECT t.id, t.workflow_node AS name, t.task_type, t.status, t.queue, t.priority, t.attempts,
       t.max_attempts, t.created_at, t.started_at, t.finished_at, t.last_error, t.result,
       t.assigned_worker, t.cancel_requested,
       coalesce(dep.names, '{}'::text[]) AS depends_on
FROM pgsched.tasks t
LEFT JOIN (
    SELECT d.task_id, array_agg(p.workflow_node ORDER BY p.workflow_node) AS names
    FROM pgsched.tasks p
    JOIN pgsched.task_dependencies d ON d.depends_on = p.id
    WHERE p.workflow_id = %(id)s::bigint
    GROUP BY d.task_id
) dep ON dep.task_id = t.id
WHERE t.workflow_id = %(id)s::bigint
ORDER BY t.id;

-- name: workflow_mark_cancelled :exec
UPDATE pgsched.workflows SET status = 'cancelled'
WHERE id = %(id)s::bigint AND status = 'running';

-- name: workflow_bulk :scalar
-- For the rest of the transaction, the progress trigger leaves this workflow's rows to the
-- statements that follow (revision 0008): they settle it set-based.
SELECT set_config('pgsched.workflow_bulk', %(on)s::text, true);

-- name: workflow_watch_client :scalar
-- For the rest of the transaction, a statement whose client has gone stops within 2 s
-- (PostgreSQL 14+ polls the socket during a statement) instead of running on to its end:
-- a large workflow's cancel went on after its client was killed. A setting of the
-- transaction only, so it passes PgBouncer in transaction mode too.
SELECT set_config('client_connection_check_interval', '2000', true);

-- name: workflow_settle :exec
-- After a set-based change: once no task of the workflow is unfinished, its final status and
-- finish time, as the progress trigger gives them.
UPDATE pgsched.workflows w
SET finished_at = coalesce(w.finished_at, now()),
    status = CASE WHEN w.status <> 'running' THEN w.status
                  WHEN EXISTS (SELECT 1 FROM pgsched.tasks t
                               WHERE t.workflow_id = w.id AND t.status = 'failed') THEN 'failed'
                  WHEN EXISTS (SELECT 1 FROM pgsched.tasks t
                               WHERE t.workflow_id = w.id AND t.status = 'cancelled')
                       THEN 'cancelled'
                  ELSE 'succeeded' END
WHERE w.id = %(id)s::bigint
  AND NOT EXISTS (SELECT 1 FROM pgsched.tasks t
                  WHERE t.workflow_id = w.id
                    AND t.status NOT IN ('succeeded', 'failed', 'cancelled'));

-- name: workflow_cancel_tasks :one
-- Unstarted tasks are cancelled now; running ones get a cancel request their worker honours.
WITH c AS (
    UPDATE pgsched.tasks t
    SET status = CASE WHEN t.status = 'running' THEN t.status ELSE 'cancelled' END,
        cancel_requested = (t.status = 'running'),
        finished_at = CASE WHEN t.status = 'running' THEN NULL ELSE now() END,
        last_error = CASE WHEN t.status = 'running' THEN t.last_error
                          ELSE 'workflow cancelled' END,
        version = t.version + 1
    WHERE t.workflow_id = %(id)s::bigint
      AND t.status IN ('blocked', 'pending', 'retrying', 'running')
    RETURNING t.status
)
SELECT count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status = 'running') AS cancel_requested
FROM c;

-- name: workflow_retry :one
-- Failed and cancelled tasks run again with a fresh budget of `extra` attempts: pending if every
-- parent has succeeded, else blocked (parents retried in this statement still read as failed or
-- cancelled here, so their children wait for them). Dead-letter rows go; workers wake.
WITH r AS (
    UPDATE pgsched.tasks t
    SET status = CASE WHEN EXISTS (
                     SELECT 1 FROM pgsched.task_dependencies d
                     JOIN pgsched.tasks p ON p.id = d.depends_on
                     WHERE d.task_id = t.id AND p.status <> 'succeeded')
                 THEN 'blocked' ELSE 'pending' END,
        run_at = now(), max_attempts = least(1000, t.attempts + %(extra)s::int),
        finished_at = NULL, cancel_requested = false, assigned_worker = NULL,
        last_error = NULL, version = t.version + 1
    WHERE t.workflow_id = %(id)s::bigint AND t.status IN ('failed', 'cancelled')
      AND t.attempts < 1000  -- one that has used every attempt a task may have stays as it is
    RETURNING t.id, t.status, t.queue
), dl AS (
    DELETE FROM pgsched.dead_letter WHERE task_id IN (SELECT id FROM r)
), w AS (
    UPDATE pgsched.workflows SET status = 'running', finished_at = NULL
    WHERE id = %(id)s::bigint AND EXISTS (SELECT 1 FROM r)
), woken AS (
    SELECT pg_notify('pgsched', q.queue)
    FROM (SELECT DISTINCT queue FROM r WHERE status = 'pending') q
)
SELECT (SELECT count(*) FROM r) AS retried,
       (SELECT count(*) FROM r WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM woken) AS queues_woken;

-- name: parent_results :many
-- What a workflow task's parents returned, by node name (the worker's task context).
SELECT p.workflow_node AS name, p.result
FROM pgsched.task_dependencies d JOIN pgsched.tasks p ON p.id = d.depends_on
WHERE d.task_id = %(id)s::bigint
ORDER BY p.workflow_node;
