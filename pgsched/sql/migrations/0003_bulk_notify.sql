-- pgsched schema, revision 0003: a bulk submission notifies once per queue, not per row.
--
-- The row-level insert trigger ran a PL/pgSQL call per row; PostgreSQL folds identical
-- notifications, but the calls remain: 20 COPYs of 1,000 rows went from ~56k to ~51k rows/s
-- with it. pgsched's bulk path (Client.submit_many) now sends one pg_notify per queue of the
-- batch itself, in the statement that reserves the ids, and marks its transaction with
-- pgsched.inserts_notified = on (transaction-local) so the trigger skips those rows. Every
-- other insert (plain SQL, pgsched.submit(), a trigger of the user's) notifies as before.
DROP TRIGGER tasks_notify_insert ON pgsched.tasks;
CREATE TRIGGER tasks_notify_insert
    AFTER INSERT ON pgsched.tasks
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'retrying')
                       AND current_setting('pgsched.inserts_notified', true)
                           IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgsched.notify_task_inserted();
