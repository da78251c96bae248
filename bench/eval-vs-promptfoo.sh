#!/usr/bin/env bash
# sluice eval vs promptfoo on the same N-test suite (three deterministic assertions per test)
# against the same simulator, in one run: wall time, peak RSS, start-up.
#
#   (cd /tmp/pf && npm install promptfoo@0.121.14)      # its 0.122+ needs Node 22
#   apt-get install time && cargo build --release
#   PROMPTFOO=/tmp/pf/node_modules/.bin/promptfoo TESTS=10000 bench/eval-vs-promptfoo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tests=${TESTS:-10000}
concurrency=${CONCURRENCY:-16}
promptfoo=${PROMPTFOO:-promptfoo}
sluice=$PWD/target/release/sluice
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

printf 'models:\n  stable:\n    script:\n      - {match: "capital of France", answer: "The capital of France is Paris."}\n' >"$work/sim.yaml"
port=18300
"$sluice" simulate --listen "127.0.0.1:$port" --config "$work/sim.yaml" >/dev/null &
sleep 1

{
  echo "question,__expected1,__expected2,__expected3"
  for i in $(seq 1 "$tests"); do echo "What is the capital of France? (case $i),icontains:paris,not-contains:London,starts-with:The"; done
} >"$work/tests.csv"
cat >"$work/promptfooconfig.yaml" <<YAML
description: benchmark
providers:
  - id: openai:chat:stable
    config: {apiBaseUrl: "http://127.0.0.1:$port/v1"}
prompts: ["{{question}}"]
tests: file://tests.csv
evaluateOptions: {maxConcurrency: $concurrency}
YAML

export OPENAI_API_KEY=sk-benchmark-not-a-key PROMPTFOO_DISABLE_TELEMETRY=1 PROMPTFOO_DISABLE_UPDATE=1 \
  PROMPTFOO_CONFIG_DIR="$work/promptfoo-home" PROMPTFOO_DISABLE_SHARING=1 NO_COLOR=1

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>&1 || true
  read -r seconds kb < <(tail -1 "$work/time")
  printf '%-34s %9.2f s %9.1f MB\n' "$label" "$seconds" "$(echo "$kb / 1024" | bc -l)"
}

echo "== $tests tests x 3 assertions, concurrency $concurrency, $(nproc) cores"
measure "sluice --version" "$sluice" --version
[ -n "${SKIP_PROMPTFOO:-}" ] || measure "promptfoo --version" "$promptfoo" --version
cd "$work"
measure "sluice eval (store on)" "$sluice" --store "$work/sluice.db" eval --no-cache -c promptfooconfig.yaml
tail -1 "$work/out"
measure "sluice eval --no-write" "$sluice" eval --no-write --no-cache -c promptfooconfig.yaml
[ -n "${SKIP_PROMPTFOO:-}" ] && exit 0
measure "promptfoo eval (store on)" "$promptfoo" eval -c promptfooconfig.yaml --no-cache
cp "$work/out" /tmp/pf-last-out.txt
grep -E "Successes|Pass Rate|passed" "$work/out" | tail -2 || true
measure "promptfoo eval --no-write" "$promptfoo" eval -c promptfooconfig.yaml --no-cache --no-write
