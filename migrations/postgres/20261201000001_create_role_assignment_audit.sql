-- Who may do what (role assignments at ARM scopes) and what was done (the audit trail).

create table role_assignment (
    id uuid primary key,                -- the assignment's name (a GUID, unique across scopes)
    scope text not null,                -- the caller's casing; '/' for the root
    scope_key text not null,            -- lower-cased scope: compared and prefix-matched
    role_definition_id uuid not null,   -- the role's GUID
    principal_id text not null,         -- lower-cased when a GUID
    principal_type text not null,
    description text,
    created_by text,
    created_at timestamptz not null default now(),
    -- One principal holds one role once per scope (ARM's RoleAssignmentExists).
    unique (scope_key, role_definition_id, principal_id)
);

-- Authorization reads a principal's assignments; listing reads a scope's.
create index role_assignment_by_principal on role_assignment (principal_id);
create index role_assignment_by_scope on role_assignment (scope_key);

create table audit (
    id uuid primary key,
    time timestamptz not null,
    principal_id text,                  -- null when the request was not authenticated
    tenant_id text,
    app_id text,
    action text not null,
    scope text,
    scope_key text,                     -- lower-cased scope, for filtering by scope
    target text,
    operation_id uuid,
    correlation_id text,
    request_id text,
    outcome text not null,              -- accepted | refused | failed
    status integer not null,
    error_code text
);

-- Pages go newest first by (time, id); retention deletes by time.
create index audit_by_time on audit (time desc, id desc);
create index audit_by_principal on audit (principal_id, time desc, id desc);
