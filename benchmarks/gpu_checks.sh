#!/usr/bin/env bash
# The GPU checks of the training step and of sharing a GPU, as one script with timeouts, for a
# machine with a CUDA GPU (docs/benchmarks.md). Logs go to ${OUT:-gpu-checks}/, written as they run.
#
#   DATA=path/to/assist2015 bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-checks}"
data="${DATA:-synthetic}"
python="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
run() {  # run NAME SECONDS COMMAND...: its output in $out/NAME.log, its exit code said
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" "$@" >"$out/$name.log" 2>&1
  echo "$name: exit $?" | tee -a "$out/summary.txt"
}
nvidia-smi --query-gpu=name,memory.total --format=csv >"$out/gpu.txt" 2>&1
run step_cost 240 "$python" benchmarks/step_cost.py --device cuda --data "$data" --steps 20 \
  --only default --only paper --only "default, every loss" --only dkt --compile
run one_gpu_test 150 "$python" -m pytest -o addopts="" -p no:cacheprovider tests/search_tests/run_tests/test_gpu.py
run gpu_trials 240 "$python" benchmarks/gpu_trials.py --data "$data" --epochs 2
