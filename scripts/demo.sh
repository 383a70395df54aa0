#!/usr/bin/env bash
# The main job: start `seamcut serve` on its defaults, stream the bundled sample
# through it, show the cut points, write out/demo.json and out/segments/, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
sample=seamcut/samples/speech_en.flac
mkdir -p out
$bin/seamcut serve >out/server.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
$bin/python scripts/wait_healthy.py localhost:50051 60
$bin/seamcut split "$sample" --realtime --json out/demo.json --segments out/segments "$@"
echo
echo "demo: cut points in out/demo.json, segments in out/segments/, server log in out/server.log"
