-- The epoch fence of saga commits in one call, without a row lock (see docs/failover.md).
-- tether_fence(e) raises saga_fence to e if e is newer, and fails with SQLSTATE TF001 if a
-- newer epoch is stored. It holds advisory lock (0x74657468, 1) until the caller's commit:
-- shared when e is not newer (the common path), exclusive while raising. A raise therefore
-- waits for every commit that passed the check under the old epoch, and every check after
-- it waits for the raise to commit; the function is volatile, so its reads after taking the
-- lock see what committed before (READ COMMITTED). The two-key advisory lock space does not
-- overlap the one-key space of the chain locks.
create function tether_fence(commit_epoch bigint) returns boolean
language plpgsql volatile as $$
declare
    fenced bigint;
begin
    select epoch into fenced from saga_fence where id = 1;
    if fenced < commit_epoch then
        perform pg_advisory_xact_lock(1952805992, 1);
        update saga_fence set epoch = commit_epoch where id = 1 and epoch < commit_epoch;
    else
        perform pg_advisory_xact_lock_shared(1952805992, 1);
    end if;
    select epoch into fenced from saga_fence where id = 1;
    if fenced > commit_epoch then
        raise exception 'a newer leadership epoch (%) has committed', fenced
            using errcode = 'TF001';
    end if;
    return true;
end
$$;
