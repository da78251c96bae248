#!/usr/bin/env bash
# What a proxy in front of `sluice simulate` costs: latency and throughput of non-streaming chat
# completions sent directly, through nginx as a plain reverse proxy (the floor), through
# `sluice gateway`, and through LiteLLM's proxy, all on this machine in one run.
#
#   apt-get install wrk nginx-light
#   python3 -m venv /tmp/ll && /tmp/ll/bin/pip install 'litellm[proxy]'
#   cargo build --release && LITELLM=/tmp/ll/bin/litellm bench/gateway-overhead.sh
#
# Besides latency and throughput, it reports each proxy's own CPU time per request at 8
# connections (from /proc, so a busy neighbour on a shared machine changes it less than it
# changes requests/s).
#
# DURATION (default 10s) per measurement; SKIP_LITELLM=1 leaves LiteLLM out; SLUICE=path measures
# another sluice binary (a build of an earlier commit, for a before/after table).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
sluice=${SLUICE:-$PWD/target/release/sluice}
[ -x "$sluice" ] || { echo "build first: cargo build --release ($sluice is missing)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "install nginx (apt-get install nginx-light)" >&2; exit 2; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT
sim_port=18200 nginx_port=18201 gateway_port=18202 admin_port=18203 litellm_port=18204
printf 'models:\n  stable:\n    script:\n      - {match: "capital of France", answer: "The capital of France is Paris."}\n' >"$work/sim.yaml"
"$sluice" simulate --listen "127.0.0.1:$sim_port" --config "$work/sim.yaml" >/dev/null &
sim_pid=$!

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work;
  proxy_temp_path $work;
  upstream sim { server 127.0.0.1:$sim_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!

cat >"$work/gateway.yaml" <<YAML
routes:
  stable:
    versions:
      - {name: v1, url: "http://127.0.0.1:$sim_port/v1", model: stable}
YAML
"$sluice" gateway --no-store -c "$work/gateway.yaml" --listen "127.0.0.1:$gateway_port" \
  --admin-listen "127.0.0.1:$admin_port" >/dev/null &
gateway_pid=$!

targets="direct:$sim_port nginx:$nginx_port sluice-gateway:$gateway_port"

# CPU seconds (user + system, all threads) of a process and its children, from /proc.
cpu_seconds() {
  local pids="$1 $(pgrep -P "$1" | tr '\n' ' ')"
  for pid in $pids; do cat "/proc/$pid/stat" 2>/dev/null; done |
    awk -v hz="$(getconf CLK_TCK)" '{ticks += $14 + $15} END {printf "%.3f", ticks / hz}'
}
declare -A proxy_pid=([direct]=$sim_pid [nginx]=$nginx_pid [sluice-gateway]=$gateway_pid)
cpu_report=""
if [ "${SKIP_LITELLM:-0}" != 1 ]; then
  litellm=${LITELLM:-litellm}
  cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: stable
    litellm_params: {model: openai/stable, api_base: "http://127.0.0.1:$sim_port/v1", api_key: none}
litellm_settings: {telemetry: false}
YAML
  # Like the other proxies here, LiteLLM runs without client authentication.
  (cd "$work" && LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true exec "$litellm" \
    --config "$work/litellm.yaml" --port "$litellm_port" --num_workers 1 >"$work/litellm.log" 2>&1) &
  litellm_pid=$!
  for _ in $(seq 1 60); do
    curl -sf "http://127.0.0.1:$litellm_port/health/liveliness" >/dev/null && break
    sleep 1
  done
  targets="$targets litellm:$litellm_port"
  proxy_pid[litellm]=$litellm_pid
fi
sleep 1

body='{"model":"stable","messages":[{"role":"user","content":"What is the capital of France?"}]}'
for target in $targets; do
  port=${target#*:}
  curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
    -d "$body" >/dev/null || { echo "${target%%:*} does not answer" >&2; exit 1; }
done

echo "== fixed concurrency (wrk -t1, $duration): requests/s, p50, p99"
printf '%-16s %5s %12s %10s %10s\n' proxy conns req/s p50 p99
for conns in 1 8 32; do
  for target in $targets; do
    name=${target%%:*} port=${target#*:}
    before=$(cpu_seconds "${proxy_pid[$name]}")
    wrk -t1 -c"$conns" -d"$duration" --latency -s bench/sim-chat.lua "http://127.0.0.1:$port" >"$work/wrk.txt" 2>&1 || true
    after=$(cpu_seconds "${proxy_pid[$name]}")
    if [ "$conns" = 8 ]; then
      requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
      cpu_report+=$(awk -v n="$name" -v b="$before" -v a="$after" -v r="$requests" \
        'BEGIN {printf "%-16s %12d %10.1f\n", n, r, (a - b) * 1e6 / r}')$'\n'
    fi
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
    printf '%-16s %5s %12s %10s %10s\n' "$name" "$conns" "$rps" "$p50" "$p99"
  done
done

echo "== CPU time per request at 8 connections (the process and its children; for direct, the simulator's)"
printf '%-16s %12s %10s\n' proxy requests us/req
printf '%s' "$cpu_report"

echo "== fixed rate (sluice bench, open loop, non-streaming, $duration): e2e p50 / p99 in ms"
printf '%-16s %6s %10s %10s %10s %8s\n' proxy rate achieved p50 p99 errors
for rate in 1000 5000; do
  for target in $targets; do
    name=${target%%:*} port=${target#*:}
    if [ "$name" = litellm ] && [ "$rate" -gt 1000 ]; then continue; fi
    "$sluice" bench --url "http://127.0.0.1:$port/v1" --model stable --rate "$rate" \
      --arrival constant --duration "$duration" --no-stream --input-tokens 8 --max-lag 1s \
      --json --no-write >"$work/bench.json" 2>/dev/null || true
    python3 - "$work/bench.json" "$name" "$rate" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:<16} {sys.argv[3]:>6} {d['request_throughput']:>10.0f} {d['median_e2el_ms']:>10.3f} {d['p99_e2el_ms']:>10.3f} {d['failed']:>8}")
PY
  done
done
