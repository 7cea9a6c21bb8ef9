#!/usr/bin/env bash
# GPU smoke of `trl-unittest compare`: every method (TRL 1.12 PPO included) and the no-AST-filter ablation, one seed,
# each run in its own process, bf16 on cuda, peak memory from torch.cuda. Not a result: it checks the cuda path.
#   here:             bash benchmarks/compare_gpu_check.sh prepare   # tiny model, inputs, wheels -> .devcarry/ .whl/
#   on the device:    bash benchmarks/compare_gpu_check.sh run       # carry: [".devcarry", ".whl"]
# .devcarry/ and .whl/ must be git-ignored (.git/info/exclude). Wheels as in benchmarks/device_check.sh.
set -o pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
  set -e
  PYTHONPATH=$PWD .venv/bin/python -m trl_unittest.cli compare --config trl_unittest/configs/compare_tiny.yaml \
    --methods base --seeds 0 --output_dir /tmp/compare-gpu-inputs --progress false >/dev/null
  MODEL=$(.venv/bin/python -c "import json; print(json.load(open('/tmp/compare-gpu-inputs/inputs/inputs.json'))['model'])")
  rm -rf .devcarry && mkdir -p .devcarry && cp -r /tmp/compare-gpu-inputs/inputs .devcarry/inputs
  cp -r "$MODEL" .devcarry/model && echo "$MODEL" > .devcarry/model_path
  ls .whl/common/*.whl .whl/new/*.whl .whl/ppo/*.whl >/dev/null  # datasets, dill, multiprocess; trl 1.16; trl 1.12
  exit 0
fi
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/common/*.whl .whl/new/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-ppo .whl/ppo/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 TRL_EXPERIMENTAL_SILENCE=1
printf '#!/bin/sh\nPYTHONPATH=/tmp/site-ppo:$PYTHONPATH exec python3 "$@"\n' > /tmp/ppo-python && chmod +x /tmp/ppo-python
MODEL=$(cat .devcarry/model_path); mkdir -p "$(dirname "$MODEL")" /tmp/compare-gpu-inputs /tmp/compare-gpu
cp -r .devcarry/model "$MODEL"  # inputs.json names the model and task sets by these absolute paths
cp -r .devcarry/inputs /tmp/compare-gpu-inputs/inputs; cp -r .devcarry/inputs /tmp/compare-gpu/inputs
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 420 python3 -m trl_unittest.cli compare --config trl_unittest/configs/compare_tiny.yaml \
  --methods base ppo grpo rloo actor_critic ac_replay_no_ast_filter --seeds 0 --device cuda --isolate true \
  --ppo_python /tmp/ppo-python --output_dir /tmp/compare-gpu --progress false 2>&1 | grep -v -E "Warning|warn\(" \
  | tee "$OUT/log.txt"
cp /tmp/compare-gpu/results.md /tmp/compare-gpu/results.json /tmp/compare-gpu/pass1_vs_completions.png "$OUT/"
for f in /tmp/compare-gpu/runs/*/seed0/error.txt; do [ -f "$f" ] && { echo "== $f"; tail -20 "$f"; }; done \
  | tee -a "$OUT/log.txt"
