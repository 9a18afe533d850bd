-- What `pgsched doctor` reads (pgsched/doctor.py). Catalog and statistics views only, plus the
-- running tasks and the workers rows; nothing here writes.

-- name: doctor_xmin_holders :many
-- What holds back the xmin horizon of this database: dead rows of pgsched's tables newer than it
-- cannot be vacuumed. Sessions of other roles show only to members of pg_read_all_stats.
SELECT 'session' AS kind, a.pid::text AS who, a.usename AS role, a.application_name AS app,
       a.state, extract(epoch FROM now() - a.xact_start)::float8 AS age_s,
       left(a.query, 120) AS query
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.backend_xmin IS NOT NULL
  AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
UNION ALL
SELECT 'prepared transaction', p.gid, p.owner::text, NULL, NULL,
       extract(epoch FROM now() - p.prepared)::float8, NULL
FROM pg_prepared_xacts p
WHERE p.database = current_database()
UNION ALL
SELECT 'replication slot', s.slot_name::text, NULL, NULL,
       CASE WHEN s.active THEN 'active' ELSE 'inactive' END, NULL, NULL
FROM pg_replication_slots s
WHERE s.xmin IS NOT NULL
ORDER BY age_s DESC NULLS FIRST;

-- name: doctor_tables :many
SELECT s.relname::text AS table_name, s.n_live_tup AS live, s.n_dead_tup AS dead,
       extract(epoch FROM now() - greatest(s.last_autovacuum, s.last_vacuum))::float8
           AS vacuum_age_s,
       pg_table_size(s.relid) AS table_bytes, pg_indexes_size(s.relid) AS index_bytes,
       coalesce('autovacuum_enabled=false' = ANY (c.reloptions), false) AS autovacuum_off
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = 'pgsched'
ORDER BY pg_total_relation_size(s.relid) DESC;

-- name: doctor_orphans :many
-- Running tasks whose worker is gone: no row, stopped or dead, or silent past the timeout.
SELECT t.assigned_worker AS worker, w.status AS worker_status,
       extract(epoch FROM now() - w.last_heartbeat)::float8 AS heartbeat_age_s,
       count(*) AS tasks, min(t.id) AS first_task
FROM pgsched.tasks t
LEFT JOIN pgsched.workers w ON w.name = t.assigned_worker
WHERE t.status = 'running'
  AND (w.id IS NULL OR w.status IN ('stopped', 'dead')
       OR w.last_heartbeat < now() - make_interval(secs => %(heartbeat_timeout)s))
GROUP BY t.assigned_worker, w.status, w.last_heartbeat
ORDER BY count(*) DESC;

-- name: doctor_server :one
SELECT current_setting('server_version') AS version,
       current_setting('jit') AS jit,
       current_setting('autovacuum') AS autovacuum,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int
           AS connections;

-- name: doctor_live_workers :scalar
SELECT count(*)::int FROM pgsched.workers
WHERE status IN ('active', 'paused', 'draining')
  AND last_heartbeat >= now() - make_interval(secs => %(heartbeat_timeout)s);
