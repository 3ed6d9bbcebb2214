-- The key check of `tether_begin_create` (migration 20261204000000) asks the index of
-- `linker_key` first and reads `linker` only when another linker holds a wanted key.
--
-- Why: a function's statements are planned once per connection and the plan kept. The
-- previous check looked linkers up by `id = any(array(<held ids>))`, and a plan made while
-- `linker` was still small (a fresh database, or one whose statistics had not caught up)
-- scans the whole table, even when no key is held. Measured on a fresh database during a
-- create benchmark (4 sagas in flight): 266 µs per create on average (pg_stat_statements),
-- 0.3-0.4 ms per call (auto_explain) once about a thousand linkers existed, for a check
-- that finds nothing. The existence test reads only the index of `linker_key` (its primary
-- key starts with the source and the key).
create or replace function tether_begin_create(
    new_saga uuid, saga_name text, saga_params jsonb, saga_owner text, lease_secs float8,
    saga_chain text, first_step text, first_kind text, first_data jsonb,
    linker_uuid uuid, linker_scope_key text, linker_name_key text, linker_scope text,
    linker_name text, linker_properties jsonb, linker_secret bytea, linker_key_naming jsonb,
    linker_state text, linker_system_data jsonb, linker_generation bigint, linker_keys jsonb,
    linker_spec jsonb, wanted_keys text[],
    op uuid, op_kind text, op_subscription text, op_resource_id text, op_status text,
    op_start timestamptz, audit_row audit,
    out outcome text, out queued boolean, out holders jsonb
)
language plpgsql volatile as $$
begin
    perform pg_advisory_xact_lock(hashtextextended(saga_chain, 0));
    if exists (select 1 from linker where scope_key = linker_scope_key
                                      and name_key = linker_name_key) then
        outcome := 'exists';
        return;
    end if;
    if exists (select 1 from linker_key k
               where k.scope_key = linker_scope_key and k.key = any(wanted_keys)) then
        select jsonb_agg(jsonb_build_array(l.name, l.keys, l.previous_keys)) into holders
        from linker l
        where l.id in (select k.linker_id from linker_key k
                       where k.scope_key = linker_scope_key and k.key = any(wanted_keys));
        outcome := 'conflict';
        return;
    end if;
    insert into linker (id, scope_key, name_key, scope, name, properties, secret, key_naming,
        provisioning_state, system_data, generation, operation_id, keys, spec)
    values (linker_uuid, linker_scope_key, linker_name_key, linker_scope, linker_name,
        linker_properties, linker_secret, linker_key_naming, linker_state, linker_system_data,
        linker_generation, op, linker_keys, linker_spec);
    queued := tether_begin_saga(new_saga, saga_name, saga_params, saga_owner, lease_secs,
        saga_chain, first_step, first_kind, first_data);
    insert into operation (id, kind, linker_id, subscription, resource_id, saga_id, status,
        start_time)
    values (op, op_kind, linker_uuid, op_subscription, op_resource_id, new_saga, op_status,
        op_start);
    if audit_row.id is not null then
        insert into audit select (audit_row).* on conflict (id) do nothing;
    end if;
    outcome := 'created';
end
$$;
