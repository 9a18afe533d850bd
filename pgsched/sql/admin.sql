-- Operator commands: workers, the dead letter, top and the demo (pgsched/cli/{workers,dlq,top,demo}.py).
-- Time-dependent statements take an optional %(now)s (NULL: the server's now()).

-- name: workers_list :many
-- Every live worker with its load; stopped and dead ones for an hour after they went, or all
-- of them with %(all)s. Live ones first.
SELECT w.name, w.host, w.pid, w.status, w.queues, w.task_types, w.cpu_usage, w.memory_usage,
       w.current_task_count, w.max_task_capacity, w.last_heartbeat, w.started_at, w.stopped_at,
       CASE WHEN isfinite(w.last_heartbeat)  -- a row set to 'infinity' from SQL: NULL
            THEN extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - w.last_heartbeat)::float8
       END AS heartbeat_age_s
FROM pgsched.workers w
WHERE %(all)s::boolean
   OR w.status NOT IN ('stopped', 'dead')
   OR coalesce(w.stopped_at, w.last_heartbeat)
        > coalesce(%(now)s::timestamptz, now()) - interval '1 hour'
ORDER BY w.status IN ('stopped', 'dead'), w.name;

-- name: worker_get :one
SELECT name, status FROM pgsched.workers WHERE name = %(name)s::text;

-- name: worker_set_status :one
-- Pause or resume a worker and tell it, in one statement: the worker LISTENs on
-- 'pgsched_control' and re-reads its row when its name arrives. NOTIFY is delivered at commit,
-- so the worker never reads the row before the change. Only active and paused workers change
-- (a draining, stopped or dead one returns no row, and nothing is sent).
WITH w AS (
    UPDATE pgsched.workers SET status = %(status)s::text
    WHERE name = %(name)s::text AND status IN ('active', 'paused')
    RETURNING name, status
)
SELECT w.name, w.status, pg_notify('pgsched_control', w.name)::text AS notified FROM w;

-- name: dlq_list :many
-- Dead-letter entries, newest first, with the current status of their task (NULL: pruned).
SELECT d.task_id, d.id AS dead_letter_id, d.queue, d.task_type, d.payload, d.attempts,
       d.last_error, d.failed_at, t.status AS task_status
FROM pgsched.dead_letter d LEFT JOIN pgsched.all_tasks t ON t.id = d.task_id
WHERE (%(queue)s::text IS NULL OR d.queue = %(queue)s::text)
  AND (%(task_type)s::text IS NULL OR d.task_type = %(task_type)s::text)
ORDER BY d.failed_at DESC, d.id DESC
LIMIT %(limit)s::bigint;

-- name: dlq_entry :one
SELECT d.task_id, d.queue, d.task_type, t.status AS task_status
FROM pgsched.dead_letter d LEFT JOIN pgsched.all_tasks t ON t.id = d.task_id
WHERE d.task_id = %(task_id)s::bigint;

-- name: dlq_reopen :exec
-- Before dlq_requeue_all: the matching entries' tasks that moved to pgsched.finished_tasks come
-- back into pgsched.tasks as they are (revision 0015).
SELECT pgsched.reopen_tasks(ARRAY(
    SELECT task_id FROM pgsched.dead_letter
    WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)));

-- name: dlq_requeue_all :many
-- Every matching dead-letter task back to pending with %(extra)s more attempts, and its entry
-- deleted, in one statement: the set-based twin of retry_task (tasks.sql), same SET list.
-- Entries whose task is gone or no longer failed/cancelled are left for `dlq purge`.
WITH d AS (
    SELECT task_id FROM pgsched.dead_letter
    WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
      AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
    FOR UPDATE
), t AS (
    UPDATE pgsched.tasks
    SET status = 'pending', run_at = now(),
        max_attempts = least(1000, attempts + %(extra)s::integer),
        finished_at = NULL, cancel_requested = false, assigned_worker = NULL,
        version = version + 1
    WHERE id IN (SELECT task_id FROM d) AND status IN ('failed', 'cancelled')
    RETURNING id, queue
), gone AS (
    DELETE FROM pgsched.dead_letter WHERE task_id IN (SELECT id FROM t)
)
SELECT id, queue FROM t ORDER BY id;

-- name: dlq_wake :exec
-- An UPDATE back to pending fires no insert trigger: wake the workers of the tasks' queues
-- (one notification per queue, as the insert trigger sends).
SELECT pg_notify('pgsched', q.queue)
FROM (SELECT DISTINCT queue FROM pgsched.tasks WHERE id = ANY(%(ids)s::bigint[])) q;

-- name: dlq_purge_count :one
-- What `dlq purge` with the same filters would delete.
SELECT count(*) AS n
FROM pgsched.dead_letter
WHERE (%(older_than)s::interval IS NULL
       OR failed_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text);

-- name: dlq_purge :rowcount
-- Deletes dead-letter entries only; the failed tasks stay until retention prunes them.
DELETE FROM pgsched.dead_letter
WHERE (%(older_than)s::interval IS NULL
       OR failed_at < coalesce(%(now)s::timestamptz, now()) - %(older_than)s::interval)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text);

-- name: top_throughput :one
-- Attempts finished in the last 10 s and the last minute, and the minute's outcomes.
-- task_executions has no index on finished_at, so this reads the table once per refresh; it
-- is bounded to the newest 100k attempts by id (ids grow with insertion, which is finish
-- order) so a long history does not slow `top` down.
SELECT count(e.id) FILTER (WHERE e.finished_at > c.n - interval '10 seconds') AS last_10s,
       count(e.id) AS last_1m,
       count(e.id) FILTER (WHERE e.outcome = 'success') AS ok_1m,
       count(e.id) FILTER (WHERE e.outcome <> 'success') AS failed_1m,
       (SELECT count(*) FROM pgsched.dead_letter) AS dead_letter
FROM (SELECT coalesce(%(now)s::timestamptz, now()) AS n) c
LEFT JOIN pgsched.task_executions e
       ON e.finished_at > c.n - interval '1 minute' AND e.finished_at <= c.n
      AND e.id > (SELECT coalesce(max(id), 0) - 100000 FROM pgsched.task_executions);

-- name: top_failures :many
-- The latest failed attempts (any outcome but success) among the newest 100k, newest first.
SELECT e.task_id, e.attempt, e.worker, e.finished_at, e.outcome, e.error, t.task_type,
       t.queue, t.status
FROM pgsched.task_executions e LEFT JOIN pgsched.all_tasks t ON t.id = e.task_id
WHERE e.outcome <> 'success'
  AND e.id > (SELECT coalesce(max(id), 0) - 100000 FROM pgsched.task_executions)
ORDER BY e.id DESC
LIMIT %(limit)s::bigint;

-- name: tasks_by_status_of :many
-- Where a set of tasks stands (the demo's end-of-run summary).
SELECT status, count(*) AS n FROM pgsched.all_tasks WHERE id = ANY(%(ids)s::bigint[])
GROUP BY status ORDER BY status;
