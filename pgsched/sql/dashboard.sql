-- What the web dashboard (pgsched/web) reads, through pgsched.admin.Admin. Every statement is
-- bounded on a large history: queue depth goes through the live statuses' partial indexes,
-- task lists are keyset pages over a bounded id range, attempts are read by time window.
-- Time-dependent statements take an optional %(now)s (NULL: the server's now()).

-- name: dash_queues :many
-- Per queue: tasks ready now, waiting for later (scheduled ahead or backing off before a retry),
-- retrying (due or not), running, blocked (workflow tasks waiting on parents), in the dead
-- letter, and the age of the oldest ready one. Finished rows are never read: the waiting counts
-- and ages are index-only scans of tasks_ready_idx (queue, run_at are its keys), retrying of
-- tasks_retrying_idx and blocked of tasks_blocked_idx (0010, 0006), running reads its few rows
-- through tasks_running_idx, and the dead letter is counted in its own table.
WITH c AS (SELECT coalesce(%(now)s::timestamptz, now()) AS n),
waiting AS (
    SELECT t.queue,
           count(*) FILTER (WHERE t.run_at <= (SELECT n FROM c)) AS ready,
           count(*) FILTER (WHERE t.run_at > (SELECT n FROM c)) AS later,
           min(t.run_at) AS oldest
    FROM pgsched.tasks t
    WHERE t.status IN ('pending', 'retrying')
    GROUP BY t.queue
),
retrying AS (
    SELECT queue, count(*) AS n FROM pgsched.tasks WHERE status = 'retrying' GROUP BY queue
),
running AS (
    SELECT queue, count(*) AS n FROM pgsched.tasks WHERE status = 'running' GROUP BY queue
),
blocked AS (
    SELECT queue, count(*) AS n FROM pgsched.tasks WHERE status = 'blocked' GROUP BY queue
),
dead AS (
    SELECT queue, count(*) AS n FROM pgsched.dead_letter GROUP BY queue
),
queues AS (
    SELECT queue FROM waiting UNION SELECT queue FROM running
    UNION SELECT queue FROM blocked UNION SELECT queue FROM dead
)
SELECT q.queue,
       coalesce(w.ready, 0) AS ready,
       coalesce(w.later, 0) AS later,
       coalesce(rt.n, 0) AS retrying,
       coalesce(r.n, 0) AS running,
       coalesce(b.n, 0) AS blocked,
       coalesce(d.n, 0) AS dead_letter,
       CASE WHEN w.ready > 0
            THEN extract(epoch FROM (SELECT n FROM c) - w.oldest)::float8 END AS oldest_ready_s
FROM queues q
LEFT JOIN waiting w ON w.queue = q.queue
LEFT JOIN retrying rt ON rt.queue = q.queue
LEFT JOIN running r ON r.queue = q.queue
LEFT JOIN blocked b ON b.queue = q.queue
LEFT JOIN dead d ON d.queue = q.queue
ORDER BY q.queue;

-- name: dash_series :many
-- Attempts finished per time bucket over the window, and how many of them failed (failure,
-- timeout, lost): the overview's charts. Buckets with no attempt are absent (the caller fills
-- them). Reads the window's attempts only.
SELECT date_bin(%(bucket)s::interval, e.finished_at, timestamptz '2000-01-01 00:00:00+00') AS at,
       count(*) AS finished,
       count(*) FILTER (WHERE e.outcome IN ('failure', 'timeout', 'lost')) AS failed
FROM pgsched.task_executions e
WHERE e.finished_at > coalesce(%(now)s::timestamptz, now()) - %(window)s::interval
  AND e.finished_at <= coalesce(%(now)s::timestamptz, now())
GROUP BY 1
ORDER BY 1;

-- name: dash_task_id_bounds :one
-- The newest and oldest task ids: where a task search starts and where it can stop.
SELECT (SELECT max(id) FROM pgsched.all_tasks) AS hi, (SELECT min(id) FROM pgsched.all_tasks) AS lo;

-- name: dash_tasks :many
-- One page of the task search, newest first, among ids in [floor, before): the caller walks
-- that window down the primary key, so a filter that matches few rows still reads a bounded
-- number of them, and the page says how far it searched. %(error)s is an ILIKE pattern.
SELECT id, queue, task_type, status, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, assigned_worker, left(last_error, 300) AS last_error, progress,
       workflow_id, workflow_node
FROM pgsched.all_tasks
WHERE id < %(before)s::bigint AND id >= %(floor)s::bigint
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s::timestamptz)
  AND (%(error)s::text IS NULL OR last_error ILIKE %(error)s::text)
ORDER BY id DESC
LIMIT %(limit)s::bigint;

-- name: dash_workflows :many
-- Workflows newest first (keyset on id) with their tasks' counts by outcome; each count reads
-- that workflow's tasks through tasks_workflow_node_unique.
SELECT w.id, w.name, w.description, w.status, w.created_at, w.finished_at,
       c.total, c.succeeded, c.failed, c.cancelled, c.running
FROM pgsched.workflows w
CROSS JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE t.status = 'failed') AS failed,
           count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE t.status = 'running') AS running
    FROM pgsched.tasks t WHERE t.workflow_id = w.id
) c
WHERE (%(before)s::bigint IS NULL OR w.id < %(before)s::bigint)
  AND (%(status)s::text IS NULL OR w.status = %(status)s::text)
ORDER BY w.id DESC
LIMIT %(limit)s::bigint;

-- name: dash_dead_letter :many
-- One page of dead-letter entries, newest first, strictly older than the cursor entry
-- (%(at)s, %(id)s): keyset down dead_letter_failed_at_idx (failed_at, id), so a deep page
-- costs what the first one does. The first page passes 'infinity' and the largest id. The
-- caller asks for one row more than it shows, to know whether an older page exists.
SELECT d.task_id, d.id AS dead_letter_id, d.queue, d.task_type, d.attempts, d.last_error,
       d.failed_at, t.status AS task_status
FROM pgsched.dead_letter d LEFT JOIN pgsched.all_tasks t ON t.id = d.task_id
WHERE (d.failed_at, d.id) < (%(at)s::timestamptz, %(id)s::bigint)
  AND (%(queue)s::text IS NULL OR d.queue = %(queue)s::text)
  AND (%(task_type)s::text IS NULL OR d.task_type = %(task_type)s::text)
ORDER BY d.failed_at DESC, d.id DESC
LIMIT %(limit)s::bigint;
