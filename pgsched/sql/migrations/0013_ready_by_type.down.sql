-- Back to revision 0012: the ready index keyed by queue alone.
CREATE INDEX tasks_ready_by_queue_idx ON pgsched.tasks (queue, priority DESC, run_at, id)
    WHERE status IN ('pending', 'retrying');
DROP INDEX pgsched.tasks_ready_idx;
ALTER INDEX pgsched.tasks_ready_by_queue_idx RENAME TO tasks_ready_idx;
