-- Region fencing and readiness.
-- saga_fence: the largest leadership epoch that ever committed a saga step (one row); a saga
-- commit carrying an older epoch is refused. saga.epoch: the epoch of the saga's last commit.
-- replica_heartbeat: the row each replica's readiness check writes (a real write).

create table saga_fence (
    id int primary key check (id = 1),
    epoch bigint not null
);
insert into saga_fence (id, epoch) values (1, 0);

alter table saga add column epoch bigint not null default 0;

create table replica_heartbeat (
    instance text primary key,
    beat_at timestamptz not null
);
