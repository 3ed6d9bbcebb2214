#!/usr/bin/env bash
# Checks that every component up.sh starts answers; exits non-zero naming the first that
# does not. Prints one line per component.
set -euo pipefail
cd "$(dirname "$0")"
source ./common.sh

fail() { echo "[check] FAIL: $*" >&2; exit 1; }
[ -e "$MARKER" ] || fail "nothing is up ($STATE has no marker)"

role() { "$PG_BIN/psql" -h "$1" -p "$PG_PORT" -U postgres -Atqc "select case when pg_is_in_recovery() then 'standby' else 'primary' end"; }
[ "$(role "$A_ADDR")" = primary ] || fail "postgres A ($A_ADDR:$PG_PORT) is not a primary"
echo "[check] postgres A $A_ADDR:$PG_PORT primary"
[ "$(role "$B_ADDR")" = standby ] || fail "postgres B ($B_ADDR:$PG_PORT) is not a standby"
state=$("$PG_BIN/psql" -h "$A_ADDR" -p "$PG_PORT" -U postgres -Atqc \
    "select state || ' ' || sync_state from pg_stat_replication where application_name = 'tether_b'")
[ "${state%% *}" = streaming ] || fail "postgres B does not stream from A (${state:-not connected})"
echo "[check] postgres B $B_ADDR:$PG_PORT standby, $state"

for m in "${ETCD_MEMBERS[@]}"; do
    ETCDCTL_API=3 etcdctl --endpoints="http://${ETCD_ADDR[$m]}:$ETCD_CLIENT_PORT" --dial-timeout=2s \
        endpoint health >/dev/null 2>&1 || fail "etcd member $m does not answer"
    echo "[check] etcd $m ${ETCD_ADDR[$m]}:$ETCD_CLIENT_PORT healthy"
done
[ "$(etcd_ctl member list | wc -l)" = 3 ] || fail "etcd does not have 3 members"

answer=$(dig_service | sort | tr '\n' ' ')
[ -n "$answer" ] || fail "BIND ($DNS_ADDR:$DNS_PORT) does not answer for $SERVICE_NAME"
echo "[check] dns $SERVICE_NAME -> $answer"

# The tether processes, when up.sh started them (not with WITH_TETHER=0).
if [ -e "$STATE/probe.toml" ]; then
    curl -sf -o /dev/null "$MOCK_URL/$DEMO_TENANT/v2.0/.well-known/openid-configuration" || fail "the mock backend ($MOCK_URL) does not answer"
    echo "[check] mock azure $MOCK_URL"
    for addr in "${A_REPLICAS[@]}" "${B_REPLICAS[@]}"; do
        curl -sf -o /dev/null "http://$addr:$TETHER_PORT/healthz" || fail "tether replica $addr does not answer"
        ready=$(curl -s "http://$addr:$TETHER_PORT/readyz" | grep -o '"role":"\(active\|passive\)"' || true)
        echo "[check] tether $addr:$TETHER_PORT live ${ready:-(no role)}"
    done
    metrics="http://$WITNESS_ADDR:$PROBE_METRICS_PORT/metrics"
    curl -sf -o /dev/null "$metrics" || fail "the prober does not answer ($metrics)"
    echo "[check] prober $metrics"
fi
echo "[check] ok"
