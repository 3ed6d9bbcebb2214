#!/usr/bin/env bash
# Lists every SQL statement Tether sends to Postgres for one linker create (the PUT and its
# saga) and for one linker GET, with the count of transactions.
#
#   benches/statements.sh            # after `cargo build --release --bin tether`
#
# It creates a fresh database with `log_statement = 'all'` set on that database only (other
# databases on the server are not affected), starts the mock backend and `tether serve` on
# loopback, seeds one web app and one PostgreSQL database in the mock, and reads the server log
# (Debian's default: /var/log/postgresql/postgresql-15-main.log, lines tagged `user@database`).
# Everything it starts is stopped and the database dropped at the end.
#
# Environment: BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres),
# TETHER_BIN (default target/release/tether), PG_LOG (default the Debian log above).
set -euo pipefail

ADMIN=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BIN=${TETHER_BIN:-target/release/tether}
PG_LOG=${PG_LOG:-/var/log/postgresql/postgresql-15-main.log}
DB=tether_stmtlog_$$
WORK=$(mktemp -d)
SUB=11111111-2222-3333-4444-555555555555
RG=/subscriptions/$SUB/resourceGroups/rg-stmt
SITE=$RG/providers/Microsoft.Web/sites/web-stmt
SERVER=$RG/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-stmt
TARGET=$SERVER/databases/db
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  psql -q "$ADMIN" -c "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (20 s at most) for a line starting with $2 in file $1 and prints the rest of it.
announced() {
  for _ in $(seq 200); do
    line=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "${line#"$2"}"; return; fi
    sleep 0.1
  done
  echo "no '$2' in $1" >&2; exit 1
}

psql -q "$ADMIN" -c "create database $DB"
psql -q "$ADMIN" -c "alter database $DB set log_statement = 'all'"

"$BIN" mock-azure --listen 127.0.0.1:0 >"$WORK/mock.out" 2>"$WORK/mock.log" &
PIDS+=($!)
MOCK=$(announced "$WORK/mock.out" "mock Azure backend listening on ")
TENANT=aaaaaaaa-0000-4000-8000-000000000001

DB_URL=$(python3 -c "import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path='/$DB').geturl())" "$ADMIN")
# The bench's configuration (crates/bench/src/setup.rs): the mock issues the tokens and its
# demo client is Owner.
cat >"$WORK/tether.toml" <<EOF
[server]
listen = "127.0.0.1:0"
location = "westus"
trusted_hosts = ["127.0.0.1"]
public_scheme = "http"
[database]
url = "$DB_URL"
[auth]
audiences = ["https://management.azure.com"]
allow_http_issuers = true
bootstrap_owners = ["08e5fa31-2314-8299-b025-dd969cba3c96"]
[[auth.issuers]]
issuer = "$MOCK/$TENANT/v2.0"
tenant_id = "$TENANT"
[throttle]
enabled = false
[secrets]
key = "$(head -c 32 /dev/urandom | base64)"
[azure]
arm_endpoint = "$MOCK"
authority = "$MOCK"
tenant_id = "$TENANT"
client_id = "tether-dev-client"
client_secret = "tether-dev-secret"
EOF
env -u RUST_LOG "$BIN" serve --config "$WORK/tether.toml" >"$WORK/tether.out" 2>"$WORK/tether.log" &
PIDS+=($!)
API=$(announced "$WORK/tether.out" "tether listening on ")
TOKEN=$(curl -sf -d grant_type=client_credentials -d client_id=tether-dev-client \
  -d client_secret=tether-dev-secret -d scope=https://management.azure.com/.default \
  "$MOCK/$TENANT/oauth2/v2.0/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

arm_put() {
  curl -sf -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "$2" "$MOCK$1?api-version=2023-12-01"
}
arm_put "$RG" '{"location":"westus"}'
arm_put "$SITE" '{"location":"westus","kind":"app","properties":{"outboundIpAddresses":"20.51.7.1,20.51.7.2"}}'
arm_put "$SERVER" '{"location":"westus","properties":{"administratorLogin":"pgadmin","version":"16"}}'
arm_put "$TARGET" '{"properties":{}}'

LINKER="$API$SITE/providers/Microsoft.ServiceLinker/linkers/stmt?api-version=2022-05-01"
BODY='{"properties":{"targetService":{"type":"AzureResource","id":"'$TARGET'"},"authInfo":{"authType":"secret","name":"benchuser","secretInfo":{"secretType":"rawValue","value":"pw"}},"clientType":"python","vNetSolution":{"type":"firewall"}}}'

# Statements of our database logged after byte offset $1 (the `statement:`/`execute` lines).
statements() {
  tail -c +"$(( $1 + 1 ))" "$PG_LOG" | grep "@$DB " | grep -E "LOG:  (statement|execute)" |
    sed -E 's/^.*LOG:  (statement|execute [^:]*): //' | cut -c1-160
}

sleep 1  # let start-up queries (migrations, the first adoption scan) pass
START=$(stat -c %s "$PG_LOG")
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d "$BODY" "$LINKER")
echo "PUT answered $code; waiting 2 s for the saga (no polling, so no extra statements)"
sleep 2
echo "=== statements for one create (PUT + saga) ==="
statements "$START" | tee "$WORK/create.sql" | nl
echo "--- $(grep -ciE '^(begin|commit)' "$WORK/create.sql") begin/commit statements; $(grep -ci '^commit' "$WORK/create.sql") explicit commits"

START=$(stat -c %s "$PG_LOG")
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$LINKER")
sleep 1.5
echo "=== statements for one GET (answered $code) ==="
statements "$START" | nl
echo "=== backend calls of the create, from the mock ==="
curl -s "$MOCK/admin/calls" | python3 -c '
import json, sys
for c in json.load(sys.stdin)["calls"]:
    if "rg-stmt" in c["path"] or "oauth2" in c["path"] or "azureAsyncOperation" in c["path"]:
        print(c["method"], c["path"].replace("/subscriptions/'$SUB'/resourceGroups/rg-stmt/providers/", "…/"), c["status"])
' | tail -n +5  # the first four are the seeding PUTs
