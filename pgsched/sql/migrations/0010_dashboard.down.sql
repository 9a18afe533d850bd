DROP INDEX pgsched.task_executions_finished_brin;
DROP INDEX pgsched.dead_letter_failed_at_idx;
DROP INDEX pgsched.tasks_retrying_idx;
