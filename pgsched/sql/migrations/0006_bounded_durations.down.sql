ALTER TABLE pgsched.schedules DROP CONSTRAINT schedules_timeout_bounded;
ALTER TABLE pgsched.tasks
    DROP CONSTRAINT tasks_timeout_bounded,
    DROP CONSTRAINT tasks_backoff_base_bounded,
    DROP CONSTRAINT tasks_backoff_cap_bounded;
