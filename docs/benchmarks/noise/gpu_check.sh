#!/usr/bin/env bash
# GPU check of `cryoal benchmark noise` (run from the repository root on a CUDA machine).
# 1. the quick preset through the CLI with --device cuda (one seed), timed;
# 2. the per-round cost at the paper's size (dsrf3d, 32³, 10 classes, pool 3000) for
#    random and expected-gradnorm, to estimate the paper preset's run time.
# Results land in $OUT (or ./gpu-check when OUT is unset).
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 || export PYTHONPATH=${PYTHONPATH:-}:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/benchmark/test_noise.py -k cuda 2>&1 | tail -4 | tee -a "$OUT/gpu.txt"
start=$(date +%s)
timeout 120 python3 -m cryoal.cli benchmark noise --preset quick --seeds 1 --snr 0.1 --strategies random,entropy-gradnorm --device cuda --out /tmp/quick-cuda 2>&1 | grep -v "it/s\|run/s" | tail -8
echo "quick (1 seed, SNR 0.1, 2 strategies) on cuda: $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
for f in results.csv summary.md robustness.csv; do cp /tmp/quick-cuda/$f "$OUT/quick-cuda-$f" 2>/dev/null; done
timeout 130 python3 - <<'PY' 2>&1 | tail -20 | tee -a "$OUT/gpu.txt"
import time
from cryoal.benchmark import noise
cfg = noise.preset("paper", snrs=(0.05,), seeds=(0,), strategies=("random", "expected-gradnorm"),
                   rounds=1, robustness=False, device="cuda")
t = time.perf_counter()
table = noise.run(cfg, out="/tmp/paper-size")
print(table.to_string())
print(f"paper-size probe (simulate 4000 volumes + 2 runs x 2 rounds): {time.perf_counter() - t:.1f} s")
PY
