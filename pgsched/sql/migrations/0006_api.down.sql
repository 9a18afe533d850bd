-- The roles stay (other databases of the cluster may use them); their grants here go.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgsched_submit', 'pgsched_worker', 'pgsched_read', 'pgsched_admin']
    LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA pgsched FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA pgsched FROM %I', r);
            EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgsched FROM %I', r);
            EXECUTE format('REVOKE ALL ON SCHEMA pgsched FROM %I', r);
        END IF;
    END LOOP;
END
$$;
DROP TABLE pgsched.api_tokens;
ALTER TABLE pgsched.workflows DROP COLUMN description;
DROP INDEX pgsched.tasks_blocked_idx;
DROP TRIGGER dead_letter_count ON pgsched.dead_letter;
DROP FUNCTION pgsched.count_dead_lettered();
DROP TRIGGER task_executions_count ON pgsched.task_executions;
DROP FUNCTION pgsched.count_attempts();
DROP TABLE pgsched.metric_counters;
