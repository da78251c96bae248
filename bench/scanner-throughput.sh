#!/usr/bin/env bash
# The gateway's output scanner against Yelp's detect-secrets (PyPI) on the same 1,000 answers
# of about 1 KiB: microseconds per KiB. Needs `pip install detect-secrets`.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=$(mktemp)
trap 'rm -f "$corpus"' EXIT
cargo run --release -q -p sluice-safety --example scan_throughput -- "$corpus"
python3 - "$corpus" <<'PY'
import sys, time
from detect_secrets.core.scan import scan_line
from detect_secrets.settings import default_settings
lines = open(sys.argv[1]).read().split("\n")
kib = sum(len(l.encode()) for l in lines) / 1024
with default_settings():
    for line in lines[:50]:
        list(scan_line(line))
    rounds = 3
    start = time.perf_counter()
    for _ in range(rounds):
        flagged = sum(1 for line in lines if list(scan_line(line)))
    micros = (time.perf_counter() - start) * 1e6 / rounds
print(f"detect-secrets 1.5.0 (default plugins): {micros / kib:.2f} µs/KiB ({flagged} answers flagged)")
PY
