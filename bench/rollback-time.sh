#!/usr/bin/env bash
# Time from an injected fault to 0 % canary traffic: `sluice quickstart` runs a canary whose
# candidate starts failing 60 % of its requests during its first pause (simulator fault
# injection, 100 requests/s through the gateway, rule `error_rate <= 0.05` over 10 s with at
# least 20 samples, measured every 250 ms); it reports the time from the fault to the moment
# the gateway accepted weight 0.
#
#   cargo build --release && RUNS=10 bench/rollback-time.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sluice=target/release/sluice
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }
runs=${RUNS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$runs"); do
  "$sluice" --store "$work/store.db" quickstart --json >"$work/run.json"
  python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['summary']['canary']; print(c['detected_ms'] if c['rolled_back'] else 'no rollback')" "$work/run.json"
done | python3 -c "
import sys, statistics
values = [int(l) for l in sys.stdin if l.strip().isdigit()]
values.sort()
print(f'runs {len(values)}  min {values[0]} ms  median {statistics.median(values):.0f} ms  max {values[-1]} ms')
"
