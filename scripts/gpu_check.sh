#!/usr/bin/env bash
# One-shot check on a lent GPU machine (see docs/PERFORMANCE.md, "GPU"). Expects the
# wheels the image lacks in .whl/ (see the README of the device tool) and writes
# everything under $OUT.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
nvidia-smi -L 2>&1 | tee "$OUT/nvidia.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
# The repo maps folders to import names (server/ -> seamcut.server) through its
# packaging; without installing, links inside seamcut/ do the same (on this copy only).
root=$PWD
for p in server client bench; do ln -sfn "../$p" "seamcut/$p"; done
export PYTHONPATH=/tmp/site:$root
python3 - <<'PY' 2>&1 | tee "$OUT/env.txt"
import grpc, google.protobuf, onnxruntime, torch, numpy
print("grpc", grpc.__version__, "protobuf", google.protobuf.__version__, "ort",
      onnxruntime.__version__, onnxruntime.get_available_providers(), "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0), "numpy", numpy.__version__)
from seamcut.server.engine.device import select_device
print(select_device("auto"))
PY
python3 -m pytest -p no:cacheprovider -q -s -W default -o addopts="" tests/test_gpu.py \
  2>&1 | tee "$OUT/gpu_tests.txt"
# The device pipeline's scheduling on fake lanes (CPU) and, through test_gpu.py above,
# on the card.
python3 -m pytest -p no:cacheprovider -q -W default -o addopts="" \
  tests/test_lanes_unit.py tests/test_device_pipeline.py 2>&1 | tail -3 | tee "$OUT/pipeline_tests.txt"
python3 -m pytest -p no:cacheprovider -q -W default -o addopts="-m 'not slow'" \
  tests/test_dsp_unit.py tests/test_detector_unit.py tests/test_separation.py \
  tests/test_streaming_property.py tests/test_config_unit.py 2>&1 | tail -5 | tee "$OUT/cpu_tests.txt"
python3 -m seamcut.bench.gpu_sep --json "$OUT/gpu_sep.json" > /dev/null 2>&1
cat "$OUT/gpu_sep.json"
# S2 + S3: serial vs pipelined vs pipelined + batched, then the same engine on the CPU.
for n in 16 256 2048; do
  timeout 120 python3 -m seamcut.bench.gpu_pipeline --streams "$n" --rounds 10 \
    --json "$OUT/gpu_pipeline_$n.json" > /dev/null 2>&1
  cat "$OUT/gpu_pipeline_$n.json" 2>/dev/null
done
for dev in cpu cuda; do
  SEAMCUT_ENGINE_DEVICE=$dev python3 -m seamcut.cli split seamcut/samples/song_en.flac \
    --mode song --offline 2>&1 | tail -2 | tee -a "$OUT/split_song.txt"
done
