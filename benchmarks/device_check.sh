#!/usr/bin/env bash
# The GPU check, run on a lent CUDA machine (see benchmarks/RESULTS.md): bf16 training steps of ActorCriticTrainer
# against TRL 1.12's PPOTrainer and TRL's GRPOTrainer on a randomly initialised model with Qwen2.5-0.5B's shapes
# and vocabulary size. The machine has torch/transformers/accelerate but no trl or datasets: they come as wheels
# in .whl/{common,new,ppo} (pip download --no-deps --python-version 3.12 ...), trl 1.12 in its own target dir.
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/common/*.whl .whl/new/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-ppo .whl/ppo/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
printf '#!/bin/sh\nPYTHONPATH=/tmp/site-ppo:$PYTHONPATH exec python3 "$@"\n' > /tmp/ppo-python && chmod +x /tmp/ppo-python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, accelerate, datasets, trl, pyarrow; print('torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'trl', trl.__version__, 'pyarrow', pyarrow.__version__)" || exit 1
/tmp/ppo-python -c "import trl.experimental.ppo, trl; print('ppo trl', trl.__version__)" || exit 1
python3 benchmarks/trainer.py --device cuda --bf16 --arch qwen2 --size 0.5b --vocab-size 32000 --pad-vocab-to 151936 \
  --batch ${BATCH:-32} --length ${LENGTH:-128} --steps ${STEPS:-5} --methods actor_critic,ppo,grpo,ppo_1epoch \
  --ppo-python /tmp/ppo-python "$@" 2>&1 | tee "$OUT/trainer_cuda.log"
