#!/usr/bin/env bash
# The CUDA checks in one run, on a machine with an NVIDIA GPU: the CUDA tests
# (tests/gradbalance/test_cuda.py: every built-in against the CPU, fp16/bf16 rows, host syncs
# per combine, TF32 kept off the Gramian) and the BERT-base-size combine benchmark
# (benchmarks/test_cuda_combine.py). Logs go to ${OUT:-gpu-checks}/.
#
#     bash scripts/gpu_checks.sh                 # the project's .venv if there is one
#     PYTHON=python3 bash scripts/gpu_checks.sh  # any Python with torch (CUDA), numpy, attrs,
#                                                # pluggy, hypothesis, pytest, pytest-benchmark
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
out=${OUT:-gpu-checks}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! "$python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_checks: $python's torch sees no CUDA device; run this on a machine with an NVIDIA GPU" >&2
    exit 2
fi
mkdir -p "$out"
"$python" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())" \
    | tee "$out/device.txt"
"$python" -m pytest -q -p no:cacheprovider tests/gradbalance/test_cuda.py 2>&1 | tee "$out/tests.log"
tests=${PIPESTATUS[0]}
"$python" -m pytest -q -s -p no:cacheprovider benchmarks/test_cuda_combine.py 2>&1 | tee "$out/benchmark.log"
benchmark=${PIPESTATUS[0]}
echo "gpu_checks: tests exit $tests, benchmark exit $benchmark (logs in $out/)"
exit $((tests != 0 || benchmark != 0))
