-- Reverts 0002_schedules_workflows.sql.
DROP TRIGGER IF EXISTS tasks_workflow_progress ON pgsched.tasks;
DROP FUNCTION IF EXISTS pgsched.workflow_task_finished();
DROP INDEX IF EXISTS pgsched.schedules_next_tick_idx;
DROP TRIGGER IF EXISTS schedules_notify_update ON pgsched.schedules;
DROP TRIGGER IF EXISTS schedules_notify_insert ON pgsched.schedules;
DROP FUNCTION IF EXISTS pgsched.notify_schedule_changed();
