-- Sagas that touch the same source run one at a time, in order: `chain` names the source and
-- `blocked_by` the saga a new one waits for. A linker can have one operation queued behind
-- the running one (a delete that cancels a create or an update). Each linker records the
-- configuration keys it writes, so two linkers on one source never claim the same key.

alter table saga add column chain text;
alter table saga add column blocked_by blob;
create index saga_unfinished_by_chain on saga (chain, created_at)
    where state in ('running', 'unwinding', 'stuck');

alter table linker add column next_operation_id blob;
alter table linker add column keys text not null default '[]';
alter table linker add column previous_keys text;

-- Housekeeping removes finished operations and sagas by age.
create index operation_finished on operation (end_time) where end_time is not null;
create index saga_finished on saga (updated_at) where state in ('succeeded', 'failed', 'canceled');
