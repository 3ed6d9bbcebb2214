-- The foreign keys of a saga's log entries and operation, and of a linker's items and keys,
-- give way to deletes made by triggers on the parent tables.
--
-- Why: a foreign key is checked on every child row written: a query of the parent row,
-- which it locks (FOR KEY SHARE), after the statement. A create writes 17 such rows (12 log
-- entries and its operation under its saga; 3 items and a key under its linker), all in the
-- transaction that writes the parent. A profile of the create benchmark put 9 % of
-- Postgres's CPU in after-statement triggers. Every child row is written with its parent: a
-- saga's first entry and its operation in the transaction that inserts the saga
-- (`tether_begin_create`, `tether_begin_saga`, crates/store/src/postgres/linker.rs), later
-- entries in the statement whose conditional update of their (unfinished) saga matched
-- (saga.rs `record`, `tether_end_saga`), a linker's items and keys in the statement that
-- writes the linker (`tether_complete_operation`, `tether_index_linker_keys`). The checks
-- could not fail; what the foreign keys still did is remove the children with the parent,
-- and the triggers below do that.
alter table saga_event drop constraint saga_event_saga_id_fkey;
alter table operation drop constraint operation_saga_id_fkey;
alter table linker_item drop constraint linker_item_linker_id_fkey;
alter table linker_key drop constraint linker_key_linker_id_fkey;

create function tether_forget_saga() returns trigger
language plpgsql as $$
begin
    delete from saga_event where saga_id = old.id;
    delete from operation where saga_id = old.id;
    return null;
end
$$;

create trigger saga_children_on_delete after delete on saga
    for each row execute function tether_forget_saga();

create function tether_forget_linker() returns trigger
language plpgsql as $$
begin
    delete from linker_item where linker_id = old.id;
    delete from linker_key where linker_id = old.id;
    return null;
end
$$;

create trigger linker_children_on_delete after delete on linker
    for each row execute function tether_forget_linker();
