#!/usr/bin/env bash
# Compares Tether builds on the create figure in alternating single pairs, so that each build
# sees the same machine: the speed of a shared VM drifts by 10-20 % within minutes, more than
# most changes are worth.
#
#   benches/compare.sh ROUNDS BIN...     # e.g. benches/compare.sh 3 /tmp/tether-old target/release/tether
#
# Per run it prints the completed sagas/s, the ratio to the reference, the CPU per create of
# Tether, Postgres and the mock backend, and Tether's and Postgres's CPU divided by the mock's.
# The mock runs the same code for every build, so those quotients cancel the machine's speed
# of the moment: between runs of one build they varied by 2-5 %, the ratio by 10-20 %.
# Needs `cargo build --release --locked -p tether-bench` and what `tether-bench` needs.
set -euo pipefail
rounds=$1
shift
cd "$(dirname "$0")/.."
json=$(mktemp)
trap 'rm -f "$json"' EXIT
for _ in $(seq "$rounds"); do
  for bin in "$@"; do
    : >"$json"
    target/release/tether-bench create --pairs 1 --duration 6 --tether-bin "$bin" \
      --json "$json" >/dev/null 2>&1
    python3 - "$json" "$bin" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("kind") != "pair":
        continue
    t, r = d["tether"], d["reference"]
    tc, dc, mc = (t["tether_cpu_ms_per_create"], t["db_cpu_ms_per_create"],
                  t["mock_cpu_ms_per_create"])
    print(f'{sys.argv[2]:24s} ref {r["upserts_per_s"]:6.0f}/s  tether {t["completed_sagas_per_s"]:6.1f}/s'
          f'  ratio {d["ratio"]:.4f}  CPU ms tether/db/mock {tc:.2f}/{dc:.2f}/{mc:.2f}'
          f'  tether/mock {tc / mc:.2f}  db/mock {dc / mc:.2f}')
PY
  done
done
