-- The worker: registration, heartbeats, claiming, completion, recovery (pgsched/worker/).
-- Every time-dependent statement takes %(now)s: NULL means the server's clock, a value lets
-- tests move time without sleeping.

-- name: register_worker :one
-- Find or create the row for this name and take its session-level liveness lock in the same
-- statement, on the worker's direct (LISTEN) connection. locked = false: a live worker holds
-- the name, and nothing was changed.
WITH up AS (
    INSERT INTO pgsched.workers AS w (name, host, pid, status)
    VALUES (%(name)s::text, %(host)s::text, %(pid)s::int, 'stopped')
    ON CONFLICT ON CONSTRAINT workers_name_unique DO UPDATE SET name = w.name
    RETURNING w.id
)
SELECT id, pg_try_advisory_lock(%(ns)s::int, id) AS locked FROM up;

-- name: activate_worker :exec
UPDATE pgsched.workers
SET host = %(host)s::text, pid = %(pid)s::int, status = 'active', queues = %(queues)s::text[],
    task_types = %(task_types)s::text[], max_task_capacity = %(capacity)s::int,
    current_task_count = 0, cpu_usage = %(cpu)s::real, memory_usage = %(memory)s::real,
    last_heartbeat = coalesce(%(now)s::timestamptz, now()),
    started_at = coalesce(%(now)s::timestamptz, now()), stopped_at = NULL
WHERE id = %(id)s::int;

-- name: heartbeat :one
-- A worker that was declared dead while it hung (SIGSTOP) comes back as active: its tasks were
-- already handed back, and its late completions are refused by the version check.
-- One pass over the live workers gives their count, the stalest other heartbeat and the best
-- CPU share among the active workers sharing a queue with this one. The worker runs recovery
-- when the stalest heartbeat expires, so a hung worker loses its tasks right at
-- heartbeat_timeout rather than at the next periodic recovery run; and it holds its part of
-- the fleet's slots by CPU share (pgsched/worker/share.py), from the slots and shares of the
-- live active workers sharing a queue with it, summed here.
-- A worker's CPU share: the part of its CPUs that other processes leave idle, but never below
-- half: the kernel's fair scheduler gives a new busy thread about half of a CPU that one
-- other busy process holds (cpu_usage counts neither the worker nor its own server backends).
-- An idle worker that is not the waker also tries the waker lock here (waker_signature not
-- NULL): a vacant role is taken within a heartbeat, with no statement of its own.
-- The heartbeat commits without waiting for its WAL flush (synchronous_commit off for its own
-- transaction only). It is an idle worker's only regular write, and its durability buys nothing:
-- a heartbeat lost in a server crash leaves last_heartbeat under a second older, and a crash
-- ends every session, so the liveness locks, not the heartbeats, say who is dead until the
-- workers re-register. The flush wait is most of a heartbeat's backend CPU, and heartbeats come
-- often (`python bench/probes.py commit-cost` measures both ways).
WITH async AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true))
UPDATE pgsched.workers w
SET last_heartbeat = coalesce(%(now)s::timestamptz, now()), cpu_usage = %(cpu)s::real,
    memory_usage = %(memory)s::real, current_task_count = %(running)s::int,
    max_task_capacity = %(capacity)s::int,
    status = CASE WHEN w.status = 'dead' THEN 'active' ELSE w.status END,
    stopped_at = CASE WHEN w.status = 'dead' THEN NULL ELSE w.stopped_at END
FROM async,
     (SELECT count(*) AS live,
             min(p.last_heartbeat) FILTER (WHERE p.id <> %(id)s::int) AS stalest,
             sum(p.max_task_capacity) FILTER (WHERE peer.counts) AS other_slots,
             sum(greatest(1 - p.cpu_usage / 100, 0.5)) FILTER (WHERE peer.counts) AS other_shares
      FROM pgsched.workers p,
           LATERAL (SELECT p.id <> %(id)s::int AND p.status = 'active'
                       AND p.queues && %(queues)s::text[]
                       AND p.last_heartbeat > coalesce(%(now)s::timestamptz, now())
                                              - make_interval(secs => %(heartbeat_timeout)s::float8)
                    AS counts) peer
      WHERE p.status IN ('active', 'paused', 'draining')) fleet
WHERE w.id = %(id)s::int
RETURNING w.status, fleet.live AS live_workers,
    extract(epoch FROM fleet.stalest + make_interval(secs => %(heartbeat_timeout)s::float8)
                       - coalesce(%(now)s::timestamptz, now()))::float8 AS next_expiry_s,
    fleet.other_slots::int AS other_slots, fleet.other_shares::float8 AS other_shares,
    CASE WHEN %(waker_signature)s::text IS NOT NULL
         THEN pg_try_advisory_lock(%(ns)s::int, hashtext(%(waker_signature)s::text))
    END AS waker;

-- name: set_worker_status :exec
UPDATE pgsched.workers
SET status = %(status)s::text,
    stopped_at = CASE WHEN %(status)s::text = 'stopped'
                      THEN coalesce(%(now)s::timestamptz, now()) END,
    current_task_count = CASE WHEN %(status)s::text = 'stopped' THEN 0
                              ELSE current_task_count END
WHERE id = %(id)s::int;

-- name: worker_status :scalar
SELECT status FROM pgsched.workers WHERE id = %(id)s::int;

-- name: unlock_worker :exec
SELECT pg_advisory_unlock(%(ns)s::int, %(id)s::int);

-- name: try_waker_lock :scalar
-- The "waker" role (anti-stampede): one idle worker per (queues, types) signature holds it and
-- is the only one that claims on a queue notification. Non-blocking; session level, held on
-- the direct connection so it dies with the process.
SELECT pg_try_advisory_lock(%(ns)s::int, hashtext(%(signature)s::text));

-- name: release_waker_lock :scalar
SELECT pg_advisory_unlock(%(ns)s::int, hashtext(%(signature)s::text));

-- name: notify_queue :exec
SELECT pg_notify('pgsched', %(payload)s::text);

-- name: claim_tasks :many
-- One statement, batch-sized: `id = ANY(ARRAY(SELECT ... LIMIT k FOR UPDATE SKIP LOCKED))`
-- keeps the locked sub-select a fence, so the planner cannot lock more rows than the limit
-- (an `UPDATE ... FROM (CTE)` form lets it hash-join the candidates to a sequential scan of
-- the whole table once batches are large).
-- lim: k, the slots asked for, or 0 when this worker is paused or above a ceiling
-- (pgsched.claim_limit, one lookup of its own row; the load-weighted share is already in
-- %(slots)s: pgsched/worker/share.py).
WITH lim AS MATERIALIZED (
    SELECT pgsched.claim_limit(%(worker)s::text, %(slots)s::int, %(weighted)s::boolean,
                               %(cpu_ceiling)s::real, %(memory_ceiling)s::real) AS k
)
-- Candidates come from one range of tasks_ready_idx per (queue, task type) this worker runs
-- (LATERAL over both arrays), each walked in claim order and stopped after `slots` rows: ready
-- rows of a type the worker does not run are never read, however many sit above its own.
-- (`queue = ANY(array)` or `task_type = ANY(array)` cannot walk the index in claim order:
-- the planner then sorts every ready row of the queue, or walks them all and filters the
-- type.) The per-range LIMIT stays the constant slots parameter (with
-- `LIMIT (SELECT k ...)` the planner cannot see the limit and plans to read every row); k cuts
-- the merged candidates. k = 0 stops every scan before it starts (one-time filter). The
-- price of the merge: rows of another range that did not make the cut stay locked for the
-- statement only, free again at commit, and each (queue, type) pair costs one index descent
-- even when its range is empty (tests/test_worker_plan.py).
-- Within a range, one priority at a time, from the highest down: with the priority fixed,
-- `run_at <= now` bounds the scan, which stops at the first row not yet due. Over the whole
-- range at once it is only a filter before PostgreSQL 18 (whose B-tree skip scan does this by
-- itself), and a claim beside many tasks due later read every one of them (bench G: an idle
-- worker's pickup beside 1M tasks due tomorrow). pri finds the range's priorities with one
-- index probe each (a loose index scan), from the lowest up, each probe reading backwards
-- from the end of the next priority: its newest tasks. The start of a priority, its oldest
-- tasks, is where the entries of claimed and finished tasks wait for vacuum, all of them
-- while a snapshot is held; the scan of the priority goes through them once, and a probe
-- from that end went through them all a second time (tests/test_worker_plan.py). The
-- priorities, a handful, are then sorted highest first; the scans of them are lazy, so a
-- priority whose rows fill the batch ends the range. Rows come out in claim order without a
-- sort of the rows (tests/test_worker_plan.py checks the claim against the plain ordered
-- query). The walk goes on while `p BETWEEN -1000 AND 1000`, the CHECK's range of a
-- priority: for the walk's rows that is `p IS NOT NULL`, and it tells the planner, which
-- knows nothing of them, that a range has few priorities (with `IS NOT NULL` it assumed 101,
-- and the generic plan's cost passed jit_above_cost).
UPDATE pgsched.tasks t
SET status = 'running', attempts = t.attempts + 1, version = t.version + 1,
    assigned_worker = %(worker)s::text, started_at = coalesce(%(now)s::timestamptz, now()),
    finished_at = NULL
WHERE t.id = ANY(ARRAY(
    SELECT r.id
    FROM unnest(%(queues)s::text[]) AS qn(queue)
    CROSS JOIN unnest(%(task_types)s::text[]) AS tn(task_type)
    CROSS JOIN LATERAL (
        WITH RECURSIVE pri(p) AS (
            (SELECT c.priority FROM pgsched.tasks c
             WHERE c.status IN ('pending', 'retrying')
               AND c.queue = qn.queue AND c.task_type = tn.task_type
             ORDER BY c.priority LIMIT 1)
            UNION ALL
            SELECT (SELECT c.priority FROM pgsched.tasks c
                    WHERE c.status IN ('pending', 'retrying')
                      AND c.queue = qn.queue AND c.task_type = tn.task_type
                      AND c.priority > pri.p
                    ORDER BY c.priority LIMIT 1)
            FROM pri WHERE pri.p BETWEEN -1000 AND 1000
        )
        SELECT x.id, x.priority, x.run_at
        FROM (SELECT pri.p FROM pri WHERE pri.p IS NOT NULL ORDER BY pri.p DESC) pri
        CROSS JOIN LATERAL (
            SELECT c.id, c.priority, c.run_at FROM pgsched.tasks c
            WHERE c.status IN ('pending', 'retrying')
              AND c.queue = qn.queue
              AND c.task_type = tn.task_type
              AND c.priority = pri.p
              AND c.run_at <= coalesce(%(now)s::timestamptz, now())
              AND c.attempts < c.max_attempts
              AND (SELECT k FROM lim) > 0
            ORDER BY c.run_at, c.id
            LIMIT %(slots)s::int
            FOR UPDATE SKIP LOCKED
        ) x
        LIMIT %(slots)s::int
    ) r
    ORDER BY r.priority DESC, r.run_at, r.id
    LIMIT (SELECT k FROM lim)))
RETURNING t.id, t.queue, t.task_type, t.payload, t.priority, t.attempts, t.max_attempts,
    extract(epoch FROM t.timeout)::float8 AS timeout_s,
    extract(epoch FROM t.backoff_base)::float8 AS backoff_base_s,
    extract(epoch FROM t.backoff_cap)::float8 AS backoff_cap_s,
    t.version, t.checkpoint, t.workflow_id, t.cancel_requested, t.started_at;

-- name: claim_limit :scalar
SELECT pgsched.claim_limit(%(worker)s::text, 1, %(weighted)s::boolean, %(cpu_ceiling)s::real,
                           %(memory_ceiling)s::real);

-- name: next_due_in :scalar
-- After a claim that found less than it asked for: in how many seconds does the next task this
-- worker could run become due (by the database's clock), looking no further than %(horizon)s
-- seconds ahead? The waker sleeps until then (or a notification) instead of polling. NULL:
-- nothing is due within the horizon.
-- min(run_at) over a range of the ready index is not in index order (it sorts by priority
-- first), and the plain aggregate is a seq scan of every future row. So, per (queue, task type)
-- the worker runs: walk the range's distinct priorities down the index (a loose index scan, one
-- probe per priority), then take the first run_at in the horizon at each priority. The reads
-- grow with pairs x priorities, not with rows (tests/test_worker_plan.py).
WITH RECURSIVE pri(queue, task_type, p) AS (
    SELECT qn.queue, tn.task_type,
           (SELECT c.priority FROM pgsched.tasks c
            WHERE c.status IN ('pending', 'retrying')
              AND c.queue = qn.queue AND c.task_type = tn.task_type
            ORDER BY c.priority DESC LIMIT 1)
    FROM unnest(%(queues)s::text[]) AS qn(queue)
    CROSS JOIN unnest(%(task_types)s::text[]) AS tn(task_type)
    UNION ALL
    SELECT pri.queue, pri.task_type,
           (SELECT c.priority FROM pgsched.tasks c
            WHERE c.status IN ('pending', 'retrying')
              AND c.queue = pri.queue AND c.task_type = pri.task_type
              AND c.priority < pri.p
            ORDER BY c.priority DESC LIMIT 1)
    FROM pri WHERE pri.p IS NOT NULL
)
SELECT extract(epoch FROM min(d.run_at) - coalesce(%(now)s::timestamptz, now()))::float8
FROM pri CROSS JOIN LATERAL (
    SELECT c.run_at FROM pgsched.tasks c
    WHERE c.status IN ('pending', 'retrying')
      AND c.queue = pri.queue AND c.task_type = pri.task_type AND c.priority = pri.p
      AND c.run_at > coalesce(%(now)s::timestamptz, now())
      AND c.run_at <= coalesce(%(now)s::timestamptz, now())
                      + make_interval(secs => %(horizon)s::float8)
      AND c.attempts < c.max_attempts
    ORDER BY c.run_at
    LIMIT 1
) d;

-- name: left_behind :scalar
-- The fallback poll of an idle worker that is not the waker: has a task it could run been due
-- for more than %(age)s seconds? Then the waker is not claiming (its advisory lock held by a
-- session outside the fleet, or it hangs) and this worker claims. A probe, not an empty
-- claim: it locks nothing, and one insert still makes at most ~2 workers claim. It reads one
-- range of tasks_ready_idx per (queue, task type) the worker runs, as the claim does.
SELECT EXISTS (
    SELECT 1
    FROM unnest(%(queues)s::text[]) AS qn(queue)
    CROSS JOIN unnest(%(task_types)s::text[]) AS tn(task_type)
    CROSS JOIN LATERAL (
        SELECT 1 FROM pgsched.tasks c
        WHERE c.status IN ('pending', 'retrying')
          AND c.queue = qn.queue
          AND c.task_type = tn.task_type
          AND c.run_at <= coalesce(%(now)s::timestamptz, now())
                          - make_interval(secs => %(age)s::float8)
          AND c.attempts < c.max_attempts
        LIMIT 1
    ) due
);

-- name: complete_tasks :many
-- Batched, version-guarded acknowledgement of N tasks from parallel arrays. Joins on id +
-- version only: every state change bumps version, so a match implies still running and same
-- owner (extra status/owner predicates lower the join's row estimate until the planner picks
-- a nested loop of the batch against itself). The attempt row is INSERTed here, once (the
-- running task row is the in-flight attempt): one write per attempt instead of an insert at
-- the claim and an update here.
-- A task that ends (succeeded, failed, cancelled) and has no unique key (idempotency key,
-- workflow node, schedule tick) moves: `moved` deletes its row from pgsched.tasks and
-- `finished` inserts its final version into pgsched.finished_tasks (revision 0015). Every other
-- row (a retry, a keyed task ending) is updated in place by `kept`, which looks up only the ids
-- `moved` did not take. The two never touch the same row. `moved` tests the status in a CASE
-- over both sides, a filter of the join: as a filter of the batch alone it lowered the batch's
-- row estimate until the planner joined it to the task rows by a nested loop that compared
-- every pair (500 x 500 for a batch of 500).
-- Returns only the ids it changed (all the caller needs); it logs the others as rejected.
-- `t.id = ANY(ids)` is redundant with the join but gives the planner an index path: the join
-- on (id, version) alone is estimated at a couple of rows and planned as a hash join over a
-- seq scan of the whole table, a cost that grows with the table; with it, the batch's rows
-- are looked up through tasks_pkey, whatever the table's size.
-- The arrays go in binary (b placeholders): in text, psycopg formats and quotes them element by
-- element in Python, and the server parses them back.
-- The attempt rows go in without ON CONFLICT: an arbiter makes every row a speculative
-- insertion (a probe of the unique index first, a second WAL record after), a large part of
-- the INSERT's cost (`python bench/probes.py completion-arbiter` measures it; a NOT EXISTS in
-- the INSERT instead keeps half of it). The version guard admits one
-- completion per claim, and a claim's attempt number has no row yet (release_tasks lowers
-- attempts but writes none), unless attempts was lowered by hand in SQL. Such a conflict
-- fails the whole statement, which changed nothing then, and complete() runs the
-- batch again as complete_tasks_arbitrated (below), which keeps the first row of that attempt
-- number and writes the rest.
WITH u AS (
    SELECT * FROM unnest(
        %(ids)b::bigint[], %(versions)b::bigint[], %(statuses)b::text[], %(outcomes)b::text[],
        %(results)b::jsonb[], %(errors)b::text[], %(delays)b::float8[], %(durations)b::float8[]
    ) AS u(id, version, status, outcome, result, error, delay, duration_ms)
), moved AS (
    DELETE FROM pgsched.tasks t USING u
    WHERE t.id = ANY(%(ids)b::bigint[]) AND t.id = u.id AND t.version = u.version
      AND CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')
               THEN t.idempotency_key IS NULL AND t.workflow_id IS NULL
                    AND t.schedule_id IS NULL END
    RETURNING t.id, t.queue, t.task_type, t.payload, u.status, t.priority, t.run_at,
              t.attempts, t.max_attempts, t.timeout, t.backoff_base, t.backoff_cap,
              t.version + 1 AS version, t.assigned_worker, t.idempotency_key, t.workflow_id,
              t.workflow_node, t.schedule_id, t.schedule_tick, t.cancel_requested,
              coalesce(u.result, t.result) AS result,
              coalesce(u.error, t.last_error) AS last_error,
              CASE WHEN u.status = 'succeeded' THEN 1 ELSE t.progress END AS progress,
              t.checkpoint, t.created_at, t.started_at, u.outcome, u.duration_ms, u.error
), finished AS (
    INSERT INTO pgsched.finished_tasks
        (id, queue, task_type, payload, status, priority, run_at, attempts, max_attempts,
         timeout, backoff_base, backoff_cap, version, assigned_worker, idempotency_key,
         workflow_id, workflow_node, schedule_id, schedule_tick, cancel_requested, result,
         last_error, progress, checkpoint, created_at, started_at, finished_at)
    SELECT id, queue, task_type, payload, status, priority, run_at, attempts, max_attempts,
           timeout, backoff_base, backoff_cap, version, assigned_worker, idempotency_key,
           workflow_id, workflow_node, schedule_id, schedule_tick, cancel_requested, result,
           last_error, progress, checkpoint, created_at, started_at,
           coalesce(%(now)s::timestamptz, now())
    FROM moved
), kept AS (
    UPDATE pgsched.tasks t
    SET status = u.status,
        result = coalesce(u.result, t.result),
        last_error = coalesce(u.error, t.last_error),
        progress = CASE WHEN u.status = 'succeeded' THEN 1 ELSE t.progress END,
        run_at = CASE WHEN u.status = 'retrying'
                      THEN coalesce(%(now)s::timestamptz, now()) + make_interval(secs => u.delay)
                      ELSE t.run_at END,
        finished_at = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')
                           THEN coalesce(%(now)s::timestamptz, now()) END,
        assigned_worker = CASE WHEN u.status = 'retrying' THEN NULL
                               ELSE t.assigned_worker END,
        version = t.version + 1
    FROM u
    WHERE t.id = ANY(ARRAY(SELECT r.id FROM u r WHERE r.id NOT IN (SELECT m.id FROM moved m)))
      AND t.id = u.id AND t.version = u.version
    RETURNING t.id, t.status, t.attempts, t.queue, t.task_type, t.payload, t.started_at,
              t.last_error, u.outcome, u.duration_ms, u.error
), done AS (
    SELECT id, status, attempts, queue, task_type, payload, started_at, last_error, outcome,
           duration_ms, error
    FROM moved
    UNION ALL
    SELECT * FROM kept
), ex AS (
    INSERT INTO pgsched.task_executions
        (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms, error)
    SELECT id, attempts, %(worker)s::text, started_at, coalesce(%(now)s::timestamptz, now()),
           outcome, duration_ms, error
    FROM done
), dl AS (
    INSERT INTO pgsched.dead_letter
        (task_id, queue, task_type, payload, attempts, last_error, failed_at)
    SELECT id, queue, task_type, payload, attempts, last_error,
           coalesce(%(now)s::timestamptz, now())
    FROM done WHERE status = 'failed'
    ON CONFLICT ON CONSTRAINT dead_letter_task_unique DO UPDATE
    SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
        failed_at = EXCLUDED.failed_at, payload = EXCLUDED.payload
)
SELECT id FROM done;

-- name: complete_tasks_arbitrated :many
-- complete_tasks with an arbiter on the attempt rows, for a batch in which an attempt number
-- has a row already (attempts lowered by hand in SQL): that row stays as it is, every other
-- change of the batch is written. The two statements differ by that ON CONFLICT clause only
-- (tests/test_sql_statements.py checks it).
WITH u AS (
    SELECT * FROM unnest(
        %(ids)b::bigint[], %(versions)b::bigint[], %(statuses)b::text[], %(outcomes)b::text[],
        %(results)b::jsonb[], %(errors)b::text[], %(delays)b::float8[], %(durations)b::float8[]
    ) AS u(id, version, status, outcome, result, error, delay, duration_ms)
), moved AS (
    DELETE FROM pgsched.tasks t USING u
    WHERE t.id = ANY(%(ids)b::bigint[]) AND t.id = u.id AND t.version = u.version
      AND CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')
               THEN t.idempotency_key IS NULL AND t.workflow_id IS NULL
                    AND t.schedule_id IS NULL END
    RETURNING t.id, t.queue, t.task_type, t.payload, u.status, t.priority, t.run_at,
              t.attempts, t.max_attempts, t.timeout, t.backoff_base, t.backoff_cap,
              t.version + 1 AS version, t.assigned_worker, t.idempotency_key, t.workflow_id,
              t.workflow_node, t.schedule_id, t.schedule_tick, t.cancel_requested,
              coalesce(u.result, t.result) AS result,
              coalesce(u.error, t.last_error) AS last_error,
              CASE WHEN u.status = 'succeeded' THEN 1 ELSE t.progress END AS progress,
              t.checkpoint, t.created_at, t.started_at, u.outcome, u.duration_ms, u.error
), finished AS (
    INSERT INTO pgsched.finished_tasks
        (id, queue, task_type, payload, status, priority, run_at, attempts, max_attempts,
         timeout, backoff_base, backoff_cap, version, assigned_worker, idempotency_key,
         workflow_id, workflow_node, schedule_id, schedule_tick, cancel_requested, result,
         last_error, progress, checkpoint, created_at, started_at, finished_at)
    SELECT id, queue, task_type, payload, status, priority, run_at, attempts, max_attempts,
           timeout, backoff_base, backoff_cap, version, assigned_worker, idempotency_key,
           workflow_id, workflow_node, schedule_id, schedule_tick, cancel_requested, result,
           last_error, progress, checkpoint, created_at, started_at,
           coalesce(%(now)s::timestamptz, now())
    FROM moved
), kept AS (
    UPDATE pgsched.tasks t
    SET status = u.status,
        result = coalesce(u.result, t.result),
        last_error = coalesce(u.error, t.last_error),
        progress = CASE WHEN u.status = 'succeeded' THEN 1 ELSE t.progress END,
        run_at = CASE WHEN u.status = 'retrying'
                      THEN coalesce(%(now)s::timestamptz, now()) + make_interval(secs => u.delay)
                      ELSE t.run_at END,
        finished_at = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')
                           THEN coalesce(%(now)s::timestamptz, now()) END,
        assigned_worker = CASE WHEN u.status = 'retrying' THEN NULL
                               ELSE t.assigned_worker END,
        version = t.version + 1
    FROM u
    WHERE t.id = ANY(ARRAY(SELECT r.id FROM u r WHERE r.id NOT IN (SELECT m.id FROM moved m)))
      AND t.id = u.id AND t.version = u.version
    RETURNING t.id, t.status, t.attempts, t.queue, t.task_type, t.payload, t.started_at,
              t.last_error, u.outcome, u.duration_ms, u.error
), done AS (
    SELECT id, status, attempts, queue, task_type, payload, started_at, last_error, outcome,
           duration_ms, error
    FROM moved
    UNION ALL
    SELECT * FROM kept
), ex AS (
    INSERT INTO pgsched.task_executions
        (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms, error)
    SELECT id, attempts, %(worker)s::text, started_at, coalesce(%(now)s::timestamptz, now()),
           outcome, duration_ms, error
    FROM done
    ON CONFLICT ON CONSTRAINT task_executions_attempt_unique DO NOTHING
), dl AS (
    INSERT INTO pgsched.dead_letter
        (task_id, queue, task_type, payload, attempts, last_error, failed_at)
    SELECT id, queue, task_type, payload, attempts, last_error,
           coalesce(%(now)s::timestamptz, now())
    FROM done WHERE status = 'failed'
    ON CONFLICT ON CONSTRAINT dead_letter_task_unique DO UPDATE
    SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
        failed_at = EXCLUDED.failed_at, payload = EXCLUDED.payload
)
SELECT id FROM done;

-- name: release_tasks :many
-- Graceful shutdown: hand running tasks back without spending an attempt.
UPDATE pgsched.tasks t
SET status = 'pending', attempts = greatest(t.attempts - 1, 0), version = t.version + 1,
    assigned_worker = NULL, started_at = NULL
FROM unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS u(id, version)
WHERE t.id = u.id AND t.version = u.version
RETURNING t.id;

-- name: cancel_requests :many
-- This worker's running tasks that `pgsched cancel` asked to stop, with their new version.
SELECT id, version FROM pgsched.tasks
WHERE status = 'running' AND assigned_worker = %(worker)s::text AND cancel_requested;

-- name: task_progress :rowcount
-- Progress and checkpoint of a running attempt. Not a state change: version stays, so the
-- attempt's completion still matches.
UPDATE pgsched.tasks
SET progress = coalesce(%(progress)s::real, progress),
    checkpoint = CASE WHEN %(set_checkpoint)s::boolean THEN %(checkpoint)s::jsonb
                      ELSE checkpoint END
WHERE id = %(id)s::bigint AND version = %(version)s::bigint;

-- name: reap_dead_workers :many
-- Recovery, run by any worker, one at a time (pgsched.try_recovery_gate(): a lock on the table
-- pgsched.recovery_gate for the statement's transaction, so it also works through a pooler;
-- only roles with UPDATE on that table can take it, unlike an advisory lock, which any
-- session can take, and hold forever). A worker is dead when its session-level
-- liveness lock (ns, workers.id) is no longer held in this database (kill -9, lost session)
-- or its heartbeat is older than heartbeat_timeout (hung, SIGSTOP). Its running tasks, and
-- any running task whose owner is not a live worker, go back to retrying (failed + dead letter
-- when attempts are exhausted) with a `lost` attempt row.
-- fence: a worker declared dead by its heartbeat may still have a live session (SIGSTOP, a
-- hung process): its backends are terminated, which frees every lock it holds (the waker lock
-- too, so the idle fleet elects a new waker) and makes it re-register if it ever resumes.
-- Only backends whose role this session may signal (same role, or pg_signal_backend).
-- wake: handed-back tasks are due now, but an UPDATE fires no insert trigger: notify.
WITH gate AS (
    SELECT pgsched.try_recovery_gate() AS ok
), dead AS (
    UPDATE pgsched.workers w
    SET status = 'dead', stopped_at = coalesce(%(now)s::timestamptz, now()),
        current_task_count = 0
    WHERE (SELECT ok FROM gate)
      AND w.status IN ('active', 'paused', 'draining')
      AND (w.last_heartbeat < coalesce(%(now)s::timestamptz, now())
                              - make_interval(secs => %(heartbeat_timeout)s::float8)
           OR NOT EXISTS (
               SELECT 1 FROM pg_locks l
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                 AND l.database = (SELECT d.oid FROM pg_database d
                                   WHERE d.datname = current_database())
                 AND l.classid = %(ns)s::int::oid AND l.objid = w.id::oid))
    RETURNING w.id, w.name
), fence AS (
    SELECT pg_terminate_backend(a.pid, 1000) AS done, a.pid  -- waits (<= 1 s) until it exits
    FROM pg_stat_activity a
    WHERE a.pid IN (
        SELECT l.pid FROM pg_locks l
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.database = (SELECT d.oid FROM pg_database d
                            WHERE d.datname = current_database())
          AND l.classid = %(ns)s::int::oid AND l.objid IN (SELECT id::oid FROM dead))
      AND a.pid <> pg_backend_pid()
      AND (pg_has_role(a.usesysid, 'MEMBER') OR pg_has_role('pg_signal_backend', 'MEMBER'))
), orphan AS MATERIALIZED (
    -- MATERIALIZED: inlined, the planner (estimating 1 running row) re-scans the running
    -- rows once per running row to join them to `lost`, quadratic in the running rows.
    -- Computed once, it is one scan.
    SELECT o.id, o.assigned_worker AS owner FROM pgsched.tasks o
    WHERE (SELECT ok FROM gate)
      AND o.status = 'running'
      AND (o.assigned_worker IN (SELECT name FROM dead)
           OR NOT EXISTS (SELECT 1 FROM pgsched.workers w
                          WHERE w.name = o.assigned_worker
                            AND w.status IN ('active', 'paused', 'draining')))
), lost AS (
    UPDATE pgsched.tasks t
    SET status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'retrying' END,
        run_at = coalesce(%(now)s::timestamptz, now()),
        finished_at = CASE WHEN t.attempts >= t.max_attempts
                           THEN coalesce(%(now)s::timestamptz, now()) END,
        last_error = 'worker ' || coalesce(o.owner, '?') || ' was lost',
        assigned_worker = NULL,
        version = t.version + 1
    FROM orphan o
    WHERE t.id = o.id AND t.status = 'running'
    RETURNING t.id, t.status, t.attempts, t.queue, t.task_type, t.payload, t.started_at,
              t.last_error, t.run_at AS lost_at, o.owner
), ex AS (
    INSERT INTO pgsched.task_executions
        (task_id, attempt, worker, started_at, finished_at, outcome, duration_ms, error)
    SELECT id, attempts, owner, started_at, lost_at,
           'lost',
           CASE WHEN isfinite(started_at)  -- a started_at set to infinity by hand
                THEN extract(epoch FROM lost_at - started_at) * 1000 END,
           last_error
    FROM lost
    ON CONFLICT ON CONSTRAINT task_executions_attempt_unique DO NOTHING
), dl AS (
    INSERT INTO pgsched.dead_letter
        (task_id, queue, task_type, payload, attempts, last_error, failed_at)
    SELECT id, queue, task_type, payload, attempts, last_error, lost_at
    FROM lost WHERE status = 'failed'
    ON CONFLICT ON CONSTRAINT dead_letter_task_unique DO UPDATE
    SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error
), wake AS (
    SELECT pg_notify('pgsched', q.queue) AS sent, q.queue
    FROM (SELECT DISTINCT queue FROM lost WHERE status = 'retrying') q
)
SELECT 'worker' AS kind, name, NULL::bigint AS task_id, NULL::text AS status FROM dead
UNION ALL
SELECT 'task', owner, id, status FROM lost
UNION ALL
SELECT 'fenced', NULL, pid::bigint, done::text FROM fence
UNION ALL
SELECT 'woken', queue, NULL, NULL FROM wake;

-- name: prune_finished :rowcount
-- Retention: finished tasks older than the retention period, from both tables, in bounded
-- batches, with their attempt rows and (for workflow tasks) their dependency edges. SKIP
-- LOCKED: workers pruning at the same time take disjoint batches instead of queueing on each
-- other's row locks. pgsched.finished_tasks is read through its BRIN index on finished_at, in
-- no particular order (the rows came in finish order).
WITH gone_hot AS (
    DELETE FROM pgsched.tasks t
    WHERE t.id IN (
        SELECT f.id FROM pgsched.tasks f
        WHERE f.status IN ('succeeded', 'failed', 'cancelled')
          AND f.finished_at < coalesce(%(now)s::timestamptz, now())
                              - make_interval(secs => %(retention)s::float8)
        ORDER BY f.finished_at
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED)
    RETURNING t.id
), gone_finished AS (
    DELETE FROM pgsched.finished_tasks t
    WHERE t.id IN (
        SELECT f.id FROM pgsched.finished_tasks f
        WHERE f.finished_at < coalesce(%(now)s::timestamptz, now())
                              - make_interval(secs => %(retention)s::float8)
        LIMIT %(limit)s::int
        FOR UPDATE SKIP LOCKED)
    RETURNING t.id
), gone AS (
    SELECT id FROM gone_hot UNION ALL SELECT id FROM gone_finished
), edges AS (
    DELETE FROM pgsched.task_dependencies d
    WHERE d.task_id IN (SELECT id FROM gone_hot) OR d.depends_on IN (SELECT id FROM gone_hot)
), ex AS (
    DELETE FROM pgsched.task_executions e WHERE e.task_id IN (SELECT id FROM gone)
)
SELECT id FROM gone;

-- name: owned_running :many
-- After a lost claim connection: running tasks this worker owns (a claim may have committed
-- without its answer arriving); the ones it does not know are handed back.
SELECT id, version FROM pgsched.tasks
WHERE status = 'running' AND assigned_worker = %(worker)s::text;
