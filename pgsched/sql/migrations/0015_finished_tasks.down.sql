-- Back to revision 0014: finished tasks return to pgsched.tasks, and the dependency edges get
-- their foreign keys again (edges whose task is gone go first, as the keys' cascade would have
-- removed them).
DROP FUNCTION pgsched.reopen_tasks(bigint[]);
DROP VIEW pgsched.all_tasks;
WITH back AS (DELETE FROM pgsched.finished_tasks RETURNING *)
INSERT INTO pgsched.tasks SELECT * FROM back;
DROP TABLE pgsched.finished_tasks;

DELETE FROM pgsched.task_dependencies d
WHERE NOT EXISTS (SELECT 1 FROM pgsched.tasks t WHERE t.id = d.task_id)
   OR NOT EXISTS (SELECT 1 FROM pgsched.tasks t WHERE t.id = d.depends_on);
ALTER TABLE pgsched.task_dependencies
    ADD CONSTRAINT task_dependencies_task_id_fkey FOREIGN KEY (task_id)
        REFERENCES pgsched.tasks (id) ON DELETE CASCADE,
    ADD CONSTRAINT task_dependencies_depends_on_fkey FOREIGN KEY (depends_on)
        REFERENCES pgsched.tasks (id) ON DELETE CASCADE;
