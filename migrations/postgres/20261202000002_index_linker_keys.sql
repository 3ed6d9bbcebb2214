-- The configuration keys each linker holds (its keys and, while an update runs, the keys it
-- replaced), ASCII-lower-cased, by source: a create checks its keys for collisions with an
-- index lookup instead of reading every linker of the source (crates/store/src/postgres/
-- linker.rs, `other_keys`). A trigger keeps the table in step with `linker.keys` and
-- `linker.previous_keys` on every write, so no code path can forget it.
create table linker_key (
    scope_key text not null,
    key text not null,
    linker_id uuid not null references linker (id) on delete cascade,
    primary key (scope_key, key, linker_id)
);
create index linker_key_by_linker on linker_key (linker_id);

create function tether_index_linker_keys() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        delete from linker_key where linker_id = old.id;
    end if;
    insert into linker_key (scope_key, key, linker_id)
    select new.scope_key,
           translate(k, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), new.id
    from jsonb_array_elements_text(new.keys || coalesce(new.previous_keys, '[]'::jsonb)) as held(k)
    on conflict do nothing;
    return null;
end
$$;

create trigger linker_keys_on_insert after insert on linker
    for each row execute function tether_index_linker_keys();
create trigger linker_keys_on_update after update of keys, previous_keys, scope_key on linker
    for each row
    when (old.keys is distinct from new.keys
          or old.previous_keys is distinct from new.previous_keys
          or old.scope_key is distinct from new.scope_key)
    execute function tether_index_linker_keys();

insert into linker_key (scope_key, key, linker_id)
select l.scope_key, translate(k, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), l.id
from linker l, jsonb_array_elements_text(l.keys || coalesce(l.previous_keys, '[]'::jsonb)) as held(k)
on conflict do nothing;
