-- Alerts (pgsched/alerts/): applying the file, the ticker (folding events into notifications
-- and their delivery tasks, evaluating thresholds), and what `alerts list` and `status` show.
-- Events themselves are written by the triggers of migration 0009.

-- name: alert_apply_lock :exec
-- One `alerts apply` at a time. The tickers look at the new rules when it commits.
SELECT pg_advisory_xact_lock(%(ns)s::int, hashtext('pgsched.alerts.apply')),
       pg_notify('pgsched_alerts', 'rules');

-- name: alert_channel_rows :many
SELECT id, name, type, config, created_at, updated_at FROM pgsched.alert_channels ORDER BY name;

-- name: alert_channel_upsert :exec
INSERT INTO pgsched.alert_channels AS c (name, type, config)
VALUES (%(name)s::text, %(type)s::text, %(config)s::jsonb)
ON CONFLICT ON CONSTRAINT alert_channels_name_unique DO UPDATE
SET type = EXCLUDED.type, config = EXCLUDED.config, updated_at = now();

-- name: alert_channel_delete :rowcount
DELETE FROM pgsched.alert_channels WHERE name = ANY(%(names)s::text[]);

-- name: alert_rule_rows :many
-- Every rule with its pending (folded, not yet sent) events and its last notification.
SELECT r.id, r.name, r.event, r.threshold, r.above, r.time_window, r.min_attempts, r.queues,
       r.task_types, r.workflows, r.group_by, r.min_interval, r.channels, r.paused,
       r.next_eval, r.created_at, r.updated_at,
       (SELECT count(*) FROM pgsched.alert_events e WHERE e.rule_id = r.id) AS pending,
       (SELECT max(n.created_at) FROM pgsched.alert_notifications n
        WHERE n.rule_id = r.id) AS last_sent_at
FROM pgsched.alert_rules r ORDER BY r.name;

-- name: alert_rule_upsert :exec
-- A changed threshold or window is evaluated at the next look (next_eval NULL).
INSERT INTO pgsched.alert_rules AS r
    (name, event, threshold, above, time_window, min_attempts, queues, task_types, workflows,
     group_by, min_interval, channels)
VALUES (%(name)s::text, %(event)s::text, %(threshold)s::text, %(above)s::float8,
        %(time_window)s::interval, %(min_attempts)s::int, %(queues)s::text[],
        %(task_types)s::text[], %(workflows)s::text[], %(group_by)s::text,
        %(min_interval)s::interval, %(channels)s::text[])
ON CONFLICT ON CONSTRAINT alert_rules_name_unique DO UPDATE
SET event = EXCLUDED.event, threshold = EXCLUDED.threshold, above = EXCLUDED.above,
    time_window = EXCLUDED.time_window, min_attempts = EXCLUDED.min_attempts,
    queues = EXCLUDED.queues, task_types = EXCLUDED.task_types, workflows = EXCLUDED.workflows,
    group_by = EXCLUDED.group_by, min_interval = EXCLUDED.min_interval,
    channels = EXCLUDED.channels,
    next_eval = CASE WHEN ROW(r.threshold, r.time_window)
                          IS DISTINCT FROM ROW(EXCLUDED.threshold, EXCLUDED.time_window)
                     THEN NULL ELSE r.next_eval END,
    updated_at = now();

-- name: alert_rule_delete :rowcount
DELETE FROM pgsched.alert_rules WHERE name = ANY(%(names)s::text[]);

-- name: alert_rule_set_paused :one
-- Pausing stops recording events for the rule; its pending ones wait for resume, when the
-- tickers are told to look.
WITH r AS (
    UPDATE pgsched.alert_rules SET paused = %(paused)s::boolean, updated_at = now()
    WHERE name = %(name)s::text RETURNING id, name, paused
)
SELECT r.id, r.name, r.paused FROM r, LATERAL (SELECT pg_notify('pgsched_alerts', 'rules')) n;

-- name: alert_rule_for_test :one
-- A rule with its channels' definitions, for `alerts test`.
SELECT r.name, r.event, r.threshold, r.above, r.group_by, r.channels,
       coalesce((SELECT jsonb_agg(jsonb_build_object('name', c.name, 'type', c.type,
                                                     'config', c.config) ORDER BY c.name)
                 FROM pgsched.alert_channels c WHERE c.name = ANY(r.channels)),
                '[]'::jsonb) AS channel_defs
FROM pgsched.alert_rules r WHERE r.name = %(name)s::text;

-- name: alert_notifications_recent :many
-- The latest notifications, each with the state of its delivery tasks (one per channel;
-- 'gone' once retention pruned a finished task).
SELECT n.id, n.uid::text AS uid, n.rule, n.event, n.key, n.count, n.created_at,
       n.body ->> 'summary' AS summary,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'channel', ch.name, 'task_id', t.id, 'status', coalesce(t.status, 'gone'),
                     'attempts', t.attempts, 'error', left(t.last_error, 300))
                     ORDER BY ch.name)
                 FROM unnest(n.channels) AS ch(name)
                 LEFT JOIN pgsched.tasks t
                   ON t.idempotency_key = 'pgsched.alert:' || n.uid || ':' || ch.name),
                '[]'::jsonb) AS deliveries
FROM pgsched.alert_notifications n
WHERE (%(rule)s::text IS NULL OR n.rule = %(rule)s::text)
ORDER BY n.created_at DESC, n.id DESC
LIMIT %(limit)s::int;

-- name: alert_listen :exec
LISTEN pgsched_alerts;

-- name: alert_dispatch_lock :scalar
-- One dispatcher at a time (transaction-level: through a pooler too); the others skip.
SELECT pg_try_advisory_xact_lock(%(ns)s::int, hashtext('pgsched.alerts.dispatch'));

-- name: alert_take_due :many
-- Folding: every (rule, key) with events whose interval has passed (never sent, or sent at
-- least min_interval ago) gives one notification carrying how many events it folds. The
-- events are deleted in the same statement, so exactly those counted are consumed: one that
-- commits meanwhile waits for the next look.
WITH ready AS (
    SELECT DISTINCT e.rule_id, e.key
    FROM pgsched.alert_events e
    JOIN pgsched.alert_rules r ON r.id = e.rule_id
    LEFT JOIN pgsched.alert_state s ON s.rule_id = e.rule_id AND s.key = e.key
    WHERE NOT r.paused
      AND (s.last_sent_at IS NULL
           OR s.last_sent_at + r.min_interval <= coalesce(%(now)s::timestamptz, now()))
    LIMIT %(limit)s::int
), taken AS (
    DELETE FROM pgsched.alert_events e USING ready
    WHERE e.rule_id = ready.rule_id AND e.key = ready.key
    RETURNING e.id, e.rule_id, e.key, e.occurred_at, e.data
)
SELECT t.rule_id, r.name AS rule, coalesce(r.event, 'threshold.' || r.threshold) AS event,
       t.key, r.channels, count(*)::int AS count, min(t.occurred_at) AS first_at,
       max(t.occurred_at) AS last_at,
       (array_agg(t.data ORDER BY t.id DESC))[1:%(sample)s::int] AS recent,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM taken t JOIN pgsched.alert_rules r ON r.id = t.rule_id
GROUP BY t.rule_id, r.name, r.event, r.threshold, t.key, r.channels;

-- name: alert_notify :one
-- One notification: its row, the storm-control mark of its (rule, key), and one delivery task
-- per channel (the task's idempotency key names the notification and the channel, so a
-- notification cannot be queued twice for a channel).
WITH n AS (
    INSERT INTO pgsched.alert_notifications
        (uid, rule_id, rule, event, key, count, channels, body, created_at)
    VALUES (%(uid)s::uuid, %(rule_id)s::bigint, %(rule)s::text, %(event)s::text, %(key)s::text,
            %(count)s::int, %(channels)s::text[], %(body)s::jsonb,
            coalesce(%(now)s::timestamptz, now()))
    RETURNING id, uid, channels, body
), st AS (
    INSERT INTO pgsched.alert_state AS s (rule_id, key, last_sent_at)
    VALUES (%(rule_id)s::bigint, %(key)s::text, coalesce(%(now)s::timestamptz, now()))
    ON CONFLICT (rule_id, key) DO UPDATE SET last_sent_at = EXCLUDED.last_sent_at
), d AS (
    INSERT INTO pgsched.tasks
        (task_type, queue, payload, max_attempts, backoff_base, backoff_cap, timeout,
         idempotency_key)
    SELECT %(task_type)s::text, coalesce(c.config ->> 'queue', 'pgsched.alerts'),
           jsonb_build_object('channel', c.name, 'type', c.type, 'config', c.config,
                              'notification', n.body),
           coalesce((c.config ->> 'max_attempts')::int, 10),
           make_interval(secs => coalesce((c.config ->> 'backoff_base')::float8, 5)),
           make_interval(secs => coalesce((c.config ->> 'backoff_cap')::float8, 600)),
           -- A backstop: each send has its own timeout (connect, each read and write).
           make_interval(secs => 3 * coalesce((c.config ->> 'timeout')::float8, 10) + 5),
           'pgsched.alert:' || n.uid || ':' || c.name
    FROM n JOIN pgsched.alert_channels c ON c.name = ANY(n.channels)
    ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT (SELECT id FROM n) AS id, (SELECT count(*) FROM d)::int AS deliveries;

-- name: alert_next_wake :one
-- When the ticker has something to do next: a folded (rule, key) whose interval ends, or a
-- threshold evaluation (now for one never evaluated).
SELECT least(
           (SELECT min(s.last_sent_at + r.min_interval)
            FROM pgsched.alert_state s JOIN pgsched.alert_rules r ON r.id = s.rule_id
            WHERE NOT r.paused
              AND EXISTS (SELECT 1 FROM pgsched.alert_events e
                          WHERE e.rule_id = s.rule_id AND e.key = s.key)),
           (SELECT min(coalesce(r.next_eval, coalesce(%(now)s::timestamptz, now())))
            FROM pgsched.alert_rules r WHERE r.threshold IS NOT NULL AND NOT r.paused)
       ) AS next_at,
       coalesce(%(now)s::timestamptz, now()) AS now;

-- name: alert_thresholds_due :many
SELECT id, name, threshold, above, extract(epoch FROM time_window)::float8 AS window_s,
       min_attempts, queues, task_types, next_eval, coalesce(%(now)s::timestamptz, now()) AS now
FROM pgsched.alert_rules
WHERE threshold IS NOT NULL AND NOT paused
  AND (next_eval IS NULL OR next_eval <= coalesce(%(now)s::timestamptz, now()))
ORDER BY next_eval NULLS FIRST;

-- name: alert_threshold_advance :one
-- Exactly one evaluation per window: compare-and-set on the next_eval this ticker read, so
-- only one ticker wins it (as a schedule tick is fired once).
UPDATE pgsched.alert_rules
SET next_eval = coalesce(%(now)s::timestamptz, now()) + time_window
WHERE id = %(id)s::bigint AND next_eval IS NOT DISTINCT FROM %(expected)s::timestamptz
  AND NOT paused AND threshold IS NOT NULL
RETURNING id;

-- name: alert_measure_ready :many
-- Ready tasks per queue: how many, and how long the oldest has been due.
SELECT t.queue, count(*)::float8 AS depth,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(t.run_at))::float8
           AS oldest_s
FROM pgsched.tasks t
WHERE t.status IN ('pending', 'retrying')
  AND t.run_at <= coalesce(%(now)s::timestamptz, now())
  AND (%(queues)s::text[] IS NULL OR t.queue = ANY(%(queues)s::text[]))
  AND (%(task_types)s::text[] IS NULL OR t.task_type = ANY(%(task_types)s::text[]))
GROUP BY t.queue;

-- name: alert_measure_live_queues :many
-- The queues some live, active worker takes from.
SELECT DISTINCT q.queue
FROM pgsched.workers w CROSS JOIN LATERAL unnest(w.queues) AS q(queue)
WHERE w.status = 'active'
  AND w.last_heartbeat > coalesce(%(now)s::timestamptz, now())
                         - make_interval(secs => %(heartbeat_timeout)s::float8);

-- name: alert_measure_failures :many
-- Finished attempts per queue over the window: how many failed (failure, timeout, lost) of
-- how many (cancelled ones are neither). Delivery attempts are not counted.
SELECT t.queue,
       count(*) FILTER (WHERE e.outcome IN ('failure', 'timeout', 'lost'))::float8 AS failed,
       count(*)::float8 AS total
FROM pgsched.task_executions e JOIN pgsched.all_tasks t ON t.id = e.task_id
WHERE e.finished_at > coalesce(%(now)s::timestamptz, now())
                      - make_interval(secs => %(window_s)s::float8)
  AND e.finished_at <= coalesce(%(now)s::timestamptz, now())
  AND e.outcome <> 'cancelled'
  AND t.task_type <> %(delivery_type)s::text
  AND (%(queues)s::text[] IS NULL OR t.queue = ANY(%(queues)s::text[]))
  AND (%(task_types)s::text[] IS NULL OR t.task_type = ANY(%(task_types)s::text[]))
GROUP BY t.queue;

-- name: alert_measure_dead_letter :many
SELECT d.queue, count(*)::float8 AS size
FROM pgsched.dead_letter d
WHERE (%(queues)s::text[] IS NULL OR d.queue = ANY(%(queues)s::text[]))
  AND (%(task_types)s::text[] IS NULL OR d.task_type = ANY(%(task_types)s::text[]))
GROUP BY d.queue;

-- name: alert_threshold_event :exec
INSERT INTO pgsched.alert_events (rule_id, key, occurred_at, data)
VALUES (%(rule_id)s::bigint, %(key)s::text, coalesce(%(now)s::timestamptz, now()),
        %(data)s::jsonb);
