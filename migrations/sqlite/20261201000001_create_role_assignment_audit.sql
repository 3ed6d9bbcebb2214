-- Who may do what (role assignments at ARM scopes) and what was done (the audit trail).
-- Times are unix microseconds: they order correctly and compare exactly.

create table role_assignment (
    id blob primary key,
    scope text not null,
    scope_key text not null,
    role_definition_id blob not null,
    principal_id text not null,
    principal_type text not null,
    description text,
    created_by text,
    created_us integer not null,
    unique (scope_key, role_definition_id, principal_id)
);

create index role_assignment_by_principal on role_assignment (principal_id);
create index role_assignment_by_scope on role_assignment (scope_key);

create table audit (
    id blob primary key,
    time_us integer not null,
    principal_id text,
    tenant_id text,
    app_id text,
    action text not null,
    scope text,
    scope_key text,
    target text,
    operation_id blob,
    correlation_id text,
    request_id text,
    outcome text not null,
    status integer not null,
    error_code text
);

create index audit_by_time on audit (time_us desc, id desc);
create index audit_by_principal on audit (principal_id, time_us desc, id desc);
