#!/usr/bin/env bash
# switchover.sh [FROM TO] (default: a b): planned switchover with no data loss
# (docs/failover.md, "Switchover"): the prober stops, FROM steps down (its replicas turn
# passive), FROM's Postgres stops cleanly (a clean shutdown sends all its WAL to the
# connected standby), TO is checked to have received it all and is promoted, TO's replicas
# take the leadership, and DNS is switched (with the new epoch) by a TSIG-signed update.
# FROM stays down, barred by its step-down request, until rejoin.sh makes it TO's standby.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh
source "$STATE/env"
log() { echo "[switchover] $(date -u +%T.%3N) $*"; }
psql_at() { "$PG_BIN/psql" -h "$1" -p "$PG_PORT" -U postgres -Atqc "$2"; }
LEADER_KEY="/tether/pairs/$PAIR/leader"
FROM=${1:-a}
TO=${2:-b}
declare -A DB=([a]=$A_ADDR [b]=$B_ADDR)
declare -A REPLICAS=([a]="${A_REPLICAS[*]}" [b]="${B_REPLICAS[*]}")
[ -n "${DB[$FROM]:-}" ] && [ -n "${DB[$TO]:-}" ] && [ "$FROM" != "$TO" ] || { echo "usage: switchover.sh [a b | b a]" >&2; exit 2; }

if alive "$STATE/probe.pid"; then
    kill "$(head -n1 "$STATE/probe.pid")"
    poll 10 "the prober to stop" bash -c "! kill -0 $(head -n1 "$STATE/probe.pid") 2>/dev/null"
    log "prober stopped (it watches a fixed active region; restart it once the pair is back to its configuration)"
fi
[ "$(etcd_ctl get --print-value-only "$LEADER_KEY")" = "$FROM" ] || { echo "region $FROM does not lead" >&2; exit 1; }
to_answers() {
    local addr
    for addr in ${REPLICAS[$TO]}; do curl -sf -o /dev/null "http://$addr:$TETHER_PORT/healthz" && return 0; done
    return 1
}
to_answers || { echo "no replica of region $TO answers (rejoin.sh $TO starts them)" >&2; exit 1; }

etcd_ctl put "/tether/pairs/$PAIR/step-down/$FROM" operator >/dev/null
log "step-down of $FROM requested"
vacant() { [ -z "$(etcd_ctl get --print-value-only "$LEADER_KEY")" ]; }
poll $((3 * LEASE_TTL_SECS)) "region $FROM to release the leader key" vacant
# Every member of FROM has seen the deletion or is fenced within a TTL of its last
# keep-alive (the same wait as the prober's fence wait; a pause, not a synchronisation).
sleep $((LEASE_TTL_SECS + 1))
log "$FROM released the key and is fenced"

as_pg "$PG_BIN/pg_ctl" -D "$STATE/pg-$FROM" -m fast -w -t 60 stop >/dev/null
checkpoint=$("$PG_BIN/pg_controldata" "$STATE/pg-$FROM" | sed -n 's/^Latest checkpoint location: *//p')
log "postgres $FROM stopped cleanly (last checkpoint $checkpoint)"
received() {
    [ "$(psql_at "${DB[$TO]}" "select pg_last_wal_receive_lsn() >= '$checkpoint'::pg_lsn")" = t ]
}
poll 30 "region $TO to have received all of $FROM's wal" received
psql_at "${DB[$TO]}" "select pg_promote(true, 60)" >/dev/null
log "postgres $TO promoted"

to_leads() { [ "$(etcd_ctl get --print-value-only "$LEADER_KEY")" = "$TO" ]; }
poll 60 "region $TO to lead" to_leads
epoch=$(etcd_ctl get -w fields "$LEADER_KEY" | sed -n 's/^"CreateRevision" : //p')
log "$TO leads (epoch $epoch)"

{
    echo "server $DNS_ADDR $DNS_PORT"
    echo "zone $ZONE."
    echo "update delete $SERVICE_NAME. A"
    for addr in ${REPLICAS[$TO]}; do echo "update add $SERVICE_NAME. $RECORD_TTL_SECS A $addr"; done
    echo "update delete _tether-epoch.$SERVICE_NAME. TXT"
    echo "update add _tether-epoch.$SERVICE_NAME. $RECORD_TTL_SECS TXT \"tether-epoch=$epoch\""
    echo "send"
} | nsupdate -t 5 -y "hmac-sha256:$DNS_TSIG_KEY_NAME:$DNS_TSIG_SECRET"
log "dns: $SERVICE_NAME -> $(dig_service | sort | tr '\n' ' ')"
