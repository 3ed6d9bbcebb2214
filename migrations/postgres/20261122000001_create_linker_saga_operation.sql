-- Linkers, sagas (with their intent log) and long-running operations.

create table linker (
    id uuid primary key,
    -- Identity: lower-cased source resource id + lower-cased name (ARM ids are case-insensitive).
    scope_key text not null,
    name_key text not null,
    -- The caller's latest casing.
    scope text not null,
    name text not null,
    properties jsonb not null,          -- LinkerProperties without secrets
    secret bytea,                       -- the auth secret, AEAD-sealed
    key_naming jsonb not null,
    provisioning_state text not null,
    system_data jsonb not null,
    generation bigint not null,         -- optimistic concurrency: compared in every update
    operation_id uuid,                  -- the operation running on it, if any
    -- What an update replaced, restored if the update fails.
    previous_properties jsonb,
    previous_secret bytea,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (scope_key, name_key)
);

create table saga (
    id uuid primary key,
    name text not null,
    params jsonb not null,
    state text not null,
    owner text not null,
    generation bigint not null,
    lease_expires_at timestamptz not null,
    cancel_requested boolean not null default false,
    error jsonb,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

-- Adoption scans unfinished sagas by lease expiry.
create index saga_unfinished_by_lease on saga (lease_expires_at)
    where state in ('running', 'unwinding', 'stuck');

create table saga_event (
    saga_id uuid not null references saga (id) on delete cascade,
    step text not null,
    kind text not null,
    data jsonb,
    seq bigint generated always as identity,
    created_at timestamptz not null default now(),
    primary key (saga_id, step, kind)
);

create table operation (
    id uuid primary key,
    kind text not null,
    linker_id uuid not null,            -- no foreign key: a delete outlives its linker
    subscription text not null,         -- lower-cased subscription of the linker's scope
    resource_id text not null,
    saga_id uuid not null references saga (id) on delete cascade,
    status text not null,
    error jsonb,
    result jsonb,
    start_time timestamptz not null,
    end_time timestamptz
);

create index operation_by_saga on operation (saga_id);
