-- Region fencing and readiness (see the Postgres migration of the same name).

create table saga_fence (
    id integer primary key check (id = 1),
    epoch integer not null
);
insert into saga_fence (id, epoch) values (1, 0);

alter table saga add column epoch integer not null default 0;

create table replica_heartbeat (
    instance text primary key,
    beat_ms integer not null
);
