#!/usr/bin/env bash
# Kills region A the way a region dies: SIGKILL to its tether replicas and an immediate stop
# (SIGQUIT, no checkpoint, clients cut) of its Postgres. Its etcd member is left alone (the
# witness and B keep the quorum either way). Used by drill.sh.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

for addr in "${A_REPLICAS[@]}"; do
    pidfile="$STATE/tether-$addr.pid"
    alive "$pidfile" && kill -9 "$(head -n1 "$pidfile")" 2>/dev/null || true
done
as_pg "$PG_BIN/pg_ctl" -D "$STATE/pg-a" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
echo "[kill] region A: replicas ${A_REPLICAS[*]} and postgres $A_ADDR:$PG_PORT killed at $(date -u +%T.%3N)" >&2
