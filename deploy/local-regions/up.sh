#!/usr/bin/env bash
# Brings the two-region topology up on loopback (see common.sh for the addresses):
# two Postgres clusters (A primary, B streaming standby; SYNC=1 for synchronous
# replication), three etcd members (A, B, witness) forming one cluster, and BIND with a TSIG
# key serving the zone tether.test. with api.tether.test pointing at region A's replicas.
# Idempotent: components already running are left alone, stopped ones are started again.
# State (data, logs, pid files, env) lives under $TETHER_REGIONS_DIR (default
# /tmp/tether-regions). Undo with down.sh.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

for tool in initdb pg_ctl pg_basebackup psql; do
    [ -x "$PG_BIN/$tool" ] || { echo "missing $PG_BIN/$tool (PostgreSQL server binaries)" >&2; exit 1; }
done
for tool in etcd etcdctl tsig-keygen dig; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install etcd-server etcd-client bind9 bind9-dnsutils" >&2; exit 1; }
done
NAMED="$(named_bin)"

if [ -e "$STATE" ] && [ ! -e "$MARKER" ]; then
    echo "$STATE exists and is not ours (no $MARKER): refusing to touch it" >&2
    exit 1
fi
mkdir -p "$STATE"
touch "$MARKER"
chmod 755 "$STATE"
[ "$(id -u)" = 0 ] && chown postgres: "$STATE"

log() { echo "[up] $*"; }

# --- Postgres -----------------------------------------------------------------------------

pg_running() { as_pg "$PG_BIN/pg_ctl" -D "$1" status >/dev/null 2>&1; }
pg_ready() { "$PG_BIN/pg_isready" -q -h "$1" -p "$PG_PORT"; }

pg_start() { # DATADIR ADDR
    if pg_running "$1"; then
        log "postgres on $2:$PG_PORT already running"
    else
        as_pg "$PG_BIN/pg_ctl" -D "$1" -l "$1.log" -w -t 60 start >/dev/null
        log "postgres on $2:$PG_PORT started"
    fi
    poll 60 "postgres on $2" pg_ready "$2"
}

PG_A="$STATE/pg-a"
PG_B="$STATE/pg-b"
# Unix sockets outside the data directories (pg_basebackup would copy A's lock file).
as_pg mkdir -p "$STATE/sock-a" "$STATE/sock-b"
if [ ! -s "$PG_A/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$PG_A" -U postgres --auth=trust -E UTF8 >/dev/null
    cat >>"$PG_A/postgresql.conf" <<CONF
# --- tether local-regions: region A, primary ---
listen_addresses = '$A_ADDR'
port = $PG_PORT
unix_socket_directories = '$STATE/sock-a'
cluster_name = 'tether_a'
wal_level = replica
# pg_rewind (failback: the old primary rewound into a standby of the new one) needs it.
wal_log_hints = on
max_wal_senders = 8
wal_keep_size = '256MB'
CONF
    cat >>"$PG_A/pg_hba.conf" <<HBA
# tether local-regions: everything on loopback, trust (a local drill, never production).
host all all 127.0.0.0/8 trust
host replication all 127.0.0.0/8 trust
HBA
fi
pg_start "$PG_A" "$A_ADDR"
if ! "$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -Atqc "select 1 from pg_database where datname = 'tether'" | grep -q 1; then
    "$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -qc "create database tether" >/dev/null
fi

if [ ! -s "$PG_B/PG_VERSION" ]; then
    as_pg "$PG_BIN/pg_basebackup" -h "$A_ADDR" -p "$PG_PORT" -U postgres -D "$PG_B" -R -X stream -c fast
    cat >>"$PG_B/postgresql.conf" <<CONF
# --- tether local-regions: region B, streaming standby of A ---
listen_addresses = '$B_ADDR'
unix_socket_directories = '$STATE/sock-b'
cluster_name = 'tether_b'
hot_standby = on
CONF
fi
pg_start "$PG_B" "$B_ADDR"
standby_streams() {
    "$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -Atqc \
        "select 1 from pg_stat_replication where application_name = 'tether_b' and state = 'streaming'" | grep -q 1
}
poll 60 "region B to stream from region A" standby_streams
if [ "${SYNC:-0}" = 1 ]; then
    # Commits wait until region B has flushed them: RPO 0 for acknowledged writes. Set only
    # now that B streams (earlier, A's own set-up commits would wait for a standby that is
    # not there yet).
    "$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -qc \
        "alter system set synchronous_standby_names = 'tether_b'" -c "select pg_reload_conf()" >/dev/null
    is_sync() {
        "$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -Atqc \
            "select sync_state from pg_stat_replication where application_name = 'tether_b'" | grep -q '^sync$'
    }
    poll 30 "region B to become a synchronous standby" is_sync
fi
log "region B streams from region A ($("$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -Atqc "select sync_state from pg_stat_replication where application_name = 'tether_b'"))"

# --- etcd: one cluster, a member per region plus a witness ----------------------------------

initial_cluster=""
for m in "${ETCD_MEMBERS[@]}"; do
    initial_cluster+="${initial_cluster:+,}$m=http://${ETCD_ADDR[$m]}:$ETCD_PEER_PORT"
done
for m in "${ETCD_MEMBERS[@]}"; do
    addr=${ETCD_ADDR[$m]}
    pidfile="$STATE/etcd-$m.pid"
    if alive "$pidfile"; then
        log "etcd member $m already running"
        continue
    fi
    cluster_state=new
    [ -d "$STATE/etcd-$m/member" ] && cluster_state=existing
    setsid etcd --name "$m" --data-dir "$STATE/etcd-$m" \
        --listen-client-urls "http://$addr:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://$addr:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://$addr:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://$addr:$ETCD_PEER_PORT" \
        --initial-cluster "$initial_cluster" \
        --initial-cluster-token tether-regions \
        --initial-cluster-state "$cluster_state" \
        --log-level warn \
        </dev/null >>"$STATE/etcd-$m.log" 2>&1 &
    echo $! >"$pidfile"
    log "etcd member $m started on $addr:$ETCD_CLIENT_PORT"
done
poll 60 "the etcd cluster to be healthy" etcd_ctl endpoint health
members=$(etcd_ctl member list | wc -l)
[ "$members" = 3 ] || { echo "etcd has $members members, expected 3" >&2; exit 1; }
log "etcd cluster healthy (3 members)"

# --- BIND: authoritative for tether.test., updates signed with a TSIG key ------------------

BIND="$STATE/bind"
mkdir -p "$BIND"
if [ ! -s "$BIND/tsig.key" ]; then
    tsig-keygen -a hmac-sha256 tether-key >"$BIND/tsig.key"
    chmod 600 "$BIND/tsig.key"
fi
if [ ! -s "$BIND/zone.db" ]; then
    {
        echo "\$ORIGIN $ZONE."
        echo "\$TTL 5"
        echo "@ IN SOA ns.$ZONE. admin.$ZONE. 1 3600 600 86400 5"
        echo "@ IN NS ns.$ZONE."
        echo "ns IN A $WITNESS_ADDR"
        for r in "${A_REPLICAS[@]}"; do echo "api IN A $r"; done
    } >"$BIND/zone.db"
fi
cat >"$BIND/named.conf" <<CONF
options {
    directory "$BIND";
    pid-file "$BIND/named.pid";
    session-keyfile "$BIND/session.key";
    managed-keys-directory "$BIND";
    listen-on port $DNS_PORT { $DNS_ADDR; };
    listen-on-v6 { none; };
    recursion no;
    dnssec-validation no;
    notify no;
};
controls { };
include "$BIND/tsig.key";
zone "$ZONE" {
    type primary;
    file "$BIND/zone.db";
    allow-update { key "tether-key"; };
};
CONF
if alive "$BIND/named.pid"; then
    log "named already running"
else
    "$NAMED" -c "$BIND/named.conf" -L "$BIND/named.log"
    log "named started on $DNS_ADDR:$DNS_PORT"
fi
poll 30 "named to answer for $SERVICE_NAME" dig_service
log "$SERVICE_NAME -> $(dig_service | sort | tr '\n' ' ')"

# --- The environment the tether processes will use ------------------------------------------

secret=$(sed -n 's/.*secret "\(.*\)";/\1/p' "$BIND/tsig.key")
cat >"$STATE/env" <<ENV
# Written by deploy/local-regions/up.sh. Source it to reach the topology.
export TETHER_REGIONS_DIR=$STATE
export REGION_A_DATABASE_URL=postgres://postgres@$A_ADDR:$PG_PORT/tether
export REGION_B_DATABASE_URL=postgres://postgres@$B_ADDR:$PG_PORT/tether
export ETCD_ENDPOINTS=$ETCD_ENDPOINTS
export DNS_SERVER=$DNS_ADDR:$DNS_PORT
export DNS_ZONE=$ZONE.
export DNS_SERVICE_NAME=$SERVICE_NAME.
export DNS_TSIG_KEY_NAME=tether-key
export DNS_TSIG_SECRET=$secret
ENV
chmod 600 "$STATE/env"

# --- The mock Azure backend, four tether serve replicas and the prober ---------------------
#
# WITH_TETHER=0 stops here (the infrastructure alone). Otherwise the tether binary is
# $TETHER_BIN, or built with the `regions` feature (cargo build --features regions).
# The partition test routes region A's links through proxies it can cut: A's replicas reach
# etcd at $A_ETCD_ENDPOINTS, the prober reaches A's replicas at $PROBE_ACTIVE_URLS and A's
# database at $PROBE_PRIMARY_DATABASE_URL (all default to the direct addresses).

if [ "${WITH_TETHER:-1}" = 1 ]; then
    TETHER_BIN="$(tether_bin)"
    A_ETCD_ENDPOINTS="${A_ETCD_ENDPOINTS:-$ETCD_ENDPOINTS}"
    direct_a=""
    for addr in "${A_REPLICAS[@]}"; do direct_a+="${direct_a:+,}http://$addr:$TETHER_PORT"; done
    PROBE_ACTIVE_URLS="${PROBE_ACTIVE_URLS:-$direct_a}"
    PROBE_PRIMARY_DATABASE_URL="${PROBE_PRIMARY_DATABASE_URL:-postgres://postgres@$A_ADDR:$PG_PORT/tether}"
    [ -s "$STATE/secret.key" ] || { head -c 32 /dev/urandom | base64 >"$STATE/secret.key"; chmod 600 "$STATE/secret.key"; }

    if alive "$STATE/mock-azure.pid"; then
        log "mock azure already running"
    else
        setsid "$TETHER_BIN" mock-azure --listen "$WITNESS_ADDR:$MOCK_PORT" --state-file "$STATE/mock-azure.json" \
            </dev/null >>"$STATE/mock-azure.log" 2>&1 &
        echo $! >"$STATE/mock-azure.pid"
        log "mock azure started on $MOCK_URL"
    fi
    poll 60 "the mock backend" curl -sf -o /dev/null "$MOCK_URL/$DEMO_TENANT/v2.0/.well-known/openid-configuration"

    # replica_config REGION ADDR DATABASE_URL: the configuration of one replica.
    replica_config() {
        cat <<CONF
# Written by deploy/local-regions/up.sh: replica $2 of region $1.
[server]
listen = "$2:$TETHER_PORT"
public_url = "http://$SERVICE_NAME:$TETHER_PORT"
location = "westus"
retry_after_secs = 1
instance_name = "tether-$1-$2"
shutdown_grace_secs = 3

[database]
url = "$3"
query_timeout_secs = 5
acquire_timeout_secs = 2

[auth]
audiences = ["https://management.azure.com", "https://management.azure.com/"]
allow_http_issuers = true
bootstrap_owners = ["$DEMO_CLIENT_OBJECT_ID"]
[[auth.issuers]]
issuer = "$MOCK_URL/$DEMO_TENANT/v2.0"
tenant_id = "$DEMO_TENANT"

[secrets]
key = "$(cat "$STATE/secret.key")"

[azure]
arm_endpoint = "$MOCK_URL"
authority = "$MOCK_URL"
tenant_id = "$DEMO_TENANT"
client_id = "$DEMO_CLIENT_ID"
client_secret = "$DEMO_CLIENT_SECRET"
max_retries = 2
request_timeout_secs = 10
sql_data_plane = "$MOCK_URL/dataplane/sql"

[throttle]
per_principal_per_minute = 600000
principal_burst = 100000

[sagas]
lease_ttl_secs = 3
adopt_interval_secs = 0.5

[region]
name = "$1"
pair = "$PAIR"
etcd_endpoints = [$(etcd_list "$4")]
lease_ttl_secs = $LEASE_TTL_SECS
public_endpoint = "http://$SERVICE_NAME:$TETHER_PORT"

[log]
format = "json"
CONF
    }

    start_replica() { # REGION ADDR DATABASE_URL ETCD_ENDPOINTS
        if alive "$STATE/tether-$2.pid"; then
            log "tether replica $2 (region $1) already running"
            return
        fi
        replica_config "$@" >"$STATE/tether-$2.toml"
        chmod 600 "$STATE/tether-$2.toml"
        launch_replica "$2"
        log "tether replica $2 (region $1) started"
    }
    for addr in "${A_REPLICAS[@]}"; do start_replica a "$addr" "postgres://postgres@$A_ADDR:$PG_PORT/tether" "$A_ETCD_ENDPOINTS"; done
    for addr in "${A_REPLICAS[@]}"; do poll 60 "replica $addr to be ready" curl -sf -o /dev/null "http://$addr:$TETHER_PORT/readyz"; done
    for addr in "${B_REPLICAS[@]}"; do start_replica b "$addr" "postgres://postgres@$B_ADDR:$PG_PORT/tether" "$ETCD_ENDPOINTS"; done
    for addr in "${B_REPLICAS[@]}"; do poll 60 "replica $addr to answer" curl -sf -o /dev/null "http://$addr:$TETHER_PORT/healthz"; done

    replicas_a=""
    for url in ${PROBE_ACTIVE_URLS//,/ }; do replicas_a+="${replicas_a:+, }\"$url\""; done
    standby_addrs=""
    for addr in "${B_REPLICAS[@]}"; do standby_addrs+="${standby_addrs:+, }\"$addr\""; done
    cat >"$STATE/probe.toml" <<CONF
# Written by deploy/local-regions/up.sh: the prober of $PAIR, at the witness site.
[probe]
pair = "$PAIR"
active = "a"
standby = "b"
standby_addrs = [$standby_addrs]
etcd_endpoints = [$(etcd_list)]
primary_database_url = "$PROBE_PRIMARY_DATABASE_URL"
standby_database_url = "postgres://postgres@$B_ADDR:$PG_PORT/tether"
standby_application_name = "tether_b"
service_name = "$SERVICE_NAME."
interval_secs = $PROBE_INTERVAL_SECS
timeout_ms = $PROBE_TIMEOUT_MS
failure_threshold = $PROBE_FAILURES
min_down_window_secs = $PROBE_MIN_DOWN_WINDOW_SECS
lease_ttl_secs = $LEASE_TTL_SECS
step_down_timeout_secs = $((3 * LEASE_TTL_SECS))
record_ttl_secs = $RECORD_TTL_SECS

[probe.dns]
server = "$DNS_ADDR:$DNS_PORT"
zone = "$ZONE."
tsig = { name = "tether-key", secret = "$secret" }

[probe.journey]
replicas = [$replicas_a]
token_url = "$MOCK_URL/$DEMO_TENANT/oauth2/v2.0/token"
client_id = "$DEMO_CLIENT_ID"
client_secret = "$DEMO_CLIENT_SECRET"
source_id = "$PROBE_SOURCE_ID"
target_id = "$PROBE_TARGET_ID"

[metrics]
listen = "$WITNESS_ADDR:$PROBE_METRICS_PORT"

[log]
format = "json"
CONF
    chmod 600 "$STATE/probe.toml"
    if alive "$STATE/probe.pid"; then
        log "prober already running"
    else
        setsid "$TETHER_BIN" probe --config "$STATE/probe.toml" </dev/null >>"$STATE/probe.log" 2>&1 &
        echo $! >"$STATE/probe.pid"
        log "prober started (metrics on http://$WITNESS_ADDR:$PROBE_METRICS_PORT/metrics)"
    fi
    poll 30 "the prober's metrics" curl -sf -o /dev/null "http://$WITNESS_ADDR:$PROBE_METRICS_PORT/metrics"
    cat >>"$STATE/env" <<ENV
export TETHER_BIN=$TETHER_BIN
export MOCK_URL=$MOCK_URL
export PROBE_METRICS_URL=http://$WITNESS_ADDR:$PROBE_METRICS_PORT/metrics
export SERVICE_PORT=$TETHER_PORT
ENV
fi

log "up: state in $STATE (source $STATE/env); check with check.sh, stop with down.sh"
