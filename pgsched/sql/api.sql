-- The service layer: statistics, recovery support, API tokens and the Prometheus scrape
-- (pgsched/admin/, pgsched/api/). Time-dependent statements take an optional %(now)s.

-- name: stats_window :one
-- Attempts finished in the window: how many, how they ended, and their execution-time
-- percentiles (ms). task_executions has no index on finished_at: this reads the table, which
-- is why the scrape (metrics_scrape) reads counters instead.
SELECT count(*) AS finished,
       count(*) FILTER (WHERE e.outcome = 'success') AS succeeded,
       count(*) FILTER (WHERE e.outcome IN ('failure', 'timeout', 'lost')) AS failed,
       count(*) FILTER (WHERE e.outcome = 'cancelled') AS cancelled,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY e.duration_ms) AS p50_ms,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY e.duration_ms) AS p90_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY e.duration_ms) AS p99_ms,
       max(e.duration_ms) AS max_ms
FROM pgsched.task_executions e
WHERE e.finished_at > coalesce(%(now)s::timestamptz, now()) - %(window)s::interval
  AND e.finished_at <= coalesce(%(now)s::timestamptz, now());

-- name: live_workers :scalar
SELECT count(*) FROM pgsched.workers WHERE status IN ('active', 'paused', 'draining');

-- name: metrics_scrape :many
-- Everything /metrics shows but the workers, in one statement of small index reads:
-- (metric, first label, second label, value). Queue depth of the live statuses goes through
-- their partial indexes (tasks_ready_idx, tasks_running_idx, tasks_blocked_idx), so finished
-- rows, however many, are never read; counters come from metric_counters (migration 0006).
SELECT 'depth' AS metric, queue AS a, 'pending' AS b, count(*)::float8 AS value
FROM pgsched.tasks WHERE status = 'pending' GROUP BY queue
UNION ALL
SELECT 'depth', queue, 'retrying', count(*) FROM pgsched.tasks
WHERE status = 'retrying' GROUP BY queue
UNION ALL
SELECT 'depth', queue, 'running', count(*) FROM pgsched.tasks
WHERE status = 'running' GROUP BY queue
UNION ALL
SELECT 'depth', queue, 'blocked', count(*) FROM pgsched.tasks
WHERE status = 'blocked' GROUP BY queue
UNION ALL
SELECT 'oldest_ready', queue, '',
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at))::float8
FROM pgsched.tasks
WHERE status IN ('pending', 'retrying') AND run_at <= coalesce(%(now)s::timestamptz, now())
GROUP BY queue
UNION ALL
SELECT 'counter', name, label, sum(value)::float8 FROM pgsched.metric_counters
GROUP BY name, label
UNION ALL
SELECT 'dead_letter', '', '', count(*)::float8 FROM pgsched.dead_letter
UNION ALL
SELECT 'schedule_lag', name, '',
       greatest(0, extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - next_tick))::float8
-- isfinite: a next_tick set to +-infinity from SQL has no lag (PostgreSQL < 17 refuses the
-- subtraction, and /metrics failed whole).
FROM pgsched.schedules WHERE enabled AND NOT paused AND isfinite(next_tick);

-- name: token_create :one
INSERT INTO pgsched.api_tokens (name, token_hash, scopes)
VALUES (%(name)s::text, %(hash)s::bytea, %(scopes)s::text[])
RETURNING id, name, scopes, created_at;

-- name: token_list :many
SELECT id, name, scopes, created_at, last_used_at, revoked_at
FROM pgsched.api_tokens
WHERE %(all)s::boolean OR revoked_at IS NULL
ORDER BY id;

-- name: token_revoke :one
UPDATE pgsched.api_tokens SET revoked_at = now()
WHERE name = %(name)s::text AND revoked_at IS NULL
RETURNING id, name;

-- name: token_lookup :one
-- The scopes of a live token, by its hash. last_used_at is written at most once a minute, so
-- a busy client does not turn every request into a write.
WITH t AS (
    SELECT id, name, scopes, last_used_at FROM pgsched.api_tokens
    WHERE token_hash = %(hash)s::bytea AND revoked_at IS NULL
), touched AS (
    UPDATE pgsched.api_tokens a SET last_used_at = now()
    FROM t WHERE a.id = t.id
      AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
)
SELECT name, scopes FROM t;
