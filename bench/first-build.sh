#!/usr/bin/env bash
# What a newcomer's first `cargo build --release` costs: CPU time (user + system), wall time
# and binary size, from an empty target directory, for the default build, the lean build
# (no PostgreSQL backend, no JavaScript engine) and the default build with line tables.
# Usage: bench/first-build.sh [OUT]   (OUT defaults to /tmp/first-build.txt)
set -u
cd "$(dirname "$0")/.."
out=${1:-/tmp/first-build.txt}
target=$(mktemp -d)
: > "$out"
run() {
  label=$1; shift
  rm -rf "$target"
  /usr/bin/time -f "%U %S %e" -o "$target.time" env CARGO_TARGET_DIR="$target" "$@" \
    cargo build --release --locked -p sluice $EXTRA > "$target.log" 2>&1 || { cat "$target.log"; exit 1; }
  read -r user sys wall < "$target.time"
  size=$(stat -c %s "$target/release/sluice")
  echo "$label cpu_s=$(echo "$user + $sys" | bc) wall_s=$wall size_bytes=$size" | tee -a "$out"
}
EXTRA="" run default
EXTRA="--no-default-features" run lean
EXTRA="" run default-line-tables CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
rm -rf "$target" "$target.time" "$target.log"
