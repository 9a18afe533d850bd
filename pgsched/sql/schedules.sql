-- Recurring schedules (pgsched/schedules.py): sync from YAML, ticking, pause/resume.

-- name: schedule_apply_lock :exec
-- One `schedules apply` at a time (10 hosts starting with the same file are fine).
SELECT pg_advisory_xact_lock(%(ns)s::int, hashtext('pgsched.schedules.apply'));

-- name: schedule_rows :many
SELECT id, name, cron, every, timezone, task_type, payload, queue, priority, max_attempts,
       timeout, enabled, paused, misfire, misfire_cap, last_tick, next_tick, created_at,
       updated_at
FROM pgsched.schedules ORDER BY name;

-- name: schedule_upsert :exec
-- next_tick restarts from now only when the timing changed (or was never set); an unchanged
-- definition keeps its place, so a restart does not lose ticks to the misfire policy.
INSERT INTO pgsched.schedules AS s
    (name, cron, every, timezone, task_type, payload, queue, priority, max_attempts, timeout,
     enabled, misfire, misfire_cap, next_tick)
VALUES (%(name)s, %(cron)s::text, %(every)s::interval, %(timezone)s, %(task_type)s,
        %(payload)s::jsonb, %(queue)s, %(priority)s::int, %(max_attempts)s::int,
        %(timeout)s::interval, %(enabled)s::boolean, %(misfire)s, %(misfire_cap)s::int,
        %(next_tick)s::timestamptz)
ON CONFLICT ON CONSTRAINT schedules_name_unique DO UPDATE
SET cron = EXCLUDED.cron, every = EXCLUDED.every, timezone = EXCLUDED.timezone,
    task_type = EXCLUDED.task_type, payload = EXCLUDED.payload, queue = EXCLUDED.queue,
    priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
    timeout = EXCLUDED.timeout, enabled = EXCLUDED.enabled, misfire = EXCLUDED.misfire,
    misfire_cap = EXCLUDED.misfire_cap,
    next_tick = CASE
        WHEN s.next_tick IS NULL
          OR ROW(s.cron, s.every, s.timezone) IS DISTINCT FROM
             ROW(EXCLUDED.cron, EXCLUDED.every, EXCLUDED.timezone)
          OR (NOT s.enabled AND EXCLUDED.enabled)
        THEN EXCLUDED.next_tick ELSE s.next_tick END,
    updated_at = now();

-- name: schedule_delete :rowcount
DELETE FROM pgsched.schedules WHERE name = ANY(%(names)s::text[]);

-- name: schedule_pause :one
UPDATE pgsched.schedules SET paused = true, updated_at = now()
WHERE name = %(name)s RETURNING id, name, paused;

-- name: schedule_resume :one
-- Ticks that fell while paused are not misfires: the schedule restarts at its next tick.
UPDATE pgsched.schedules SET paused = false, next_tick = %(next_tick)s::timestamptz,
    updated_at = now()
WHERE name = %(name)s RETURNING id, name, paused;

-- name: schedule_by_name :one
SELECT id, name, cron, every, timezone, paused, enabled, next_tick
FROM pgsched.schedules WHERE name = %(name)s;

-- name: schedules_due :many
-- What a scheduler has to look at now, with the instant it calls "now" (the database's clock
-- unless the caller passes one, so hosts with skewed clocks agree).
SELECT s.id, s.name, s.cron, s.every, s.timezone, s.misfire, s.misfire_cap, s.next_tick,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM pgsched.schedules s
WHERE s.enabled AND NOT s.paused
  AND (s.next_tick IS NULL OR s.next_tick <= coalesce(%(now)s::timestamptz, now()))
ORDER BY s.next_tick NULLS FIRST
LIMIT 1000;

-- name: schedule_fire :one
-- Exactly once per tick: advance the schedule (compare-and-set on the next_tick this scheduler
-- read, so it only moves forward and only one scheduler wins) and, in the same statement,
-- insert one task per tick for the winner only. The unique key (schedule_id, schedule_tick)
-- refuses a tick twice even if two definitions of "next" ever disagreed.
WITH adv AS (
    UPDATE pgsched.schedules s
    SET next_tick = %(next_tick)s::timestamptz,
        last_tick = greatest(s.last_tick, (SELECT max(t) FROM unnest(%(ticks)s::timestamptz[]) t))
    WHERE s.id = %(id)s::bigint
      AND s.next_tick IS NOT DISTINCT FROM %(expected)s::timestamptz
      AND s.enabled AND NOT s.paused
    RETURNING s.id, s.task_type, s.payload, s.queue, s.priority, s.max_attempts, s.timeout
), ins AS (
    INSERT INTO pgsched.tasks
        (task_type, payload, queue, priority, max_attempts, timeout, run_at, schedule_id,
         schedule_tick)
    SELECT a.task_type, a.payload, a.queue, a.priority, a.max_attempts, a.timeout,
           least(t.tick, coalesce(%(now)s::timestamptz, now())), a.id, t.tick
    FROM adv a CROSS JOIN unnest(%(ticks)s::timestamptz[]) AS t(tick)
    ON CONFLICT (schedule_id, schedule_tick) WHERE schedule_id IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM adv) AS advanced, (SELECT count(*) FROM ins) AS created;

-- name: schedule_next_wake :one
-- The earliest tick any scheduler has to fire, and the clock it is measured against.
SELECT min(next_tick) AS next_tick, coalesce(%(now)s::timestamptz, now()) AS now
FROM pgsched.schedules WHERE enabled AND NOT paused;

-- name: schedule_listen :exec
LISTEN pgsched_schedules;

-- name: db_now :scalar
SELECT coalesce(%(now)s::timestamptz, now());
