-- Parameter filters indexed by (path, value) keys instead of the whole tree.
--
-- 0001's GIN jsonb_path_ops index hashed every leaf of the tree: for each
-- parameter its value but also its type, writable flag and the epoch seconds
-- "nt"/"vt". The timestamps make keys unique to a device (each device is
-- discovered at its own second), so the index held ~2,400 near-unique keys
-- per device: 123 KB per device on a fresh build over 2,000 TR-181 gateways
-- (bench/storage.py), six times the tree itself, and ~5,500 GIN insertions
-- on every tree write. And jsonb_path_ops is lossy: every match is rechecked
-- against the heap tuple, which detoasts and decompresses the whole ~100 KB
-- tree, so counting a filter that matches 10 % of 100,000 devices read
-- 10,000 trees.
--
-- The filters only ever ask "parameter P has value V", so the index holds
-- exactly that: one text key "P<US>V" per parameter with a value (US, the
-- ASCII unit separator, cannot occur in a parameter path, nor anywhere in
-- XML 1.0 text a CPE can send). A text[] GIN answers @> exactly (no
-- recheck), so a bitmap scan never opens the tree: counting 10,000 matches
-- reads 10,000 small heap tuples. acs/store/device_query.py writes the query
-- side with the same two functions, so index and query cannot disagree.

-- A GIN key is limited to about a third of a page; a longer path and value
-- (a certificate, a long list) is indexed by its digest instead. MD5 is
-- enough here: it only has to tell values apart, and an equal digest of a
-- different value still needs a collision crafted for the operator's filter.
CREATE FUNCTION device_parameter_key(path text, value text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN octet_length(path) + octet_length(value) <= 1000 THEN path || E'\x1f' || value
        ELSE E'\x1f' || 'md5:' || md5(path || E'\x1f' || value)
    END
$$;

-- The high COST tells the planner what evaluating it per row means (detoast
-- and walk a whole tree): it keeps it in the index, never in a per-row filter
-- over thousands of candidates.
--
-- The inner call names its schema: index builds, VACUUM and ANALYZE evaluate
-- index expressions with search_path = pg_catalog, pg_temp on current
-- PostgreSQL releases, where an unqualified device_parameter_key is not
-- found. Not "SET search_path" on the function: that would stop the planner
-- inlining it. Built with format() so the ACS may live in any schema.
DO $migration$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION device_parameter_keys(tree jsonb) RETURNS text[]
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 10000
        AS $body$
            SELECT COALESCE(array_agg(%I.device_parameter_key(e.key, e.value ->> 'v')), '{}')
            FROM jsonb_each(tree) AS e
            WHERE e.value ->> 'v' IS NOT NULL
        $body$
    $f$, current_schema());
END
$migration$;

DROP INDEX device_parameters_tree_idx;
CREATE INDEX device_parameters_tree_idx ON device_parameters
    USING gin (device_parameter_keys(tree));

-- Every tree write leaves a dead ~20 KB TOASTed version behind. At the default
-- scale factor (20 %) a 100,000-device table carries 20,000 dead trees before
-- autovacuum comes; 5 % bounds the bloat to a twentieth of the live data,
-- and vacuum's cost is the dead rows, not the table.
ALTER TABLE device_parameters SET (
    autovacuum_vacuum_scale_factor = 0.05,
    toast.autovacuum_vacuum_scale_factor = 0.05
);
