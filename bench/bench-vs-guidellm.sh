#!/usr/bin/env bash
# The highest request rate each load generator sustains against `sluice simulate` on this
# machine with schedule lag p99 under 5 ms, and the TTFT it reports against the simulator's
# configured 20 ms. Both clients send the same prompts, streamed, to the same simulator
# (which shares the machine's cores with the client, as in CI).
#
# Lag is the time from a request's scheduled instant to its start: `schedule_lag` for
# `sluice bench`, guidellm's `request_dispatch_delay` (its "targeted start delay").
#
#   python3 -m venv /tmp/gl && /tmp/gl/bin/pip install guidellm
#   cargo build --release && GUIDELLM=/tmp/gl/bin/guidellm bench/bench-vs-guidellm.sh
#
# SLUICE_RATES / GUIDELLM_RATES / SECONDS_PER_RATE override the defaults; SKIP_GUIDELLM=1
# measures sluice alone.
set -euo pipefail
cd "$(dirname "$0")/.."
sluice=target/release/sluice
guidellm=${GUIDELLM:-guidellm}
seconds=${SECONDS_PER_RATE:-10}
sluice_rates=${SLUICE_RATES:-"1000 2000 4000 6000 8000 10000"}
guidellm_rates=${GUIDELLM_RATES:-"50 100 200 400 800"}
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
printf 'models:\n  short:\n    ttft_ms: 20\n    default: ok\n' >"$work/sim.yaml"
python3 - "$work/prompts.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(1000):
        f.write(json.dumps({"prompt": f"{i} " + " ".join(["river stone light"] * 10), "output_tokens": 4}) + "\n")
PY
port=18090
"$sluice" simulate --listen "127.0.0.1:$port" --config "$work/sim.yaml" >/dev/null &
sleep 1
url="http://127.0.0.1:$port"

echo "client    rate/s  achieved/s  lag p50 ms  lag p99 ms  ttft p50 ms  sustained"
for rate in $sluice_rates; do
  "$sluice" bench --url "$url" --model short --rate "$rate" --arrival constant \
    --duration "${seconds}s" --dataset "$work/prompts.jsonl" --max-lag 5ms \
    --json --no-write >"$work/sluice-$rate.json" || true
  python3 - "$work/sluice-$rate.json" "$rate" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lag = d["p99_schedule_lag_ms"]
print(f"sluice    {sys.argv[2]:>6}  {d['request_throughput']:>10.0f}  {d['median_schedule_lag_ms']:>10.2f}  {lag:>10.2f}  {d['median_ttft_ms']:>11.2f}  {'yes' if lag < 5 else 'no'}")
PY
done
[ "${SKIP_GUIDELLM:-0}" = 1 ] && exit 0
for rate in $guidellm_rates; do
  (cd "$work" && "$guidellm" run \
    --backend "kind=openai_http,target=$url,model=short" \
    --profile "kind=constant,rate=$rate" \
    --constraint "kind=max_duration,seconds=$seconds" \
    --data "kind=json_file,path=$work/prompts.jsonl" \
    --output "kind=json,path=$work/guidellm-$rate.json" \
    --disable-console >/dev/null 2>&1) || true
  python3 - "$work/guidellm-$rate.json" "$rate" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]["metrics"]
lag = b["request_dispatch_delay"]["successful"]["percentiles"]
ttft = b["time_to_first_token_ms"]["successful"]["median"]
rps = b["requests_per_second"]["successful"]["mean"]
p99 = lag["p99"] * 1000
print(f"guidellm  {sys.argv[2]:>6}  {rps:>10.0f}  {lag['p50'] * 1000:>10.2f}  {p99:>10.2f}  {ttft:>11.2f}  {'yes' if p99 < 5 else 'no'}")
PY
done
