#!/usr/bin/env bash
# The GPU check, one prepared script for a lent CUDA machine (an H200 here): bf16 training steps of
# ActorCriticTrainer (beta 0, and beta > 0 with the reference model on) against TRL 1.12's PPOTrainer and TRL's
# GRPOTrainer, on a randomly initialised Qwen2 model with Qwen2.5-0.5B's layer shapes and vocabulary size (built from
# a config, nothing downloaded). Writes the table (trainer.md), the JSON (trainer.json) and the log to $OUT.
#
# The machine has torch/transformers/accelerate/pyarrow but no trl or datasets: they travel as wheels in
# .whl/common (datasets, dill, multiprocess), .whl/new (trl, newest) and .whl/ppo (trl 1.12.0), made with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .whl/<dir> NAME==VERSION
# and carried with the call:  run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=480)
# Budget: about 4-5 minutes (model build ~30 s, four trainer processes of 1 warm-up + STEPS timed steps each);
# every trainer stops at TRAINER_TIMEOUT seconds, so the script ends well inside 7 minutes.
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
for d in common new ppo; do
  ls .whl/$d/*.whl >/dev/null 2>&1 || { echo "missing wheels in .whl/$d: carry .whl (see the header of $0)"; exit 2; }
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/common/*.whl .whl/new/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-ppo .whl/ppo/*.whl || exit 1
export PYTHONPATH=/tmp/site
# trl 1.12 (PPO) in front of the newest trl for the PPO process only
printf '#!/bin/sh\nPYTHONPATH=/tmp/site-ppo:$PYTHONPATH exec python3 "$@"\n' > /tmp/ppo-python && chmod +x /tmp/ppo-python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, accelerate, datasets, trl; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'trl', trl.__version__)" | tee -a "$OUT/gpu.txt" || exit 1
/tmp/ppo-python -c "import trl.experimental.ppo, trl; print('ppo trl', trl.__version__)" | tee -a "$OUT/gpu.txt" || exit 1
# batch 96: generation amortises (at batch 32 every trainer waits on transformers' generation, see RESULTS.md)
timeout "${TOTAL_TIMEOUT:-390}" python3 benchmarks/trainer.py --device cuda --bf16 --arch qwen2 --size 0.5b \
  --vocab-size 32000 --pad-vocab-to 151936 --batch "${BATCH:-96}" --length "${LENGTH:-128}" --steps "${STEPS:-3}" \
  --methods "${METHODS:-actor_critic,actor_critic_kl,ppo,grpo}" --beta "${BETA:-0.04}" --ppo-python /tmp/ppo-python \
  --worker-timeout "${WORKER_TIMEOUT:-120}" --out "$OUT" "$@" 2>&1 | tee "$OUT/trainer_cuda.log"
rc=$?
echo "device_check: rc $rc, $(( $(date +%s) - start )) s" | tee -a "$OUT/trainer_cuda.log"
exit $rc
