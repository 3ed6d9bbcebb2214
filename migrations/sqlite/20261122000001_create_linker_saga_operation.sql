-- Linkers, sagas (with their intent log) and long-running operations.
-- Times are RFC 3339 text in UTC; lease expiry is unix milliseconds for cheap comparisons.

create table linker (
    id blob primary key,
    scope_key text not null,
    name_key text not null,
    scope text not null,
    name text not null,
    properties text not null,
    secret blob,
    key_naming text not null,
    provisioning_state text not null,
    system_data text not null,
    generation integer not null,
    operation_id blob,
    previous_properties text,
    previous_secret blob,
    created_at text not null,
    updated_at text not null,
    unique (scope_key, name_key)
);

create table saga (
    id blob primary key,
    name text not null,
    params text not null,
    state text not null,
    owner text not null,
    generation integer not null,
    lease_expires_ms integer not null,
    cancel_requested integer not null default 0,
    error text,
    created_at text not null,
    updated_at text not null
);

create index saga_unfinished_by_lease on saga (lease_expires_ms)
    where state in ('running', 'unwinding', 'stuck');

create table saga_event (
    saga_id blob not null references saga (id) on delete cascade,
    step text not null,
    kind text not null,
    data text,
    created_at text not null,
    primary key (saga_id, step, kind)
);

create table operation (
    id blob primary key,
    kind text not null,
    linker_id blob not null,
    subscription text not null,
    resource_id text not null,
    saga_id blob not null references saga (id) on delete cascade,
    status text not null,
    error text,
    result text,
    start_time text not null,
    end_time text
);

create index operation_by_saga on operation (saga_id);
