-- pgsched schema, revision 0002: the claim's load-weighted limit as a function.
--
-- The claim statement computed its limit k in three CTEs over pgsched.workers. Those were
-- planned again on every claim (the worker uses custom plans): 0.25 ms of planning for a
-- one-row claim against 0.12 ms without them, the largest piece of an idle worker's pickup
-- after the commit. A PL/pgSQL function keeps the same formula, in SQL, and its plans are
-- cached for the session.
--
-- k: free slots x (my headroom / best headroom), at least 1 while I have headroom;
--    0 when I am not active or above a ceiling; plain free slots when weighting is off.
--   my headroom:   1 - max(cpu / cpu_ceiling, memory / memory_ceiling), from my last heartbeat;
--   best headroom: the same for the least-loaded live worker sharing a queue with free slots.
CREATE FUNCTION pgsched.claim_limit(
    worker text, queues text[], slots integer, weighted boolean,
    cpu_ceiling real, memory_ceiling real, heartbeat_timeout double precision,
    ref_time timestamptz
) RETURNS integer
LANGUAGE plpgsql STABLE
-- The worker's sessions run with plan_cache_mode = force_custom_plan (for the claim and the
-- completion); here the two lookups over the workers rows may keep their cached plans.
SET plan_cache_mode = auto
AS $$
DECLARE
    my_status text;
    mine real;
    best real;
BEGIN
    SELECT w.status,
           1 - greatest(w.cpu_usage / cpu_ceiling, w.memory_usage / memory_ceiling)
    INTO my_status, mine
    FROM pgsched.workers w WHERE w.name = worker;
    IF my_status IS DISTINCT FROM 'active' THEN
        RETURN 0;
    ELSIF NOT weighted THEN
        RETURN slots;
    ELSIF mine <= 0 THEN
        RETURN 0;
    END IF;
    SELECT max(1 - greatest(p.cpu_usage / cpu_ceiling, p.memory_usage / memory_ceiling))
    INTO best
    FROM pgsched.workers p
    WHERE p.status = 'active' AND p.queues && claim_limit.queues
      AND p.current_task_count < p.max_task_capacity
      AND p.last_heartbeat > ref_time - make_interval(secs => heartbeat_timeout);
    RETURN greatest(1, floor(slots * mine / greatest(coalesce(best, mine), mine)))::integer;
END
$$;
