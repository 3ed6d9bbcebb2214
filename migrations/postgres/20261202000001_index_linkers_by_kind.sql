-- Key naming asks whether a source already has a linker of a kind with the same key prefix
-- (crates/store/src/postgres/linker.rs, `targets`): answered from these indexes, so the cost
-- of a create does not grow with the linkers on its source. Linkers stored without a spec
-- (the first release's) are read apart.
create index linker_by_scope_and_kind on linker (scope_key, (spec->>'kind'));
create index linker_without_spec on linker (scope_key) where spec is null;
