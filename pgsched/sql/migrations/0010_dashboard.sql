-- Indexes for the web dashboard (pgsched/sql/dashboard.sql).

-- Retrying tasks per queue without reading the table: tasks_ready_idx answers ready counts and
-- ages but not which of its rows are retrying. Only rows in that state are indexed, so the
-- index stays as small as the set of tasks waiting out a backoff.
CREATE INDEX tasks_retrying_idx ON pgsched.tasks (queue) WHERE status = 'retrying';

-- The dead letter newest first (dlq_list, the dashboard's dead-letter page) reads 50 entries
-- instead of sorting all of them; entries are written only when a task fails for good.
CREATE INDEX dead_letter_failed_at_idx ON pgsched.dead_letter (failed_at, id);

-- Attempts by finish time for the throughput charts' windows. Attempts are inserted in finish
-- order, so a BRIN index (a few pages, next to nothing per insert) skips all but the window's
-- blocks; a btree would cost every completion an index insert.
CREATE INDEX task_executions_finished_brin ON pgsched.task_executions USING brin (finished_at);
