#!/usr/bin/env bash
# Hashing a registered artifact: `sluice registry verify` (which re-reads and hashes a
# file:// artifact) against coreutils' `sha256sum` on the same file, from the page cache, and
# the peak memory of each. Needs `cargo build --release`, hyperfine and GNU time.
#
#   bench/artifact-hash.sh [SIZE_MIB]      # default 1024
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
sluice=$PWD/target/release/sluice
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=$work/weights.bin
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$file"
cat "$file" >/dev/null # into the page cache
store=$work/s.db
"$sluice" --store "$store" registry register bench --version 1.0.0 --artifact "file://$file" >/dev/null
hyperfine --warmup 1 --runs 5 --export-markdown "$work/hash.md" \
  -n "sluice registry verify" "$sluice --store $store registry verify bench/1.0.0" \
  -n "sha256sum" "sha256sum $file" >/dev/null
cat "$work/hash.md"
for command in "$sluice --store $store registry verify bench/1.0.0" "sha256sum $file"; do
  rss=$(/usr/bin/time -f %M $command 2>&1 >/dev/null | tail -n 1)
  echo "peak RSS ${rss} KiB: ${command%% *}"
done
