#!/usr/bin/env bash
# What `sluice pipeline run` costs as a scheduler: the same DAG of STAGES `true` commands
# (each stage needs the one STAGES/2 before it, so two chains run side by side) run by
# `make -j2` and by `sluice pipeline run --max-parallel 2` (recording each stage in a store, and
# with --no-store), in one run; then the time to check
# and order a pipeline of CHECK stages with `--dry-run`.
#
#   apt-get install make
#   cargo build --release && bench/pipeline-overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
sluice=${SLUICE:-$PWD/target/release/sluice}
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v make >/dev/null || { echo "install make" >&2; exit 2; }
stages=${STAGES:-500} check=${CHECK:-5000} rounds=${ROUNDS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
half=$((stages / 2))
{
  echo "stages:"
  for i in $(seq 0 $((stages - 1))); do
    if [ "$i" -lt 2 ]; then echo "  s$i: {run: 'true'}"; else echo "  s$i: {run: 'true', needs: [s$((i - 2))]}"; fi
  done
} >"$work/pipeline.yaml"
{
  printf 'all:'
  for i in $(seq 0 $((stages - 1))); do printf ' s%d' "$i"; done
  printf '\n.PHONY: all'
  for i in $(seq 0 $((stages - 1))); do printf ' s%d' "$i"; done
  printf '\n'
  for i in $(seq 0 $((stages - 1))); do
    if [ "$i" -lt 2 ]; then printf 's%d:\n\t@true\n' "$i"; else printf 's%d: s%d\n\t@true\n' "$i" $((i - 2)); fi
  done
} >"$work/Makefile"
{
  echo "stages:"
  for i in $(seq 0 $((check - 1))); do
    if [ "$i" -lt 1 ]; then echo "  s$i: {run: 'true'}"; else echo "  s$i: {run: 'true', needs: [s$(((i - 1) / 2))]}"; fi
  done
} >"$work/big.yaml"
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); echo "$end - $start" | bc; }
echo "== $stages stages of \`true\`, 2 at a time: wall seconds"
printf '%-6s %10s %10s %8s %10s %8s\n' round make sluice ratio no-store ratio
for round in $(seq 1 "$rounds"); do
  m=$(seconds make -s -j2 -C "$work" all)
  s=$(seconds "$sluice" --store "$work/s.db" pipeline run -f "$work/pipeline.yaml" --max-parallel 2 --logs "$work/logs" --json)
  n=$(seconds "$sluice" pipeline run -f "$work/pipeline.yaml" --max-parallel 2 --logs "$work/logs" --json --no-store)
  printf '%-6s %10.3f %10.3f %8.2f %10.3f %8.2f\n' "$round" "$m" "$s" "$(echo "$s / $m" | bc -l)" "$n" "$(echo "$n / $m" | bc -l)"
done
echo "== check and order $check stages (--dry-run): wall seconds"
for round in $(seq 1 "$rounds"); do
  printf '%-6s %10.3f\n' "$round" "$(seconds "$sluice" pipeline run -f "$work/big.yaml" --dry-run)"
done
