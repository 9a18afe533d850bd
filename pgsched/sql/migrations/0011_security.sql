-- pgsched schema, revision 0011: limits and gates a submitter cannot get around.

-- The recovery gate: a table that the recovery statement locks (EXCLUSIVE, NOWAIT) for its
-- transaction, so one recovery runs at a time. The gate before was an advisory lock, which
-- any session with CONNECT can take and hold forever, stopping recovery; this lock needs
-- UPDATE, DELETE or TRUNCATE on the table, which only its owner and the roles it grants them
-- to have. A table lock is kept in memory only: no row is written, no transaction id taken.
CREATE TABLE pgsched.recovery_gate ();
REVOKE ALL ON pgsched.recovery_gate FROM PUBLIC;

CREATE FUNCTION pgsched.try_recovery_gate() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE pgsched.recovery_gate IN EXCLUSIVE MODE NOWAIT;
    RETURN true;
EXCEPTION WHEN lock_not_available THEN
    RETURN false;
END
$$;

-- Shell tasks run commands on the workers that allow them: only members of pgsched_shell (and
-- the owner of the tables, who could drop the trigger anyway) may create one, by INSERT, by an
-- UPDATE of its type, or by a schedule. pgsched_submit and pgsched_admin are not members;
-- grant it on purpose (GRANT pgsched_shell TO deployer). Made here as revision 0006 makes the
-- other group roles: a migrating role that may not create roles leaves it out with a notice
-- (the embedded server's superuser creates it beforehand), and then nobody but the owner may
-- submit shell tasks.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_shell') THEN
        IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            BEGIN  -- another database of the cluster may be migrating at once
                CREATE ROLE pgsched_shell NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        ELSE
            RAISE NOTICE 'role pgsched_shell does not exist and % may not create it: only the '
                'owner may submit shell tasks', current_user;
        END IF;
    END IF;
    -- The fleet locks the recovery gate; nobody else needs to.
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_worker') THEN
        GRANT UPDATE ON pgsched.recovery_gate TO pgsched_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_admin') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON pgsched.recovery_gate TO pgsched_admin;
    END IF;
END
$$;

-- A schedule's tick is inserted by whichever worker runs the scheduler: it passes when it is
-- exactly what its schedule says (type, payload, queue), since the schedule itself passed this
-- check when it was written. (Reading the schedule needs SELECT on schedules, which a
-- submitter does not have: one that sets schedule_id by hand is refused all the same.)
CREATE FUNCTION pgsched.check_shell_submitter() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- (CASE in parentheses: PL/pgSQL's IF ends at the first THEN outside them)
    IF (CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgsched_shell')
             THEN pg_has_role(current_user, 'pgsched_shell', 'MEMBER') ELSE false END)
       OR pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID),
                      'MEMBER') THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'tasks' THEN  -- (nested: NEW of a schedule has no schedule_id)
        IF NEW.schedule_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM pgsched.schedules s
            WHERE s.id = NEW.schedule_id AND s.task_type = NEW.task_type
              AND s.payload = NEW.payload AND s.queue = NEW.queue
        ) THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION 'role % may not submit shell tasks (not a member of pgsched_shell)',
        current_user
        USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'shell_needs_pgsched_shell';
END
$$;

-- AFTER, not BEFORE: a BEFORE ROW trigger turns off COPY's batched inserts (Client.submit_many
-- uses COPY); raising in an AFTER trigger undoes the statement all the same. WHEN: the event is
-- queued for shell rows only, so other inserts pay nothing but the test.
CREATE TRIGGER tasks_shell_submitter
    AFTER INSERT OR UPDATE OF task_type ON pgsched.tasks
    FOR EACH ROW WHEN (NEW.task_type = 'shell')
    EXECUTE FUNCTION pgsched.check_shell_submitter();
CREATE TRIGGER schedules_shell_submitter
    AFTER INSERT OR UPDATE OF task_type ON pgsched.schedules
    FOR EACH ROW WHEN (NEW.task_type = 'shell')
    EXECUTE FUNCTION pgsched.check_shell_submitter();

-- Payload size: 1 MiB unless the owner replaces this function (then new rows obey the new
-- limit). NOT VALID: existing rows are not checked, so the migration cannot fail on them.
CREATE FUNCTION pgsched.max_payload_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1048576 $$;
ALTER TABLE pgsched.tasks ADD CONSTRAINT tasks_payload_size
    CHECK (pg_column_size(payload) <= pgsched.max_payload_bytes()) NOT VALID;
ALTER TABLE pgsched.schedules ADD CONSTRAINT schedules_payload_size
    CHECK (pg_column_size(payload) <= pgsched.max_payload_bytes()) NOT VALID;

-- Schedules: no interval under a second, at most 10,000 missed ticks fired at once.
ALTER TABLE pgsched.schedules ADD CONSTRAINT schedules_every_minimum
    CHECK (every >= interval '1 second') NOT VALID;
ALTER TABLE pgsched.schedules ADD CONSTRAINT schedules_misfire_cap_range
    CHECK (misfire_cap <= 10000) NOT VALID;
