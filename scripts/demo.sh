#!/usr/bin/env bash
# Brings up anyport on the demo config with local echo servers as targets.
# Try it from another terminal: echo hello | nc -N localhost 6300
# Ctrl-C (or SIGTERM) stops the proxy and the echo servers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deno.sh

pids=()
stop() {
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT INT TERM

deno run --allow-net scripts/echo_server.ts 9001 9002 9003 9005 9006 &
pids+=($!)
deno run --allow-net scripts/echo_server.ts --host ::1 9004 &
pids+=($!)
deno run --allow-net --allow-read=. --allow-ffi main.ts --config config.json "$@" &
proxy=$!
pids+=("$proxy")
wait "$proxy"
