#!/usr/bin/env bash
# The engine-process measurement series of docs/PERFORMANCE.md ("Engine processes").
# Usage: scripts/bench_engine.sh [OUT_DIR]   (default out/bench-engine; ~40 min on 2 cores)
# Runs on a quiet machine: every run starts a fresh server on 127.0.0.1:50061 (the echo
# server on 50062), drives it with `seamcut bench`, and writes JSON reports to OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-out/bench-engine}"
mkdir -p "$out"
py=.venv/bin/python
seamcut=.venv/bin/seamcut

start_server() {  # name, pin ("" or a taskset cpu list), serve args...
  local name=$1 pin=$2; shift 2
  local pre=()
  [ -n "$pin" ] && pre=(taskset -c "$pin")
  # The ramp's 256 streams all come from 127.0.0.1: no per-address share for it.
  SEAMCUT_SERVER_MAX_STREAMS_PER_PEER=0 \
  "${pre[@]}" "$seamcut" serve --host 127.0.0.1 --port 50061 --log-level WARNING "$@" \
    > "$out/$name.serve.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    [ "$(grep -c 'listening on' "$out/$name.serve.log")" -ge "${want_listeners:-1}" ] && break
    sleep 0.2
  done
  sleep 1
}

stop_server() { kill -TERM "$server_pid"; wait "$server_pid" || true; }

bench() {  # name, pin, bench args...
  local name=$1 pin=$2; shift 2
  local pre=()
  [ -n "$pin" ] && pre=(taskset -c "$pin")
  "${pre[@]}" "$seamcut" bench --server 127.0.0.1:50061 --server-pid "$server_pid" "$@" \
    --json "$out/$name.json" --quiet > "$out/$name.out" 2>&1 || true
}

# 1. One flooding stream: gRPC vs in-process, 100 ms and 1 s messages.
for chunk in 100 1000; do
  for layout in "inline 1" "process 1" "process 2"; do
    set -- $layout
    name="flood_${chunk}_$1_w$2"
    want_listeners=$2 start_server "$name" "" --engine "$1" --workers "$2"
    bench "$name" "" --streams 1 --chunk-ms "$chunk" --duration 20 --warmup 3 \
      --compare inprocess
    stop_server
  done
done

# 2. Paced 20 ms SPEECH ramp: the echo floor and seamcut, unpinned and pinned
#    (server on cpu 0, client on cpu 1).
ramp=(--streams 256 --realtime --ramp 16:16:10 --warmup 3 --processes 2)
for pin in none pinned; do
  spin=""; cpin=""
  [ "$pin" = pinned ] && spin=0 && cpin=1
  pre=(); [ -n "$spin" ] && pre=(taskset -c "$spin")
  "${pre[@]}" "$py" -m seamcut.bench.echo --host 127.0.0.1 --port 50061 \
    > "$out/ramp_echo_$pin.serve.log" 2>&1 &
  server_pid=$!
  sleep 2
  bench "ramp_echo_$pin" "$cpin" "${ramp[@]}"
  stop_server
  for layout in "inline 1 1" "inline 2 1" "process 1 1" "process 2 1" "process 2 2"; do
    set -- $layout
    name="ramp_$1_w$2_e$3_$pin"
    want_listeners=$2 start_server "$name" "$spin" --engine "$1" --workers "$2" --engines "$3"
    bench "$name" "$cpin" "${ramp[@]}"
    stop_server
  done
done

# 3. Engine SIGKILL during 8 paced streams (process engines, 2 workers).
want_listeners=2 start_server kill_w2 "" --engine process --workers 2
"$py" -m seamcut.bench.engine_kill --server 127.0.0.1:50061 --supervisor-pid "$server_pid" \
  --streams 8 --json "$out/kill_w2.json" > "$out/kill_w2.out" 2>&1 || true
stop_server
echo "reports in $out"
