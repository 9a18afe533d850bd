-- pgsched schema, revision 0013: the ready index is keyed by (queue, task_type) before the
-- claim order, so that the claim, next_due_in and left_behind read one range per (queue, task
-- type) a worker runs. Keyed by queue alone, every claim walked the ready rows of every type in
-- its queue that sat above the worker's own and skipped the ones it cannot run: 500,000 ready
-- tasks of a type no worker runs, at the top priority, made each claim read all of them.
--
-- The new index is built before the old one goes, in this migration's transaction: writes to
-- pgsched.tasks wait for the build (seconds per million ready rows), reads do not.
CREATE INDEX tasks_ready_by_type_idx ON pgsched.tasks
    (queue, task_type, priority DESC, run_at, id)
    WHERE status IN ('pending', 'retrying');
DROP INDEX pgsched.tasks_ready_idx;
ALTER INDEX pgsched.tasks_ready_by_type_idx RENAME TO tasks_ready_idx;
