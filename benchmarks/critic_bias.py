"""The critic's output bias at the start of training: zero against the first batch's mean return.

Two short ActorCritic runs on the cached code model of `trl_unittest.models` (default `--budget tiny`, which builds
in a few minutes on one core), the same tasks, seed and steps, differing only in `critic_bias_init`. Reports the
advantage mean and std (per token, over each step's batch) over the first steps, the train reward, and held-out
pass@1 of the base model and of each trained policy (the same held-out tasks and sampling seed).

    python benchmarks/critic_bias.py --steps 50            # ~10 minutes of one core with the tiny model

The last line of the output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="tiny", help="the code model's recipe (trl_unittest.models.BUDGETS)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=16, help="completions per step")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--fresh-count", type=int, default=400, help="fresh train-family exercises to train on")
    p.add_argument("--eval-tasks", type=int, default=100)
    p.add_argument("--eval-n", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    opts = p.parse_args()
    if opts.steps < 1 or opts.batch < 1:
        p.error("--steps and --batch must be >= 1")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_unittest.evaluation import evaluate_model
    from trl_unittest.execution import ExecutionPool, Limits
    from trl_unittest.models import (build_split_datasets, ensure_code_model, fresh_exercise_tasks, heldout_for_model,
                                     recipe_for, set_threads)
    from trl_unittest.quickstart import fit_prompts, spread
    from trl_unittest.rewards import UnitTestReward
    from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

    set_threads()
    data = build_split_datasets(opts.budget, progress=False)
    model_dir = ensure_code_model(opts.budget, train_tasks=data.train, progress=False)
    tok = AutoTokenizer.from_pretrained(model_dir)
    heldout, _ = heldout_for_model(data.heldout, model_dir)
    heldout = spread(heldout, opts.eval_tasks)
    tasks = fresh_exercise_tasks("train", data, model_dir, opts.fresh_count, budget=opts.budget, workers=opts.workers)
    tasks = fit_prompts(tasks, tok, recipe_for(opts.budget).max_positions - 64).shuffle(seed=opts.seed)
    gen = dict(k=(1,), temperature=0.8, max_new_tokens=64, batch_size=32, progress=False, tokenizer=tok)
    result = {"options": vars(opts), "model": model_dir, "heldout_tasks": len(heldout), "rl_tasks": len(tasks),
              "runs": {}}
    with ExecutionPool(num_workers=opts.workers, limits=Limits(test_timeout=1.0, setup_timeout=3.0)) as pool:
        torch.manual_seed(opts.seed)
        base = evaluate_model(AutoModelForCausalLM.from_pretrained(model_dir), heldout, n=opts.eval_n, seed=opts.seed,
                              pool=pool, **gen)
        result["base_heldout_pass@1"] = round(base.pass_at_k["pass@1"], 4)
        print(f"base model: held-out pass@1 {result['base_heldout_pass@1']:.3f}", flush=True)
        for init in ("zero", "first_batch"):
            torch.manual_seed(opts.seed)
            args = ActorCriticConfig(
                output_dir=tempfile.mkdtemp(prefix="critic-bias-"), per_device_train_batch_size=opts.batch,
                max_completion_length=64, learning_rate=opts.lr, max_steps=opts.steps, temperature=0.8,
                logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, gradient_checkpointing=False,
                disable_tqdm=True, lr_scheduler_type="constant", seed=opts.seed, critic_learning_rate=1e-3,
                replay_capacity=256, replay_critic_batch_size=8, critic_bias_init=init)
            trainer = ActorCriticTrainer(model_dir, UnitTestReward(pool=pool), args=args, train_dataset=tasks,
                                         processing_class=tok)
            t = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t
            logs = [h for h in trainer.state.log_history if "advantages/mean" in h]
            mean = [h["advantages/mean"] for h in logs]
            std = [h["advantages/std"] for h in logs]
            after = evaluate_model(trainer.model, heldout, n=opts.eval_n, seed=opts.seed, pool=pool, **gen)
            q = max(1, len(logs) // 5)
            run = {"train_seconds": round(seconds, 1),
                   "advantage_mean_avg": round(sum(mean) / len(mean), 4),
                   "advantage_abs_mean_avg": round(sum(abs(x) for x in mean) / len(mean), 4),
                   "advantage_std_avg": round(sum(std) / len(std), 4),
                   "advantage_mean_first_steps": round(sum(mean[:q]) / q, 4),
                   "advantage_mean_per_step": [round(x, 3) for x in mean],
                   "advantage_std_per_step": [round(x, 3) for x in std],
                   "reward_first_last_fifth": [round(sum(h["reward"] for h in logs[:q]) / q, 4),
                                               round(sum(h["reward"] for h in logs[-q:]) / q, 4)],
                   "critic_init_bias": next((h["critic/init_bias"] for h in trainer.state.log_history
                                             if "critic/init_bias" in h), 0.0),
                   "heldout_pass@1": round(after.pass_at_k["pass@1"], 4)}
            result["runs"][init] = run
            print(f"critic_bias_init={init:>11}: advantage mean {run['advantage_mean_avg']:+.3f} "
                  f"(first {q} steps {run['advantage_mean_first_steps']:+.3f}), "
                  f"|mean| {run['advantage_abs_mean_avg']:.3f}, "
                  f"std {run['advantage_std_avg']:.3f}; reward {run['reward_first_last_fifth']}; held-out pass@1 "
                  f"{run['heldout_pass@1']:.3f}; {seconds:.0f} s", flush=True)
    print(json.dumps(result))
    if opts.out:
        Path(opts.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
