-- Submitting, reading, cancelling and retrying tasks (pgsched/client.py).

-- name: submit_task :one
-- One round trip. With an idempotency key already in use, inserts nothing and returns the
-- existing id with created = false.
WITH ins AS (
    INSERT INTO pgsched.tasks
        (task_type, payload, queue, priority, run_at, max_attempts, timeout, idempotency_key,
         backoff_base, backoff_cap)
    VALUES (%(task_type)s, %(payload)s, %(queue)s, %(priority)s,
            coalesce(%(run_at)s, now() + %(delay)s), %(max_attempts)s, %(timeout)s, %(key)s,
            %(backoff_base)s, %(backoff_cap)s)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT id, true AS created FROM ins
UNION ALL
SELECT id, false FROM pgsched.tasks
WHERE idempotency_key = %(key)s AND NOT EXISTS (SELECT 1 FROM ins);

-- name: submit_task_plain :scalar
-- Without an idempotency key nothing can conflict: a plain INSERT. One call per task,
-- interleaved chunks of 300 on a durable server: 2.40k/s median against 2.21k/s for the
-- statement above (single-row submits are bound by the commit's fsync).
INSERT INTO pgsched.tasks
    (task_type, payload, queue, priority, run_at, max_attempts, timeout, backoff_base,
     backoff_cap)
VALUES (%(task_type)s, %(payload)s, %(queue)s, %(priority)s,
        coalesce(%(run_at)s, now() + %(delay)s), %(max_attempts)s, %(timeout)s,
        %(backoff_base)s, %(backoff_cap)s)
RETURNING id;

-- name: submit_task_common :scalar
-- Client.submit with no option beyond queue, priority and max_attempts: five columns, the
-- rest from the table's defaults (run_at now()).
INSERT INTO pgsched.tasks (task_type, payload, queue, priority, max_attempts)
VALUES (%(task_type)s, %(payload)s, %(queue)s, %(priority)s, %(max_attempts)s)
RETURNING id;

-- name: submit_tasks :many
-- Bulk submission from parallel arrays, one statement per batch. Ids come back in input order
-- (identity values are drawn in the order the functions yield the rows). The payloads come as
-- one JSON array, not a jsonb[]: an array literal quotes and backslash-escapes every payload in
-- Python, one JSON document is a single json.dumps (submit_tasks_small below, 100-row
-- batches, producer alone, 6 alternated runs of 2 s: 38.2k -> 49.8k rows/s, medians).
INSERT INTO pgsched.tasks
    (task_type, payload, queue, priority, run_at, max_attempts, timeout, idempotency_key)
SELECT t, p, q, pr, coalesce(ra, now()), ma, tmo, k
FROM ROWS FROM (unnest(%(task_types)b::text[]), jsonb_array_elements(%(payloads)s::jsonb),
                unnest(%(queues)b::text[]), unnest(%(priorities)b::int[]),
                unnest(%(run_ats)b::timestamptz[]), unnest(%(max_attempts)b::int[]),
                unnest(%(timeouts)b::interval[]), unnest(%(keys)b::text[]))
     AS u(t, p, q, pr, ra, ma, tmo, k)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key;

-- name: reserve_task_ids :many
-- Ids for a COPY batch from the tasks identity sequence, and the transaction's now() (what the
-- run_at default would give), in one round trip. The same statement notifies each queue of the
-- batch once (delivered at commit, like the trigger's) and marks the transaction so that the
-- row trigger skips the COPY's rows (pgsched.notify_bulk, revision 0003): ~50k -> ~53k rows/s
-- for 1,000-row batches.
WITH notified AS MATERIALIZED (SELECT pgsched.notify_bulk(%(queues)s::text[]))
SELECT nextval(pg_get_serial_sequence('pgsched.tasks', 'id')) AS id, now() AS now
FROM notified, generate_series(1, %(n)s::int);

-- name: submit_tasks_small :many
-- A bulk submission of fewer than SMALL_BATCH rows (client.py), no keys, no
-- run_at/timeout/backoff, on an autocommit connection: one statement, one round trip, where
-- the COPY path takes four (BEGIN, reserve, COPY, COMMIT). With payloads as a jsonb[] it was
-- even with COPY at 300 rows and behind at 1,000; with one JSON array (as in submit_tasks) it
-- leads at every size up to 100,000 rows (client.py has the figures). Notifies each queue once
-- and quiets the row trigger for its own (autocommit) transaction (pgsched.notify_bulk), like
-- reserve_task_ids. Ids come back sorted = input order. The arrays go in binary (b
-- placeholders; in text psycopg formats them element by element): 1,000 rows, 60 alternated
-- calls each, client CPU 4.47 -> 2.85 us per row, round trip 14.96 -> 13.61 us per row.
WITH notified AS MATERIALIZED (SELECT pgsched.notify_bulk(%(queues)b::text[]))
INSERT INTO pgsched.tasks (task_type, payload, queue, priority, max_attempts)
SELECT u.t, u.p, u.q, u.pr, u.ma
FROM notified,
     ROWS FROM (unnest(%(task_types)b::text[]), jsonb_array_elements(%(payloads)s::jsonb),
                unnest(%(queues)b::text[]), unnest(%(priorities)b::int[]),
                unnest(%(max_attempts)b::int[])) AS u(t, p, q, pr, ma)
RETURNING id;

-- name: submit_tasks_batch :many
-- Client.submit_batch: one task per payload, every other column one value for all of them, so
-- only the payloads travel as an array (one JSON document). Against submit_tasks_small with the
-- same values repeated in its arrays (then sent as text), per row, median of alternated calls:
-- 100 rows 17.2 vs 22.7 us, 1,000 8.9 vs 12.5 us, 20,000 8.8 vs 9.9 us (COPY with reserved ids:
-- 35, 17.4 and 13.4 us), client CPU a third. Ids come back sorted = input order. Notifies the
-- queue once and quiets the row trigger for the rest of the transaction (pgsched.notify_bulk):
-- in a caller's transaction, end_bulk_notified follows.
WITH notified AS MATERIALIZED (SELECT pgsched.notify_bulk(ARRAY[%(queue)s::text]))
INSERT INTO pgsched.tasks
    (task_type, payload, queue, priority, run_at, max_attempts, timeout, backoff_base,
     backoff_cap)
SELECT %(task_type)s::text, p, %(queue)s::text, %(priority)s::int,
       coalesce(%(run_at)s::timestamptz, now()), %(max_attempts)s::int, %(timeout)s::interval,
       %(backoff_base)s::interval, %(backoff_cap)s::interval
FROM notified, jsonb_array_elements(%(payloads)s::jsonb) AS p
RETURNING id;

-- name: end_bulk_notified :exec
-- After a COPY inside the caller's own transaction: later inserts there notify again.
SELECT set_config('pgsched.inserts_notified', 'off', true);

-- name: copy_tasks :copy
-- Bulk submission without idempotency keys. 1,000 rows per call, best of 25 side by side on a
-- durable server: COPY with reserved ids 82.9k rows/s, INSERT ... SELECT unnest (no ON
-- CONFLICT) 75.4k, the unnest statement above 65.9k (ON CONFLICT, RETURNING, sorting).
COPY pgsched.tasks (id, task_type, payload, queue, priority, run_at, max_attempts, timeout,
                    backoff_base, backoff_cap) FROM STDIN

-- name: copy_tasks_plain :copy
-- The same for the common case (no run_at, timeout or backoff): the defaults fill them in, and
-- four fewer columns per row to format.
COPY pgsched.tasks (id, task_type, payload, queue, priority, max_attempts) FROM STDIN

-- name: task_ids_by_keys :many
SELECT id, idempotency_key FROM pgsched.tasks WHERE idempotency_key = ANY(%(keys)s::text[]);

-- name: get_task :one
SELECT t.*, w.name AS workflow_name
FROM pgsched.all_tasks t LEFT JOIN pgsched.workflows w ON w.id = t.workflow_id
WHERE t.id = %(id)s;

-- name: task_history :many
SELECT attempt, worker, started_at, finished_at, outcome, duration_ms, error
FROM pgsched.task_executions WHERE task_id = %(id)s ORDER BY attempt;

-- name: list_tasks :many
-- Newest first. Keyset pagination: %(before)s is the last id of the previous page (NULL: the
-- first page), so a page costs the same however deep it is; %(offset)s serves page numbers
-- (page * size), which read and skip the rows before the page.
SELECT id, queue, task_type, status, priority, attempts, max_attempts, run_at, created_at,
       started_at, finished_at, assigned_worker, last_error
FROM pgsched.all_tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s OFFSET %(offset)s::bigint;

-- name: cancel_task :one
-- A task that has not started is cancelled at once; a running one gets a cancel request that
-- its worker honours (it stops the task and writes the terminal state). Returns the outcome.
UPDATE pgsched.tasks t
SET status = CASE WHEN t.status = 'running' THEN t.status ELSE 'cancelled' END,
    cancel_requested = (t.status = 'running'),
    finished_at = CASE WHEN t.status = 'running' THEN NULL ELSE now() END,
    last_error = CASE WHEN t.status = 'running' THEN t.last_error ELSE 'cancelled by user' END,
    version = t.version + 1
WHERE t.id = %(id)s AND t.status IN ('blocked', 'pending', 'retrying', 'running')
RETURNING t.id, t.status, t.cancel_requested;

-- name: retry_task :one
-- A failed or cancelled task runs again with `extra` more attempts (up to 1000 in all: one
-- that has used 1000 is refused, see Client.retry); its dead-letter row goes. Its last error
-- is the previous run's: cleared, so a run that succeeds does not keep "cancelled by user".
WITH t AS (
    UPDATE pgsched.tasks
    SET status = 'pending', run_at = now(), max_attempts = least(1000, attempts + %(extra)s),
        finished_at = NULL, cancel_requested = false, assigned_worker = NULL,
        last_error = NULL, version = version + 1
    WHERE id = %(id)s AND status IN ('failed', 'cancelled') AND attempts < 1000
    RETURNING id, status, max_attempts
), d AS (
    DELETE FROM pgsched.dead_letter WHERE task_id IN (SELECT id FROM t)
)
SELECT id, status, max_attempts FROM t;

-- name: task_status :scalar
SELECT status FROM pgsched.all_tasks WHERE id = %(id)s;

-- name: task_attempts :scalar
SELECT attempts FROM pgsched.all_tasks WHERE id = %(id)s;

-- name: status_counts :many
SELECT queue, status, count(*) AS n FROM pgsched.all_tasks GROUP BY queue, status ORDER BY queue, status;

-- name: oldest_ready :many
-- Per queue: how long the oldest task that could run now has been waiting.
-- isfinite: an infinite time (which no CHECK keeps out of every column) gives NULL, not an
-- error (PostgreSQL before 17 cannot subtract it) or an infinite age.
SELECT queue,
       CASE WHEN isfinite(min(run_at)) THEN extract(epoch FROM now() - min(run_at))::float8 END
           AS age_s,
       count(*) AS ready
FROM pgsched.tasks
WHERE status IN ('pending', 'retrying') AND run_at <= now()
GROUP BY queue ORDER BY queue;

-- name: worker_rows :many
SELECT w.name, w.host, w.pid, w.status, w.queues, w.task_types, w.cpu_usage, w.memory_usage,
       w.current_task_count, w.max_task_capacity, w.last_heartbeat, w.started_at,
       CASE WHEN isfinite(w.last_heartbeat)
            THEN extract(epoch FROM now() - w.last_heartbeat)::float8 END AS heartbeat_age_s
FROM pgsched.workers w
WHERE w.status <> 'stopped' OR w.stopped_at > now() - interval '1 hour'
ORDER BY w.name;

-- name: unserved_types :many
-- Ready work (due now) that no live worker can run: its queue or type is served by nobody.
SELECT t.queue, t.task_type, count(*) AS n
FROM pgsched.tasks t
WHERE t.status IN ('pending', 'retrying') AND t.run_at <= now()
  AND NOT EXISTS (
      SELECT 1 FROM pgsched.workers w
      WHERE w.status IN ('active', 'paused', 'draining')
        AND t.queue = ANY(w.queues) AND t.task_type = ANY(w.task_types))
GROUP BY t.queue, t.task_type ORDER BY t.queue, t.task_type;

-- name: reopen_task :exec
-- Before retry_task: a task that moved to pgsched.finished_tasks comes back into pgsched.tasks
-- as it is (revision 0015). A task already there is left alone.
SELECT pgsched.reopen_tasks(ARRAY[%(id)s::bigint]);
