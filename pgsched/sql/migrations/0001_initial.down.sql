-- Reverts 0001_initial.sql. The schema itself stays: it holds alembic's version table.
DROP TRIGGER IF EXISTS tasks_workflow_progress ON pgsched.tasks;
DROP FUNCTION IF EXISTS pgsched.workflow_task_finished();
DROP INDEX IF EXISTS pgsched.schedules_next_tick_idx;
DROP TRIGGER IF EXISTS schedules_notify_update ON pgsched.schedules;
DROP TRIGGER IF EXISTS schedules_notify_insert ON pgsched.schedules;
DROP FUNCTION IF EXISTS pgsched.notify_schedule_changed();
DROP TRIGGER IF EXISTS tasks_notify_cancel ON pgsched.tasks;
DROP FUNCTION IF EXISTS pgsched.notify_cancel_requested();
DROP TRIGGER IF EXISTS tasks_notify_insert ON pgsched.tasks;
DROP FUNCTION IF EXISTS pgsched.notify_task_inserted();
DROP FUNCTION IF EXISTS pgsched.submit(text, jsonb, text, integer, timestamptz, integer, interval, text);
DROP TABLE IF EXISTS pgsched.dead_letter;
DROP TABLE IF EXISTS pgsched.task_executions;
DROP TABLE IF EXISTS pgsched.workers;
DROP TABLE IF EXISTS pgsched.task_dependencies;
DROP TABLE IF EXISTS pgsched.tasks;
DROP TABLE IF EXISTS pgsched.schedules;
DROP TABLE IF EXISTS pgsched.workflows;
