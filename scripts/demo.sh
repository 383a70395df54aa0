#!/usr/bin/env bash
# The main job: start `seamcut serve` on its defaults, stream the bundled samples through
# it (speech at real time, then a song in SONG mode), show the cut points, write
# out/*.json and out/segments-*/, stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
samples=seamcut/samples
mkdir -p out
$bin/seamcut serve >out/server.log 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
$bin/python scripts/wait_healthy.py localhost:50051 60
echo "== speech, streamed at real time"
$bin/seamcut split $samples/speech_en.flac --realtime --json out/speech.json \
  --segments out/segments-speech "$@"
echo
echo "== song (vocal separated first, pauses found in the vocal while the band plays on)"
$bin/seamcut split $samples/song_en.flac --mode song --json out/song.json \
  --segments out/segments-song "$@"
echo
echo "demo: cut points in out/speech.json and out/song.json, segments in out/segments-*/,"
echo "      server log in out/server.log"
