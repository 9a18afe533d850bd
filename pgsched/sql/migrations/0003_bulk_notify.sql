-- pgsched schema, revision 0003: a bulk submission notifies once per queue, not per row.
--
-- The row-level insert trigger ran a PL/pgSQL call per row; PostgreSQL folds identical
-- notifications, but the calls remain: 20 COPYs of 1,000 rows went from ~56k to ~51k rows/s
-- with it. pgsched's bulk path (Client.submit_many) now sends one pg_notify per queue of the
-- batch itself (pgsched.notify_bulk, called by the statement that inserts or reserves the
-- batch), and marks its transaction with pgsched.inserts_notified = on (transaction-local) so
-- the trigger skips those rows. Every other insert (plain SQL, pgsched.submit(), a trigger of
-- the user's) notifies as before.
CREATE FUNCTION pgsched.notify_bulk(queues text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('pgsched.inserts_notified', 'on', true);
    PERFORM pg_notify('pgsched', d.q) FROM (SELECT DISTINCT u.q FROM unnest(queues) AS u(q)) d;
END
$$;

DROP TRIGGER tasks_notify_insert ON pgsched.tasks;
CREATE TRIGGER tasks_notify_insert
    AFTER INSERT ON pgsched.tasks
    FOR EACH ROW WHEN (NEW.status IN ('pending', 'retrying')
                       AND current_setting('pgsched.inserts_notified', true)
                           IS DISTINCT FROM 'on')
    EXECUTE FUNCTION pgsched.notify_task_inserted();
