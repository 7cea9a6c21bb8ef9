#!/usr/bin/env bash
# Held-out RL on a model trained on a lent GPU (see benchmarks/RESULTS.md, "RL on a GPU-trained model"):
# 1. train the `medium` code model of trl_unittest.models (27M parameters; tokenizer, pretraining on every
#    train-split stdlib module, SFT) on cuda;
# 2. then, side by side on the same GPU, one process each: the base model's held-out pass@1, and RL with
#    ActorCriticTrainer, TRL's GRPOTrainer and TRL 1.12's PPOTrainer on the same curriculum (default: fresh
#    train-split exercises the model never trained on, those it solves sometimes), each for the same wall-clock
#    budget (RL_SECONDS), followed by held-out pass@1 of the trained policy.
# Needs, carried from the developer machine (all ignored by git):
#   .whl/{common,new,ppo}  datasets + deps, trl (newest), trl 1.12.0 (pip download --no-deps --python-version 3.12)
#   .gpu/cache/data/       the task datasets of `trl_unittest.data.split.build_split_datasets` (copied from the cache)
#   .gpu/bin/bwrap         bubblewrap's binary (`apt-get download bubblewrap`; dpkg -x), for the sandbox
# Results: $OUT/{model,base,actor_critic,grpo,ppo}.json and the tail of each run's log in $OUT/logs.txt (the device
# tool returns at most 8 files). QUICKSTART=1 then also runs `trl-unittest quickstart --budget medium` on the same
# model ($OUT/qs/summary.json; a few minutes more).
# The held-out transfer setting of the CPU model (RESULTS.md, "A model with a slip habit") on the 27M model:
#   BUDGET=medium-bugs RL_EXTRA="--curriculum none --beta 0.0 --fresh-count 2000" bash benchmarks/rl_gpu.sh
# A dry run of the whole script on a CPU (a venv with trl, and PPO_PYTHONPATH pointing at trl 1.12's site-packages):
#   NO_WHEELS=1 BUDGET=tiny DEVICE=cpu RL_SECONDS=5 RL_EXTRA="--eval-tasks 10 --eval-n 2 --probe-samples 2 --batch 8
#   --gen-batch 32" PPO_PYTHONPATH=.venv-ppo/lib/python3.11/site-packages OUT=/tmp/out bash benchmarks/rl_gpu.sh
#   (then delete .gpu/cache/models and .gpu/cache/data/fresh-*: they are the tiny model's, and would travel)
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; LOGS=$(mktemp -d)
RL_SECONDS=${RL_SECONDS:-180} BUDGET=${BUDGET:-medium} DEVICE=${DEVICE:-cuda} PPO_PYTHONPATH=${PPO_PYTHONPATH:-/tmp/site-ppo}
if [ -z "$NO_WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/common/*.whl .whl/new/*.whl || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-ppo .whl/ppo/*.whl || exit 1
  export PYTHONPATH=/tmp/site
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
export PYTHONUNBUFFERED=1 TRL_UNITTEST_CACHE=$PWD/.gpu/cache PATH=$PWD/.gpu/bin:$PATH
python3 - <<'EOF' || exit 1
import torch, transformers, trl
from trl_unittest.execution import ExecutionPool, Program, rewrite_asserts
with ExecutionPool(num_workers=1) as pool:
    tests = rewrite_asserts("assert f(1) == 2\nassert f(2) == 3", "f").tests
    r = pool.run(Program(code="def f(x):\n    return x + 1\n", tests=tests))
    print("sandbox", pool.mode, "verdict", r.status, r.passed, "| torch", torch.__version__,
          "transformers", transformers.__version__, "trl", trl.__version__)
    assert r.passed == 2
EOF
t0=$(date +%s)
python3 -m trl_unittest.models --budget $BUDGET --device $DEVICE 2>&1 | tail -1 | tee "$OUT/model.json" || exit 1
echo "model trained in $(( $(date +%s) - t0 )) s"
common="--budget $BUDGET --device $DEVICE --eval-tasks 0 --eval-n 10 --gen-batch 320 --tasks ${RL_TASKS:-train-family}
        --curriculum between --batch 64 --lr ${RL_LR:-2e-5} --beta 0.05 --steps 2000 --time-budget $RL_SECONDS $RL_EXTRA"
python3 benchmarks/rl_heldout.py $common --workers 8 --prepare || exit 1  # the RL tasks, built once for all three
# each run is cut off after its training budget plus time for probe and evaluations, so that one stuck trainer
# (TRL 1.12's PPO once waited forever on an empty data loader) cannot keep the others' results from being printed
run="timeout --signal=KILL $(( RL_SECONDS + ${RL_SLACK:-240} )) python3"
$run benchmarks/rl_heldout.py $common --steps 0 --workers 2 --out "$OUT/base.json" > "$LOGS/base.log" 2>&1 &
$run benchmarks/rl_heldout.py $common --trainer actor_critic --workers 4 --out "$OUT/actor_critic.json" \
  > "$LOGS/actor_critic.log" 2>&1 &
$run benchmarks/rl_heldout.py $common --trainer grpo --workers 4 --out "$OUT/grpo.json" > "$LOGS/grpo.log" 2>&1 &
PYTHONPATH=$PPO_PYTHONPATH:$PYTHONPATH $run benchmarks/rl_heldout.py $common --trainer ppo --workers 4 \
  --out "$OUT/ppo.json" > "$LOGS/ppo.log" 2>&1 &
wait
echo "all done in $(( $(date +%s) - t0 )) s"
for f in base actor_critic grpo ppo; do
  python3 -c "
import json, sys
try:
    d = json.load(open('$OUT/$f.json'))
except Exception as e:
    sys.exit('$f: no result (' + repr(e) + ')')
print('$f', 'steps', d.get('steps_done'), 'train_s', d.get('train_seconds'), 'probe', d.get('probe'),
      'rl_tasks', d.get('rl_tasks_pass@1'), 'reward q1/q4', d.get('reward_first_last_quarter'),
      'heldout', d['heldout'], {k: round(v['pass@1'], 3) for k, v in d['heldout_by_source'].items()})
" || tail -5 "$LOGS/$f.log"
  { echo "==== $f"; tail -40 "$LOGS/$f.log"; } >> "$OUT/logs.txt"
done
if [ -n "$QUICKSTART" ]; then
  timeout --signal=KILL ${QUICKSTART_SECONDS:-400} python3 -m trl_unittest.cli quickstart --budget $BUDGET \
    --device $DEVICE --out "$OUT/qs" --no-progress 2>&1 | tail -25
  rm -rf "$OUT/qs/model" "$OUT/qs/trainer" "$OUT/qs/eval_base.jsonl" "$OUT/qs/eval_trained.jsonl"
fi
