#!/usr/bin/env bash
# The recorded comparison of issue 18 (benchmarks/RESULTS.md, README's headline table): base / TRL 1.12 PPO / GRPO /
# RLOO / ActorCritic on the quickstart's model (small-bugs) and tasks, 3 seeds, 32,000 completions per run (the main
# job's 1,000 steps x 32), then the paper's ablations into the same folder (base and actor_critic runs are reused,
# not rerun). Resumable: run it again after an interruption and only unfinished (variant, seed) runs start.
#
#   bash benchmarks/compare.sh [OUT]            # default OUT: compare-out
#   QUICK=1 bash benchmarks/compare.sh /tmp/x   # the CI-sized smoke version (a few minutes; numbers are noise)
#
# Time on the 2-core CPU machine: about 15 minutes per ActorCritic run (the quickstart's RL step), PPO slower, so
# roughly 5 hours for the 15 main runs and 5 more for the 15 ablation runs (device: auto uses a GPU when there is
# one). Needs .venv (newest TRL) and .venv-ppo (trl 1.12.0), as made by .ci/setup.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-compare-out}
PY=.venv/bin/python
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -n "${QUICK:-}" ]; then
  CONFIG=trl_unittest/configs/compare_tiny.yaml
  MAIN=(--methods base ppo grpo rloo actor_critic)
  ABLATIONS=(--methods base actor_critic ac_frozen_critic ac_no_replay ac_replay_no_ast_filter ac_binary_reward)
else
  CONFIG=trl_unittest/configs/compare.yaml
  MAIN=()
  ABLATIONS=(--methods base actor_critic ac_frozen_critic ac_no_replay ac_replay_no_ast_filter ac_binary_reward
             ac_partial_reward ac_with_mined)
fi
nice $PY -m trl_unittest.cli compare --config "$CONFIG" --output_dir "$OUT" "${MAIN[@]}"
cp "$OUT/results.md" "$OUT/results-main.md"; cp "$OUT/results.json" "$OUT/results-main.json"
cp "$OUT/pass1_vs_completions.png" "$OUT/pass1_vs_completions-main.png"
nice $PY -m trl_unittest.cli compare --config "$CONFIG" --output_dir "$OUT" "${ABLATIONS[@]}"
cp "$OUT/results.md" "$OUT/results-ablations.md"; cp "$OUT/results.json" "$OUT/results-ablations.json"
cp "$OUT/pass1_vs_completions.png" "$OUT/pass1_vs_completions-ablations.png"
echo "main: $OUT/results-main.md; ablations: $OUT/results-ablations.md (machine: $(nproc) cores, $(date -u +%F))"
