#!/usr/bin/env bash
# The failover drill: brings the topology up afresh (down.sh, then up.sh; SYNC=1 for
# synchronous replication), waits until region A leads, then runs `tether drill`: client
# load through the service's DNS name (resolved at BIND), region A killed (kill-region.sh) at
# a random moment, recovery awaited, and a report whose last line is exactly
#   RTO <seconds> s, lost <n> acknowledged, max writable regions <k>
# Extra arguments go to `tether drill` (--clients, --kill-after-min-secs, …). The topology
# is left as the drill left it (B active) for inspection; down.sh removes it. Timings are
# those of common.sh (LEASE_TTL_SECS, PROBE_INTERVAL_SECS, … override them).
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

bash ./down.sh >/dev/null
bash ./up.sh >&2
source "$STATE/env"

leader() { etcd_ctl get --print-value-only "/tether/pairs/$PAIR/leader"; }
a_leads() { [ "$(leader)" = a ]; }
poll 60 "region a to lead" a_leads
a_ready() {
    local addr
    for addr in "${A_REPLICAS[@]}"; do
        curl -sf -o /dev/null "http://$addr:$TETHER_PORT/readyz?role=active" && return 0
    done
    return 1
}
poll 60 "a replica of region a to be ready" a_ready

urls() { local out="" a; for a in "$@"; do out+="${out:+,}http://$a:$TETHER_PORT"; done; echo "$out"; }
echo "[drill] mode $(if [ "${SYNC:-0}" = 1 ]; then echo sync; else echo async; fi), lease ttl ${LEASE_TTL_SECS}s, probe every ${PROBE_INTERVAL_SECS}s (timeout ${PROBE_TIMEOUT_MS}ms, ${PROBE_FAILURES} failures), record ttl ${RECORD_TTL_SECS}s"
DRILL_CLIENT_SECRET="$DEMO_CLIENT_SECRET" "$TETHER_BIN" drill \
    --token-url "$MOCK_URL/$DEMO_TENANT/oauth2/v2.0/token" \
    --client-id "$DEMO_CLIENT_ID" \
    --source-id "$DEMO_RG/Microsoft.Web/sites/demo-web" \
    --target-id "$DEMO_RG/Microsoft.DBforPostgreSQL/flexibleServers/demo-pg/databases/orders" \
    --region "a=$(urls "${A_REPLICAS[@]}")" \
    --region "b=$(urls "${B_REPLICAS[@]}")" \
    --dns-cache-secs "$RECORD_TTL_SECS" \
    --kill "bash $PWD/kill-region.sh" \
    "$@"
