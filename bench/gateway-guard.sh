#!/usr/bin/env bash
# What a version's safety action costs on streamed chat completions: `sluice bench` (closed
# loop, 8 at a time, 256-token answers) straight at `sluice simulate`, and through
# `sluice gateway` with `safety: {action: log}` (scan after sending), `redact` and `block`
# (every event read, guarded and re-encoded before it goes out), all in one run. Twice: with
# answers paced at 4,000 tokens/s (what holding back the tail costs in TTFT) and with every
# token at once (what guarding costs in CPU: the most requests per second).
#
#   cargo build --release && bench/gateway-guard.sh
#
# DURATION (default 10s) per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
sluice=$PWD/target/release/sluice
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
sim_port=18310 gateway_port=18311 admin_port=18312
printf 'models:\n  paced: {tokens_per_second: 4000, default: lorem, lorem_tokens: 256}\n  burst: {default: lorem, lorem_tokens: 256}\n' >"$work/sim.yaml"
"$sluice" simulate --listen "127.0.0.1:$sim_port" --config "$work/sim.yaml" >/dev/null &
sim="http://127.0.0.1:$sim_port/v1"
{
  echo "routes:"
  for model in paced burst; do
    for action in log redact block; do
      echo "  $model-$action:"
      echo "    versions: [{name: $action, url: \"$sim\", model: $model, safety: {action: $action}}]"
    done
  done
} >"$work/gateway.yaml"
"$sluice" --store "$work/g.db" gateway --config "$work/gateway.yaml" \
  --listen "127.0.0.1:$gateway_port" --admin-listen "127.0.0.1:$admin_port" >/dev/null 2>&1 &
sleep 2
measure() {
  "$sluice" bench --url "$1" -m "$2" --stream --concurrency 8 --duration "$duration" \
    --output-tokens 256 --warmup 20 --no-write --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.0f %.2f %.2f" % (r["request_throughput"], r["median_ttft_ms"], r["median_e2el_ms"]))'
}
for model in paced burst; do
  printf '\n%-34s %10s %12s %12s\n' "$model answers" "req/s" "p50 TTFT ms" "p50 e2e ms"
  printf '%-34s %10s %12s %12s\n' "direct to the simulator" $(measure "$sim" "$model")
  for action in log redact block; do
    printf '%-34s %10s %12s %12s\n' "gateway, action: $action" \
      $(measure "http://127.0.0.1:$gateway_port/v1" "$model-$action")
  done
done
