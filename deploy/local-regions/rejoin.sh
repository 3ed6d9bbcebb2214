#!/usr/bin/env bash
# rejoin.sh REGION: makes a former primary (stopped, after a failover or a switchover) a
# streaming standby of the other region's new primary (docs/failover.md, "Failback"): a
# checkpoint on the new primary, pg_rewind of the old data directory onto it (undoing any
# WAL the old primary wrote that the new one never received), the old region's own settings
# and a primary_conninfo pointing at the new primary, start, wait until it streams, start
# the region's tether replicas again if they are gone, and lift the region's step-down
# request (its replicas stay passive: a database in recovery is not eligible to lead).
# Then `switchover.sh <new> REGION` moves the pair back.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh
source "$STATE/env"
log() { echo "[rejoin] $(date -u +%T.%3N) $*"; }
psql_at() { "$PG_BIN/psql" -h "$1" -p "$PG_PORT" -U postgres -Atqc "$2"; }
declare -A DB=([a]=$A_ADDR [b]=$B_ADDR)
declare -A REPLICAS=([a]="${A_REPLICAS[*]}" [b]="${B_REPLICAS[*]}")
OLD=${1:-}
case "$OLD" in a) NEW=b ;; b) NEW=a ;; *) echo "usage: rejoin.sh a|b" >&2; exit 2 ;; esac
DATA="$STATE/pg-$OLD"

if as_pg "$PG_BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    echo "postgres $OLD is running: stop it first (it must not take writes)" >&2
    exit 1
fi
[ "$(psql_at "${DB[$NEW]}" "select pg_is_in_recovery()")" = f ] || { echo "postgres $NEW is not a primary" >&2; exit 1; }
psql_at "${DB[$NEW]}" "checkpoint" >/dev/null
# pg_rewind wants a target shut down cleanly: finish crash recovery first if it crashed.
if ! "$PG_BIN/pg_controldata" "$DATA" | grep -q "^Database cluster state: *shut down"; then
    as_pg "$PG_BIN/postgres" --single -D "$DATA" -c listen_addresses= postgres </dev/null >/dev/null 2>&1 || true
fi
as_pg "$PG_BIN/pg_rewind" --target-pgdata="$DATA" \
    --source-server="host=${DB[$NEW]} port=$PG_PORT user=postgres dbname=postgres" >&2
log "postgres $OLD rewound onto $NEW"
# pg_rewind copied the new primary's configuration: put the old region's own back on top.
cat >>"$DATA/postgresql.conf" <<CONF
# --- tether local-regions: region $OLD, standby of $NEW (rejoin.sh) ---
listen_addresses = '${DB[$OLD]}'
unix_socket_directories = '$STATE/sock-$OLD'
cluster_name = 'tether_$OLD'
hot_standby = on
CONF
cat >>"$DATA/postgresql.auto.conf" <<CONF
primary_conninfo = 'host=${DB[$NEW]} port=$PG_PORT user=postgres application_name=tether_$OLD'
synchronous_standby_names = ''
CONF
as_pg touch "$DATA/standby.signal"
as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA.log" -w -t 60 start >/dev/null
streams() {
    [ "$(psql_at "${DB[$NEW]}" "select count(*) from pg_stat_replication where application_name = 'tether_$OLD' and state = 'streaming'")" = 1 ]
}
poll 60 "postgres $OLD to stream from $NEW" streams
log "postgres $OLD streams from $NEW"
for addr in ${REPLICAS[$OLD]}; do
    launch_replica "$addr" && log "tether replica $addr started"
done
for addr in ${REPLICAS[$OLD]}; do
    poll 60 "replica $addr to answer" curl -sf -o /dev/null "http://$addr:$TETHER_PORT/readyz?role=passive"
done
etcd_ctl del "/tether/pairs/$PAIR/step-down/$OLD" >/dev/null
log "step-down of $OLD lifted; switch back with: switchover.sh $NEW $OLD"
