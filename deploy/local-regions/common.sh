# Shared settings of up.sh, check.sh and down.sh (sourced, not run).
#
# Everything listens on loopback addresses only:
#   region A  127.0.0.10  Postgres primary, etcd member "a"
#             127.0.0.11, 127.0.0.12  tether serve replicas (active)
#   region B  127.0.0.20  Postgres streaming standby, etcd member "b"
#             127.0.0.21, 127.0.0.22  tether serve replicas (passive until promoted)
#   witness   127.0.0.30  etcd member "witness", the prober, the mock Azure backend
#             127.0.0.1   BIND (authoritative for tether.test.): named only listens on
#                         addresses configured on an interface, and lo has only 127.0.0.1
# Ports derive from PORT_BASE (default 25000) so that several copies can coexist.

STATE="${TETHER_REGIONS_DIR:-/tmp/tether-regions}"
PORT_BASE="${PORT_BASE:-25000}"
PG_PORT=$((PORT_BASE + 432))
ETCD_CLIENT_PORT=$((PORT_BASE + 379))
ETCD_PEER_PORT=$((PORT_BASE + 380))
DNS_PORT=$((PORT_BASE + 53))
TETHER_PORT=$((PORT_BASE + 80))
MOCK_PORT=$((PORT_BASE + 81))
PROBE_METRICS_PORT=$((PORT_BASE + 90))

A_ADDR=127.0.0.10
B_ADDR=127.0.0.20
WITNESS_ADDR=127.0.0.30
DNS_ADDR=127.0.0.1
A_REPLICAS=(127.0.0.11 127.0.0.12)
B_REPLICAS=(127.0.0.21 127.0.0.22)
ZONE=tether.test
SERVICE_NAME="api.$ZONE"
ETCD_MEMBERS=(a b witness)
declare -A ETCD_ADDR=([a]=$A_ADDR [b]=$B_ADDR [witness]=$WITNESS_ADDR)
PAIR=pair-1
MOCK_URL="http://$WITNESS_ADDR:$MOCK_PORT"
# The mock backend's demo tenant and client (tether_mock_azure::demo), which the replicas
# trust and make Owner; the prober's journey runs on two demo resources of its own.
DEMO_TENANT=aaaaaaaa-0000-4000-8000-000000000001
DEMO_CLIENT_ID=tether-dev-client
DEMO_CLIENT_SECRET=tether-dev-secret
DEMO_CLIENT_OBJECT_ID=08e5fa31-2314-8299-b025-dd969cba3c96
DEMO_RG=/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-demo/providers
PROBE_SOURCE_ID="$DEMO_RG/Microsoft.Web/sites/demo-api"
PROBE_TARGET_ID="$DEMO_RG/Microsoft.DBforPostgreSQL/flexibleServers/demo-pg/databases/inventory"
# Failover timings (docs/failover.md); the defaults of DESIGN §5 unless overridden.
LEASE_TTL_SECS="${LEASE_TTL_SECS:-10}"
PROBE_INTERVAL_SECS="${PROBE_INTERVAL_SECS:-5}"
PROBE_TIMEOUT_MS="${PROBE_TIMEOUT_MS:-2000}"
PROBE_FAILURES="${PROBE_FAILURES:-3}"
PROBE_MIN_DOWN_WINDOW_SECS="${PROBE_MIN_DOWN_WINDOW_SECS:-8}"
RECORD_TTL_SECS="${RECORD_TTL_SECS:-5}"
ETCD_ENDPOINTS="http://$A_ADDR:$ETCD_CLIENT_PORT,http://$B_ADDR:$ETCD_CLIENT_PORT,http://$WITNESS_ADDR:$ETCD_CLIENT_PORT"

# The marker that makes $STATE ours (down.sh removes only a directory that has it).
MARKER="$STATE/.tether-regions"

pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}
PG_BIN="$(pg_bin)"

# Runs a PostgreSQL program as the postgres user when we are root (Postgres refuses root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

named_bin() {
    for candidate in /usr/sbin/named /usr/bin/named /sbin/named; do
        [ -x "$candidate" ] && { echo "$candidate"; return; }
    done
    echo "named not found: apt-get install bind9" >&2
    return 1
}

# poll SECONDS DESCRIPTION COMMAND...: retries COMMAND every 0.2 s until it succeeds, or
# fails with DESCRIPTION after SECONDS.
poll() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "timed out after ${limit}s waiting for $what" >&2
            return 1
        fi
        sleep 0.2
    done
}

# alive PIDFILE: whether the process the file names is running (a zombie or a process on
# its way out is not).
alive() {
    [ -s "$1" ] || return 1
    local pid state
    pid=$(head -n1 "$1")
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# etcd_list [ENDPOINTS]: comma-separated endpoints (default $ETCD_ENDPOINTS) as a TOML
# array's items.
etcd_list() {
    local out="" e
    IFS=, read -ra eps <<<"${1:-$ETCD_ENDPOINTS}"
    for e in "${eps[@]}"; do out+="${out:+, }\"$e\""; done
    echo "$out"
}

# The tether binary: $TETHER_BIN, or the debug build with the `regions` feature (built when
# missing).
tether_bin() {
    if [ -n "${TETHER_BIN:-}" ]; then echo "$TETHER_BIN"; return; fi
    local root target
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    target="${CARGO_TARGET_DIR:-$root/target}"
    if [ ! -x "$target/debug/tether" ]; then
        (cd "$root" && cargo build --features regions --bin tether >&2)
    fi
    echo "$target/debug/tether"
}

# launch_replica ADDR: starts the tether replica whose configuration up.sh wrote to
# $STATE/tether-ADDR.toml, unless it runs.
launch_replica() {
    local pidfile="$STATE/tether-$1.pid"
    alive "$pidfile" && return 1
    setsid "$TETHER_BIN" serve --config "$STATE/tether-$1.toml" \
        </dev/null >>"$STATE/tether-$1.log" 2>&1 &
    echo $! >"$pidfile"
}

etcd_ctl() {
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=2s --command-timeout=3s "$@"
}

dig_service() {
    dig +short +time=1 +tries=1 -p "$DNS_PORT" @"$DNS_ADDR" "$SERVICE_NAME" A
}
