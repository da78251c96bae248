#!/usr/bin/env bash
# Measures the simulator's non-streaming request rate on ONE core with wrk on the other, and,
# when nginx is installed, the rate of nginx answering a fixed JSON body on the same core as a
# ceiling for "an HTTP server on one core" in the same run.
#
#   apt-get install wrk nginx-light && cargo build --release && bench/sim-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-10s}
connections=${CONNECTIONS:-64}
sluice=target/release/sluice
[ -x "$sluice" ] || { echo "build first: cargo build --release" >&2; exit 2; }
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 2; }

config=$(mktemp --suffix=.yaml)
trap 'rm -f "$config"; kill $(jobs -p) 2>/dev/null || true' EXIT
printf 'models:\n  stable:\n    script:\n      - {match: "capital of France", answer: "The capital of France is Paris."}\n' >"$config"

port=18000
taskset -c 0 "$sluice" simulate --listen "127.0.0.1:$port" --config "$config" >/dev/null &
sleep 1
curl -sf -X POST "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"stable","messages":[{"role":"user","content":"What is the capital of France?"}]}' >/dev/null
echo "== sluice simulate (1 core), $connections connections, $duration"
taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/sim-chat.lua "http://127.0.0.1:$port" | tee /tmp/sim-wrk.txt
kill %1; wait %1 2>/dev/null || true

if command -v nginx >/dev/null; then
  dir=$(mktemp -d)
  body='{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"stable","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":7,"total_tokens":14}}'
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir;
  server {
    listen 127.0.0.1:$((port + 1));
    location / { default_type application/json; return 200 '$body'; }
  }
}
CONF
  taskset -c 0 nginx -c "$dir/nginx.conf" &
  sleep 1
  echo "== nginx fixed JSON body (1 core), $connections connections, $duration"
  taskset -c 1 wrk -t1 -c"$connections" -d"$duration" --latency -s bench/sim-chat.lua "http://127.0.0.1:$((port + 1))" | tee /tmp/nginx-wrk.txt
  kill %2 2>/dev/null || true
  sim=$(awk '/Requests\/sec/ {print $2}' /tmp/sim-wrk.txt)
  ngx=$(awk '/Requests\/sec/ {print $2}' /tmp/nginx-wrk.txt)
  echo "== ratio simulator / nginx: $(awk -v a="$sim" -v b="$ngx" 'BEGIN {printf "%.2f", a / b}')"
fi
