-- pgsched schema, revision 0012: the durations of alert rules and schedules are bounded as the
-- tasks' are (revision 0007).
--
-- The alert ticker adds a rule's min_interval and window to now(): one past what a timestamp
-- holds ('1000000 years') made every look of the ticker fail ("timestamp out of range"), for
-- every rule, and an infinite one (PostgreSQL 17+) could not be written into the notification's
-- body. Both are at most 100 years (interval '36500 days'; pgsched.models.DURATION_MAX_DAYS),
-- what `pgsched alerts apply` accepts.
--
-- A schedule's timeout becomes the timeout of every task it creates, which tasks' CHECK wants
-- positive: a zero or negative one made every look of the scheduler fail, for every schedule.
-- It is positive now, as `pgsched schedules apply` requires.
--
-- Values already outside are moved first: durations to the bound, a schedule's timeout that is
-- not positive to none (its tasks run without a time limit, as a schedule without one).
UPDATE pgsched.alert_rules SET min_interval = interval '36500 days'
WHERE min_interval > interval '36500 days';
UPDATE pgsched.alert_rules SET time_window = interval '36500 days'
WHERE time_window > interval '36500 days';
UPDATE pgsched.schedules SET timeout = NULL WHERE timeout <= interval '0';

ALTER TABLE pgsched.alert_rules
    ADD CONSTRAINT alert_rules_min_interval_bounded CHECK (min_interval <= interval '36500 days'),
    ADD CONSTRAINT alert_rules_window_bounded CHECK (time_window <= interval '36500 days');
ALTER TABLE pgsched.schedules
    ADD CONSTRAINT schedules_timeout_positive CHECK (timeout > interval '0');
