-- `tether_begin_create` keeps one plan per statement and connection, like
-- `tether_complete_operation` (migration 20261203000000), instead of letting Postgres choose.
--
-- Why: the key check (`k.key = any(wanted_keys)`, migration 20261205000000) takes an array,
-- and with one the plan cache may judge a custom plan cheaper and plan the statement afresh
-- on every call. In a create benchmark on a fresh database (64 sagas in flight,
-- pg_stat_statements with track_planning) it was planned on 2,075 of 2,181 calls (64 µs of
-- planning per call there); with 12 in flight, on 72 of 1,598 (the first calls of each
-- connection). Which one the cache picks depends on the statistics of the moment; the
-- generic plan is the index lookup either way.
alter function tether_begin_create(uuid, text, jsonb, text, float8, text, text, text, jsonb,
    uuid, text, text, text, text, jsonb, bytea, jsonb, text, jsonb, bigint, jsonb, jsonb, text[],
    uuid, text, text, text, text, timestamptz, audit)
    set plan_cache_mode = force_generic_plan;
