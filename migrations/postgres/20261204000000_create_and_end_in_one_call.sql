-- The two commits of a create that still took several round trips, each as one call: the
-- PUT's (`tether_begin_create`, crates/store/src/postgres/linker.rs, `begin_create`) and a
-- saga's last (`tether_end_saga`, crates/store/src/postgres/saga.rs, `finish`). Each runs as
-- one statement, so it commits on its own: no `BEGIN`/`COMMIT` round trips either.

-- Stores a new linker with its operation and saga, under the lock of the saga's chain (the
-- source: it serializes every writer of the source's linkers, so the checks below still hold
-- when the writes commit). Writes nothing, and says why, when
--   'exists':   the source has a linker of that name (checked first: a retried create must
--               learn that its linker exists, not that "another" linker holds its keys);
--   'conflict': other linkers of the source hold (or may write again) one of `wanted_keys`
--               (the new linker's keys, ASCII-lower-cased); `holders` lists them as
--               [name, keys, previous_keys] for the caller's message.
-- Otherwise 'created', and `queued` says whether the saga waits behind its chain's tail; the
-- request's audit record (`audit_row`, when given) is stored with them.
create function tether_begin_create(
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
    -- `= any(array(…))`: an index lookup by id (see `other_keys` in linker.rs).
    select jsonb_agg(jsonb_build_array(l.name, l.keys, l.previous_keys)) into holders
    from linker l
    where l.id = any(array(select k.linker_id from linker_key k
                           where k.scope_key = linker_scope_key and k.key = any(wanted_keys)));
    if holders is not null then
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

-- Ends a saga if `lease_owner`/`lease_generation` still hold it (else returns null, writing
-- nothing): the epoch fence, the saga's end state, its last log entries, then its operation's
-- completion. Which completion is decided in Rust for every operation kind (`completions`:
-- {kind: {status, error?, result?, effect, state?, applied?, keys?, created?}}, see
-- crates/store/src/rows.rs, `Completion`, shared with SQLite) and picked here by the
-- operation's kind. Returns whether another unfinished saga shares the chain.
create function tether_end_saga(
    saga_uuid uuid, lease_owner text, lease_generation bigint, end_state text,
    end_error jsonb, commit_epoch bigint, events jsonb, completions jsonb
) returns boolean
language plpgsql volatile as $$
declare
    saga_chain text;
    op record;
    done jsonb;
begin
    perform tether_fence(commit_epoch);
    update saga set state = end_state, error = coalesce(end_error, error), updated_at = now(),
        epoch = commit_epoch
    where id = saga_uuid and owner = lease_owner and generation = lease_generation
      and state in ('running', 'unwinding', 'stuck')
    returning chain into saga_chain;
    if not found then
        return null;
    end if;
    insert into saga_event (saga_id, step, kind, data)
    select saga_uuid, x.step, x.kind, x.data
    from jsonb_to_recordset(events) as x(step text, kind text, data jsonb)
    on conflict do nothing;
    select o.id, o.kind, o.linker_id into op from operation o where o.saga_id = saga_uuid;
    if found then
        done := completions -> op.kind;
        if done is null then
            raise exception 'no completion for a % operation', op.kind using errcode = 'TF002';
        end if;
        perform tether_complete_operation(op.id, done ->> 'status', done -> 'error',
            done -> 'result', op.linker_id, done ->> 'effect', done ->> 'state',
            done -> 'applied',
            array(select jsonb_array_elements_text(done -> 'keys')),
            array(select x::boolean from jsonb_array_elements(done -> 'created') as x));
    end if;
    return exists (select 1 from saga b where b.chain = saga_chain and b.id <> saga_uuid
                   and b.state in ('running', 'unwinding', 'stuck'));
end
$$;
