ALTER TABLE pgsched.schedules
    DROP CONSTRAINT schedules_timeout_positive;
ALTER TABLE pgsched.alert_rules
    DROP CONSTRAINT alert_rules_min_interval_bounded,
    DROP CONSTRAINT alert_rules_window_bounded;
