# Shared settings of up.sh, check.sh and down.sh (sourced, not run).
#
# Everything listens on loopback addresses only:
#   region A  127.0.0.10  Postgres primary, etcd member "a"
#             127.0.0.11, 127.0.0.12  tether serve replicas (once `tether serve` is region-aware)
#   region B  127.0.0.20  Postgres streaming standby, etcd member "b"
#             127.0.0.21, 127.0.0.22  tether serve replicas (passive until promoted)
#   witness   127.0.0.30  etcd member "witness", the prober
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

etcd_ctl() {
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" --dial-timeout=2s --command-timeout=3s "$@"
}

dig_service() {
    dig +short +time=1 +tries=1 -p "$DNS_PORT" @"$DNS_ADDR" "$SERVICE_NAME" A
}
