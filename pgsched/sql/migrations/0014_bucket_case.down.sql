-- Back to revision 0013: the bucket looked up in a numeric array per attempt row.
CREATE OR REPLACE FUNCTION pgsched.count_attempts() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgsched AS $$
DECLARE
    s smallint := pg_backend_pid() % 8;
BEGIN
    INSERT INTO pgsched.metric_counters AS m (name, label, stripe, value)
    SELECT c.name, c.label, s, c.n FROM (
        SELECT 'attempts' AS name, n.outcome AS label, count(*) AS n
        FROM new_rows n GROUP BY n.outcome
        UNION ALL
        SELECT 'duration_bucket',
               coalesce((SELECT min(u.b)::text FROM unnest(ARRAY[
                   0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300
               ]::numeric[]) AS u(b) WHERE n.duration_ms <= u.b * 1000), '+Inf'),
               count(*)
        FROM new_rows n WHERE n.duration_ms IS NOT NULL GROUP BY 2
        UNION ALL
        SELECT 'duration_sum_ms', '', coalesce(round(sum(n.duration_ms)), 0)::bigint
        FROM new_rows n WHERE n.duration_ms IS NOT NULL HAVING count(*) > 0
    ) c
    ON CONFLICT (name, label, stripe) DO UPDATE SET value = m.value + excluded.value;
    RETURN NULL;
END
$$;
