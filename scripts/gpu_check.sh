#!/usr/bin/env bash
# One-shot check on a lent GPU machine (see docs/PERFORMANCE.md, "GPU"). Expects the
# wheels the image lacks in .whl/ (see the README of the device tool) and writes
# everything under $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
# At most 8 files come back from $OUT: env.txt, tests.txt, bench.jsonl, table.md, split.txt.
nvidia-smi -L 2>&1 | tee "$OUT/env.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
# The repo maps folders to import names (server/ -> seamcut.server) through its
# packaging; without installing, links inside seamcut/ do the same (on this copy only).
root=$PWD
for p in server client bench; do ln -sfn "../$p" "seamcut/$p"; done
export PYTHONPATH=/tmp/site:$root
python3 - <<'PY' 2>&1 | tee -a "$OUT/env.txt"
import grpc, google.protobuf, onnxruntime, torch, numpy
print("grpc", grpc.__version__, "protobuf", google.protobuf.__version__, "ort",
      onnxruntime.__version__, onnxruntime.get_available_providers(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0), "numpy", numpy.__version__)
from seamcut.server.engine.device import select_device
print(select_device("auto"))
PY
T="$OUT/tests.txt"
python3 -m pytest -p no:cacheprovider -q -s -W default -o addopts="" tests/test_gpu.py \
  2>&1 | tee "$T"
# The device pipeline's scheduling on fake lanes (CPU) and, through test_gpu.py above,
# on the card.
python3 -m pytest -p no:cacheprovider -q -W default -o addopts="" tests/test_lanes_unit.py \
  tests/test_device_pipeline.py tests/test_onnx_torch.py 2>&1 | tail -3 | tee -a "$T"
python3 -m pytest -p no:cacheprovider -q -W default -o addopts="-m 'not slow'" \
  tests/test_dsp_unit.py tests/test_detector_unit.py tests/test_separation.py \
  tests/test_streaming_property.py tests/test_config_unit.py 2>&1 | tail -5 | tee -a "$T"
B="$OUT/bench.jsonl"
python3 -m seamcut.bench.gpu_sep --json /tmp/gpu_sep.json > /dev/null 2>&1
python3 -c 'import json; print(json.dumps(json.load(open("/tmp/gpu_sep.json"))))' >> "$B"
# Serial vs pipelined vs pipelined + batched, then the same engine on the host's CPUs:
# SPEECH (S2 + S3) at three batch sizes, SONG (S1) with the ~17 M-parameter MDX model.
for n in 16 256 2048; do
  timeout 120 python3 -m seamcut.bench.gpu_pipeline --streams "$n" --rounds 10 \
    --json /tmp/gp.json > /dev/null 2>&1 && \
    python3 -c 'import json; print(json.dumps(json.load(open("/tmp/gp.json"))))' >> "$B"
done
for b in 1 8 16; do
  timeout 150 python3 -m seamcut.bench.gpu_pipeline --mode song --batch "$b" --rounds 4 \
    --model /tmp/mdx17m.onnx --json /tmp/gp.json > /dev/null 2>&1 && \
    python3 -c 'import json; print(json.dumps(json.load(open("/tmp/gp.json"))))' >> "$B"
done
python3 - "$B" <<'PY' > "$OUT/table.md"
import json, sys
print("| mode | batch | way | audio s/s | real-time streams | copy ms | hidden % | peak MiB |")
print("|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "rows" not in r:
        continue
    size = r.get("streams", r.get("batch"))
    for way, v in r["rows"].items():
        print(f"| {r['mode']} | {size} | {way} | {v['audio_s_per_s']} | {v['realtime_streams']} "
              f"| {v['copy_ms']} | {v.get('copy_hidden_pct', '')} | {v['peak_mib']} |")
    print(f"| {r['mode']} | {size} | batched/serial {r['batched_vs_serial']}, "
          f"GPU/CPU {r['gpu_vs_cpu']} | | | | | |")
PY
cat "$OUT/table.md"
for dev in cpu cuda; do
  SEAMCUT_ENGINE_DEVICE=$dev python3 -m seamcut.cli split seamcut/samples/song_en.flac \
    --mode song --offline 2>&1 | tail -2 | tee -a "$OUT/split.txt"
done
