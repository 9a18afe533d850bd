DROP TRIGGER tasks_notify_insert ON pgsched.tasks;
CREATE TRIGGER tasks_notify_insert
    AFTER INSERT ON pgsched.tasks
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'retrying'))
    EXECUTE FUNCTION pgsched.notify_task_inserted();
DROP FUNCTION pgsched.notify_bulk(text[]);
