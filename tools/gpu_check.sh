#!/usr/bin/env bash
# The CUDA lanes in one prepared run, for a machine with an NVIDIA GPU (e.g. the
# device tool's): what the image offers, then the smoke and latency suites on
# the CUDA runtimes next to the CPU baselines, with every result file under OUT.
#
#   OUT=/path/to/out bash tools/gpu_check.sh
#
# On a machine without CUDA every CUDA lane reports "skip" with its reason and the
# script says so; it never reports them as passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-check}"
mkdir -p "$OUT"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$OUT/cache}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
    python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.version.cuda)"
    conformance list runtimes
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"
runtimes=(--runtime reference --runtime ort-cpu --runtime ort-cuda --runtime torch-cpu --runtime torch-cuda)
COLUMNS=200 conformance run --suite smoke "${runtimes[@]}" --out "$OUT/smoke" --html "$OUT/smoke.html" \
    > "$OUT/smoke.txt" 2>&1
smoke=$?
COLUMNS=200 conformance run --suite latency "${runtimes[@]}" --out "$OUT/latency" --show-latency \
    --html "$OUT/latency.html" > "$OUT/latency.txt" 2>&1
latency=$?
tail -n 25 "$OUT/smoke.txt"
grep -A8 "Latency: seq-len\[64\]\|Latency: lm" "$OUT/latency.txt" || true
python - "$OUT/smoke/results.json" <<'PY'
import json, sys
from collections import Counter

results = json.load(open(sys.argv[1]))["results"]
ran = Counter(r["runtime"] for r in results if r["runtime"].endswith("-cuda") and r["status"] != "skip")
print("CUDA lanes that ran:", dict(ran) if ran else "none (see the skip reasons above)")
PY
echo "smoke exit $smoke, latency exit $latency; results in $OUT"
exit $(( smoke > latency ? smoke : latency ))
