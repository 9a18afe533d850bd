DROP FUNCTION IF EXISTS pgsched.claim_limit(text, integer, boolean, real, real);
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
