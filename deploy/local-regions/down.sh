#!/usr/bin/env bash
# Stops everything up.sh started and removes its state directory, leaving nothing running.
# Idempotent: with nothing up it does nothing.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

log() { echo "[down] $*"; }

if [ ! -e "$MARKER" ]; then
    log "nothing to do ($STATE is not a local-regions directory)"
    exit 0
fi

# stop_pid PIDFILE NAME: SIGTERM, then SIGKILL if it is still there after 10 s.
stop_pid() {
    local pidfile=$1 name=$2 pid
    alive "$pidfile" || return 0
    pid=$(head -n1 "$pidfile")
    kill "$pid" 2>/dev/null || true
    if ! poll 10 "$name to stop" bash -c "! kill -0 $pid 2>/dev/null"; then
        kill -9 "$pid" 2>/dev/null || true
        poll 5 "$name to die" bash -c "! kill -0 $pid 2>/dev/null"
    fi
    log "$name stopped"
}

# The prober and the tether serve replicas first, then the mock backend.
for pidfile in "$STATE"/probe.pid "$STATE"/tether-*.pid "$STATE"/mock-azure.pid; do
    [ -e "$pidfile" ] && stop_pid "$pidfile" "$(basename "$pidfile" .pid)"
done

stop_pid "$STATE/bind/named.pid" named
for m in "${ETCD_MEMBERS[@]}"; do
    stop_pid "$STATE/etcd-$m.pid" "etcd member $m"
done

# Standby first, then the primary. Fast shutdown; immediate if that does not finish.
for dir in "$STATE/pg-b" "$STATE/pg-a"; do
    [ -s "$dir/postmaster.pid" ] || continue
    if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t 30 stop >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
    fi
    if [ -s "$dir/postmaster.pid" ] && kill -0 "$(head -n1 "$dir/postmaster.pid")" 2>/dev/null; then
        kill -9 "$(head -n1 "$dir/postmaster.pid")" 2>/dev/null || true
    fi
    log "postgres $(basename "$dir") stopped"
done

rm -rf "$STATE"
log "removed $STATE"
