-- Each linker keeps the checked spec it was accepted with (so it is never checked again) and
-- what its last successful operation applied to the backend. `linker_item` indexes the applied
-- items by key, so a linker never removes what another linker still holds.

alter table linker add column spec text;
alter table linker add column previous_spec text;
alter table linker add column applied text;

create table linker_item (
    linker_id blob not null references linker (id) on delete cascade,
    item_key text not null,
    created integer not null,
    primary key (linker_id, item_key)
);
create index linker_item_by_key on linker_item (item_key);
