"""RL on the code model built offline: which tasks, trainer and step size move held-out pass@1?

One run = one RL configuration on a cached model of `trl_unittest.models` (`--budget small-bugs`, the
quickstart's, `small`, or `medium` on a GPU): pick the RL task set, optionally keep only the tasks a probe of the
base model solves sometimes (`--curriculum`), train with ActorCriticTrainer, TRL's GRPOTrainer or TRL 1.12's
PPOTrainer, then measure pass@k on held-out tasks (`--eval-tasks` of them spread evenly, or 0 for all, as the
quickstart; `--eval-n` samples at the training temperature or `--eval-temperature`). Prints one JSON object (also
written to `--out`): the train reward and entropy per step, the time split of the steps (actor_critic), held-out
pass@k per source (`--eval-k`, e.g. 1,10) with a bootstrap interval over tasks and per-task rows, and with
`--paired-with` the paired difference to an earlier run (e.g. the base model's).
`--steps 0` measures the base model only, or with `--policy DIR` a policy saved by an earlier run's `--save-model`
(e.g. at another `--eval-temperature`, on the same held-out tasks). `--mix-with-base 0.5,0.7` also evaluates
weight-space mixes of the trained policy and the base model (`result["mixed"]`, one entry per share).

    python benchmarks/rl_heldout.py --steps 0 --temperature 0.2            # base model, colder sampling
    python benchmarks/rl_heldout.py --trainer actor_critic --curriculum between --lr 5e-5 --beta 0.05
    python benchmarks/rl_heldout.py --trainer grpo --tasks heldout-family --curriculum solved
    python benchmarks/rl_heldout.py --budget medium --device cuda --eval-tasks 0 ...   # benchmarks/rl_gpu.sh
    # the quickstart's RL and evaluation at 600 steps, paired with the base model measured the same way
    Q="--budget small-bugs --tasks train-family --fresh-count 2000 --eval-tasks 0 --eval-n 10 --eval-k 1,10"
    python benchmarks/rl_heldout.py $Q --steps 0 --out base.json
    python benchmarks/rl_heldout.py $Q --steps 600 --paired-with base.json --out rl.json

Task sets: `train` (the quickstart's train split: its SFT data, so largely memorised), `mined:SPECS` (tasks the
builder mines from other code, e.g. installed distributions: real functions SFT never saw), `train-family` (fresh
synthetic exercises of the train split's shapes and vocabulary that the model never trained on: new tasks of the
kind SFT taught), `heldout-family` (fresh exercises of the held-out split's shapes and vocabulary, none sharing a
fingerprint with the evaluated held-out tasks: the closest a disjoint RL set can get to the evaluation
distribution), or a saved task dataset (e.g. the folder of `trl-unittest build`; tasks sharing a fingerprint with a
held-out task are dropped, as from mined ones). `--with-mined SPECS` adds builder tasks mined from other code to the
chosen set (`trl-unittest compare`'s `ac_with_mined`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trl_unittest.compare.prepare import mined_tasks, without_heldout  # noqa: E402 (shared with compare)
from trl_unittest.models import BUDGETS  # noqa: E402 (light: no torch)
from trl_unittest.rewards import SCHEMES  # noqa: E402


class TimeBudgetReached(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trainer", default="actor_critic", choices=["actor_critic", "grpo", "rloo", "ppo"],
                   help="ppo needs trl==1.12.0 (run under .venv-ppo)")
    p.add_argument("--tasks", default="train",
                   help="train | train-family | heldout-family | mined:SPEC[,SPEC...] (builder sources, e.g. "
                        "mined:dist:networkx,dist:click) | a saved task dataset (the folder `trl-unittest build` "
                        "wrote, or mbpp:SPLIT)")
    p.add_argument("--with-mined", default="",
                   help="also train on tasks the builder mines from these sources (compare's ac_with_mined), e.g. "
                        "dist:click,dist:idna; tasks sharing a fingerprint with a held-out task are dropped")
    p.add_argument("--curriculum", default="none", choices=["none", "solved", "between"],
                   help="keep tasks solved in >= 1 probe sample (solved) or in some but not all (between)")
    p.add_argument("--fresh-count", type=int, default=400, help="fresh exercises built for --tasks *-family")
    p.add_argument("--probe-samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--beta", type=float, default=0.0)
    p.add_argument("--positive-weight", type=float, default=1.0,
                   help="actor_critic: positive_advantage_weight (W-REINFORCE below 1)")
    p.add_argument("--reward-scheme", default="partial", choices=SCHEMES,
                   help="UnitTestReward's scheme for RL (evaluation is pass@k either way)")
    p.add_argument("--entropy-coef", type=float, default=0.0,
                   help="actor_critic and grpo: GRPOConfig's entropy_coef (an entropy bonus in the loss)")
    p.add_argument("--batch", type=int, default=32, help="completions per optimiser step")
    p.add_argument("--grpo-generations", type=int, default=4, help="grpo and rloo: completions per prompt")
    p.add_argument("--ac-generations", type=int, default=1, help="actor_critic: completions per prompt")
    p.add_argument("--pass-at-k", type=int, default=1,
                   help="actor_critic: pass@k training's returns (needs --ac-generations >= k; 1: off)")
    p.add_argument("--replay-policy-batch", type=int, default=0,
                   help="actor_critic: replayed passing programs added to the policy loss per step (0: off)")
    p.add_argument("--replay-capacity", type=int, default=256, help="actor_critic: replay buffer capacity")
    p.add_argument("--replay-self-imitation", action="store_true",
                   help="actor_critic: replayed programs weigh 1 with positive advantages only (self-imitation)")
    p.add_argument("--replay-weighting", default="uniform", choices=["uniform", "task", "hard"],
                   help="actor_critic: how programs replayed to the policy are drawn (ActorCriticConfig's "
                        "replay_policy_weighting)")
    p.add_argument("--critic-pretrain-fraction", type=float, default=0.0,
                   help="actor_critic: the paper's ablation: the critic alone trains on this share of the steps, then "
                        "is frozen (as `trl-unittest compare`'s ac_frozen_critic; 0: the critic trains in sync)")
    p.add_argument("--no-replay-ast-filter", action="store_true",
                   help="actor_critic: the replay buffer keeps AST-duplicate programs (compare's "
                        "ac_replay_no_ast_filter)")
    p.add_argument("--baseline", default="critic", choices=["critic", "group"],
                   help="actor_critic: the critic's value or the group's mean return (--ac-generations > 1)")
    p.add_argument("--gradient-accumulation-steps", type=int, default=1)
    p.add_argument("--num-iterations", type=int, default=1,
                   help="updates per generated batch for actor_critic / grpo (TRL's num_iterations)")
    p.add_argument("--ppo-epochs", type=int, default=4, help="PPO's num_ppo_epochs (TRL's default: 4)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--eval-temperature", type=float, default=None,
                   help="sampling temperature of the evaluations (default: --temperature, the training one)")
    p.add_argument("--eval-n", type=int, default=8)
    p.add_argument("--eval-k", default="1",
                   help="k values of held-out pass@k, comma-separated (each <= --eval-n); the quickstart's: 1,10 "
                        "with --eval-n 10 --eval-tasks 0")
    p.add_argument("--paired-with", default=None,
                   help="an earlier result's JSON (e.g. --steps 0, the base model) evaluated on the same tasks: also "
                        "report the paired difference of held-out pass@k with a bootstrap interval over tasks")
    p.add_argument("--eval-tasks", type=int, default=100, help="held-out tasks evaluated, spread evenly (0: all)")
    p.add_argument("--budget", default="small", choices=sorted(BUDGETS), help="the model's recipe")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (bf16 training)")
    p.add_argument("--workers", type=int, default=2, help="sandbox workers")
    p.add_argument("--gen-batch", type=int, default=32, help="sequences per generate() call in evaluation")
    p.add_argument("--time-budget", type=float, default=0,
                   help="stop training after this many seconds (0: run all --steps); the evaluation still runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--save-model", default=None,
                   help="also save the trained policy (and tokenizer) here, e.g. to evaluate it again with more samples")
    p.add_argument("--policy", default=None,
                   help="with --steps 0: evaluate this saved policy (an earlier --save-model DIR) instead of the base")
    p.add_argument("--mix-with-base", default="",
                   help="also evaluate weight mixes of the trained policy and the base model, comma-separated shares "
                        "of the trained weights, e.g. 0.5,0.7 (WiSE-FT, Wortsman et al. 2022): result['mixed']")
    p.add_argument("--prepare", action="store_true",
                   help="only build (or find in the cache) the datasets, the model and the RL tasks, then exit")
    opts = p.parse_args()
    if opts.trainer == "rloo" and opts.entropy_coef:
        p.error("--entropy-coef: TRL's RLOOConfig has no entropy bonus (drop it, or use --trainer grpo)")
    with_mined = [x.strip() for x in opts.with_mined.split(",") if x.strip()]
    if opts.with_mined and (not with_mined or opts.tasks.startswith("mined:")):
        p.error(f"--with-mined {opts.with_mined!r}: expected builder sources (e.g. dist:click,dist:idna) added to a "
                "--tasks set that is not mined:... itself")
    from trl_unittest.data.cli import BadInput, check_source  # light: no torch
    from trl_unittest.usage import UsageError, check_task_spec

    if opts.tasks not in ("train", "train-family", "heldout-family") and not opts.tasks.startswith("mined:"):
        try:
            check_task_spec(opts.tasks, flag="--tasks")
        except UsageError as e:
            p.error(str(e))

    try:  # before the model and the datasets are built, not after
        for spec in with_mined:
            check_source(spec, flag="--with-mined")
        for spec in opts.tasks[len("mined:"):].split(",") if opts.tasks.startswith("mined:") else []:
            check_source(spec, flag="--tasks")
    except BadInput as e:
        p.error(str(e))
    if opts.trainer != "actor_critic" and (opts.critic_pretrain_fraction or opts.no_replay_ast_filter):
        p.error("--critic-pretrain-fraction and --no-replay-ast-filter are ActorCritic ablations (drop them, or use "
                "--trainer actor_critic)")
    if not 0.0 <= opts.critic_pretrain_fraction < 1.0:
        p.error(f"--critic-pretrain-fraction {opts.critic_pretrain_fraction}: expected a share of the steps in [0, 1)")
    try:
        eval_k = tuple(sorted({int(x) for x in opts.eval_k.split(",") if x.strip()}))
    except ValueError:
        p.error(f"--eval-k {opts.eval_k!r}: expected comma-separated whole numbers, e.g. 1,10")
    if not eval_k or min(eval_k) < 1 or max(eval_k) > opts.eval_n:
        p.error(f"--eval-k {opts.eval_k!r}: each k must be between 1 and --eval-n ({opts.eval_n})")
    try:
        mix_shares = [float(x) for x in opts.mix_with_base.split(",") if x.strip()]
    except ValueError:
        p.error(f"--mix-with-base {opts.mix_with_base!r}: expected comma-separated numbers in (0, 1), e.g. 0.5,0.7")
    if any(not 0.0 < a < 1.0 for a in mix_shares) or (mix_shares and not opts.steps):
        p.error(f"--mix-with-base {opts.mix_with_base!r}: shares in (0, 1), and only with --steps > 0")
    if opts.policy is not None and (opts.steps or not (Path(opts.policy) / "config.json").is_file()):
        p.error(f"--policy {opts.policy!r}: needs --steps 0 and a folder saved by --save-model (with config.json)")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from trl_unittest.evaluation import evaluate_model
    from trl_unittest.execution import ExecutionPool, Limits
    from trl_unittest.data.exercises import fresh_exercise_tasks
    from trl_unittest.data.split import build_split_datasets, heldout_for_model
    from trl_unittest.models import ensure_code_model, recipe_for, set_threads
    from trl_unittest.quickstart import fit_prompts, spread
    from trl_unittest.rewards import UnitTestReward

    set_threads()
    torch.manual_seed(opts.seed)
    cuda = opts.device.startswith("cuda")
    data = build_split_datasets(opts.budget, progress=False)
    model_dir = ensure_code_model(opts.budget, train_tasks=data.train, progress=False, device=opts.device)
    tok = AutoTokenizer.from_pretrained(model_dir)
    heldout, dropped = heldout_for_model(data.heldout, model_dir)
    heldout = spread(heldout, opts.eval_tasks) if opts.eval_tasks else heldout
    tasks, mined_dropped, mined_added, too_long = None, None, 0, 0
    if opts.steps:
        if opts.tasks == "train":
            tasks = data.train
        elif opts.tasks in ("train-family", "heldout-family"):
            tasks = fresh_exercise_tasks(opts.tasks.split("-")[0], data, model_dir, opts.fresh_count,
                                         budget=opts.budget, workers=opts.workers)
        elif opts.tasks.startswith("mined:") and len(opts.tasks) > len("mined:"):
            tasks, mined_dropped = mined_tasks(opts.tasks[len("mined:"):].split(","), data.heldout, opts.workers)
        else:  # a saved task dataset (checked above)
            from trl_unittest.evaluation import load_task_source

            tasks, mined_dropped = without_heldout(load_task_source(opts.tasks), data.heldout)
        if with_mined:
            import datasets

            extra, dropped_extra = mined_tasks(with_mined, data.heldout, opts.workers)
            mined_dropped = (mined_dropped or 0) + dropped_extra
            tasks, mined_added = datasets.concatenate_datasets([tasks, extra.cast(tasks.features)]), len(extra)
        before = len(tasks)
        tasks = fit_prompts(tasks, tok, recipe_for(opts.budget).max_positions - 64)
        too_long = before - len(tasks)
    if opts.prepare:
        print(json.dumps({"model": model_dir, "heldout_tasks": len(heldout), "rl_tasks": len(tasks or []),
                          "rl_tasks_dropped_too_long": too_long, "mined_dropped_as_heldout": mined_dropped}))
        return
    base_model = AutoModelForCausalLM.from_pretrained(opts.policy or model_dir)  # fp32, like trained ones
    base_model.to(opts.device)
    eval_temperature = opts.temperature if opts.eval_temperature is None else opts.eval_temperature
    gen = dict(k=(1,), temperature=eval_temperature, max_new_tokens=64, batch_size=opts.gen_batch, progress=False,
               tokenizer=tok)
    result = {"options": vars(opts), "model": opts.policy or model_dir, "heldout_tasks": len(heldout),
              "heldout_dropped_as_trained_on": dropped, "mined_dropped_as_heldout": mined_dropped,
              "rl_tasks": len(tasks or []), "rl_tasks_mined_added": mined_added, "rl_tasks_dropped_too_long": too_long}

    def record_heldout(report, result: dict = result) -> None:
        """pass@k overall and per source, a 95% bootstrap interval over tasks per k (one seed: the interval is
        the benchmark's task sampling and the evaluation's own sampling, not training noise), per-task rows."""
        from trl_unittest.compare.stats import bootstrap_ci, paired_difference_ci

        result["heldout"], result["heldout_by_source"] = report.pass_at_k, report.by_source
        result["heldout_outcomes"] = report.metrics  # shares of samples passing, not compiling, ... (issue 22)
        rows = [{"task_id": r["task_id"], **{f"pass@{x}": r[f"pass@{x}"] for x in eval_k}} for r in report.rows]
        result["heldout_ci"] = {f"pass@{x}": bootstrap_ci([r[f"pass@{x}"] for r in rows]).to_dict() for x in eval_k}
        result["heldout_rows"] = rows
        if opts.paired_with:  # read now, not at the start: the base model's run may still be going then
            try:
                theirs = {r["task_id"]: r for r in json.loads(Path(opts.paired_with).read_text())["heldout_rows"]}
            except (OSError, ValueError, KeyError) as e:
                result["paired_error"] = f"{opts.paired_with}: not a result of this script with heldout_rows ({e})"
                return
            missing = [r["task_id"] for r in rows if r["task_id"] not in theirs]
            if missing:
                result["paired_error"] = f"{len(missing)} tasks not in {opts.paired_with} (e.g. {missing[0]})"
                return
            result["paired_with"] = opts.paired_with
            result["paired_difference"] = {
                key: paired_difference_ci([r[key] for r in rows], [theirs[r["task_id"]][key] for r in rows]).to_dict()
                for key in (f"pass@{x}" for x in eval_k) if all(key in theirs[r["task_id"]] for r in rows)}

    def finish() -> None:
        print(json.dumps(result))
        if opts.out:
            Path(opts.out).write_text(json.dumps(result, indent=1))

    with ExecutionPool(num_workers=opts.workers, limits=Limits(test_timeout=1.0, setup_timeout=3.0)) as pool:
        if opts.steps == 0:
            t = time.perf_counter()
            base = evaluate_model(base_model, heldout, n=opts.eval_n, seed=opts.seed, pool=pool,
                                  **{**gen, "k": eval_k})
            record_heldout(base)
            result["eval_seconds"] = round(time.perf_counter() - t, 1)
            finish()
            return
        if opts.curriculum != "none":
            probe = evaluate_model(base_model, tasks, n=opts.probe_samples, seed=opts.seed + 1, pool=pool, **gen)
            keep = [i for i, r in enumerate(probe.rows)
                    if r["correct"] > 0 and (opts.curriculum == "solved" or r["correct"] < r["n"])]
            result["probe"] = {"tasks": len(tasks), "kept": len(keep), "pass@1": probe.pass_at_k["pass@1"],
                               "kept_pass@1": sum(probe.rows[i]["correct"] / probe.rows[i]["n"] for i in keep)
                               / max(len(keep), 1)}
            if not keep:
                result["error"] = f"the curriculum kept no task (probe pass@1 {probe.pass_at_k['pass@1']:.3f})"
                finish()
                sys.exit(1)
            tasks = tasks.select(keep)
            # the probe's own pass@1 on the tasks it selected is biased (selection on the same samples): measure the
            # base model again on fresh samples, with the seed the trained policy is measured with below
            fresh = evaluate_model(base_model, tasks, n=opts.probe_samples, seed=opts.seed + 2, pool=pool, **gen)
            result["probe"]["kept_pass@1_fresh"] = fresh.pass_at_k["pass@1"]
        rl_tasks = tasks
        if len(tasks) < opts.batch:  # a batch needs that many distinct prompts: repeat the tasks to fill one
            import datasets

            tasks = datasets.concatenate_datasets([tasks] * -(-opts.batch // len(tasks)))
            result["rl_dataset_repeated_to"] = len(tasks)
        # the mixes need the base weights after training (on the CPU: a copy in the device's memory is not needed)
        base_weights = {name: w.cpu() for name, w in base_model.state_dict().items()} if mix_shares else None
        del base_model
        common = dict(output_dir=tempfile.mkdtemp(prefix="rl-heldout-"), per_device_train_batch_size=opts.batch,
                      max_completion_length=64, learning_rate=opts.lr, max_steps=opts.steps,
                      temperature=opts.temperature, beta=opts.beta, logging_steps=1, report_to="none",
                      save_strategy="no", use_cpu=not cuda, bf16=cuda, gradient_checkpointing=False,
                      disable_tqdm=True, lr_scheduler_type="constant", seed=opts.seed,
                      gradient_accumulation_steps=opts.gradient_accumulation_steps)
        reward = UnitTestReward(opts.reward_scheme, pool=pool)
        if opts.trainer == "actor_critic":
            from trl_unittest.compare.job import frozen_critic_settings
            from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

            frozen = frozen_critic_settings(opts.critic_pretrain_fraction, opts.steps)  # compare's ac_frozen_critic
            args = ActorCriticConfig(**common, critic_learning_rate=1e-3, replay_capacity=opts.replay_capacity,
                                     replay_critic_batch_size=8 if opts.replay_capacity else 0,
                                     num_iterations=opts.num_iterations, **frozen,
                                     positive_advantage_weight=opts.positive_weight,
                                     num_generations=opts.ac_generations, pass_at_k=opts.pass_at_k,
                                     baseline=opts.baseline, replay_policy_batch_size=opts.replay_policy_batch,
                                     replay_policy_weighting=opts.replay_weighting,
                                     replay_self_imitation=opts.replay_self_imitation,
                                     entropy_coef=opts.entropy_coef)
            trainer = ActorCriticTrainer(model_dir, reward, args=args, train_dataset=tasks.shuffle(seed=opts.seed),
                                         processing_class=tok)
            if opts.no_replay_ast_filter:
                from trl_unittest.compare.job import _replay_without_ast_filter

                trainer.replay = _replay_without_ast_filter(args.replay_capacity, args.replay_eviction, args.seed)
        elif opts.trainer == "grpo":
            from trl import GRPOConfig, GRPOTrainer

            args = GRPOConfig(**common, num_generations=opts.grpo_generations, num_iterations=opts.num_iterations,
                              entropy_coef=opts.entropy_coef)
            trainer = GRPOTrainer(model_dir, reward, args=args, train_dataset=tasks.shuffle(seed=opts.seed),
                                  processing_class=tok)
        elif opts.trainer == "rloo":  # REINFORCE with a leave-one-out baseline over each prompt's group
            from trl import RLOOConfig, RLOOTrainer

            args = RLOOConfig(**common, num_generations=opts.grpo_generations, num_iterations=opts.num_iterations)
            trainer = RLOOTrainer(model_dir, reward, args=args, train_dataset=tasks.shuffle(seed=opts.seed),
                                  processing_class=tok)
        else:  # TRL 1.12's PPOTrainer: value model + reference model, the unit-test reward behind a reward "model"
            import copy

            from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
            from trl.experimental.ppo import PPOConfig, PPOTrainer

            from trl_unittest.trainer import UnitTestRewardModel

            for key in ("max_completion_length", "max_steps", "beta", "lr_scheduler_type"):
                common.pop(key)
            args = PPOConfig(**common, total_episodes=opts.steps * opts.batch * opts.gradient_accumulation_steps,
                             response_length=64, num_ppo_epochs=opts.ppo_epochs, num_mini_batches=1, kl_coef=opts.beta,
                             stop_token="eos", missing_eos_penalty=None, num_sample_generations=0,
                             lr_scheduler_type="constant")
            policy = AutoModelForCausalLM.from_pretrained(model_dir)
            trainer = PPOTrainer(
                args=args, processing_class=tok, model=policy, ref_model=copy.deepcopy(policy),
                reward_model=UnitTestRewardModel(reward, tok, tasks),
                value_model=AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1),
                train_dataset=tasks.shuffle(seed=0).map(lambda row: tok(row["prompt"]),
                                                        remove_columns=tasks.column_names))
        t = time.perf_counter()

        class TimeBudget(TrainerCallback):  # an exception, not should_training_stop: TRL 1.12's PPO loop ignores that
            def on_step_end(self, args, state, control, **kwargs):
                if opts.time_budget and time.perf_counter() - t > opts.time_budget:
                    raise TimeBudgetReached

        class ProgressLines(TrainerCallback):  # one stderr line every 5% of the steps: a long run shows it is alive
            def on_log(self, args, state, control, logs=None, **kwargs):
                every = max(1, state.max_steps // 20)
                reward = (logs or {}).get("reward", (logs or {}).get("objective/scores"))
                if reward is not None and (state.global_step % every == 0 or state.global_step == state.max_steps):
                    elapsed = time.perf_counter() - t
                    eta = elapsed / state.global_step * (state.max_steps - state.global_step)
                    print(f"step {state.global_step}/{state.max_steps}, reward {reward:+.3f}, elapsed {elapsed:.0f} s, "
                          f"ETA {eta:.0f} s", file=sys.stderr, flush=True)

        trainer.add_callback(TimeBudget())
        trainer.add_callback(ProgressLines())
        try:
            trainer.train()
        except TimeBudgetReached:  # the model was updated in place; evaluate what it has learned so far
            pass
        result["train_seconds"] = round(time.perf_counter() - t, 1)
        result["steps_done"] = trainer.state.global_step
        if opts.trainer == "actor_critic":  # seconds per part of the steps (generation, reward, policy, critic, ...)
            result["rl_time_split"] = trainer.step_timer.split()
        reward_key, entropy_key = ("objective/scores", "policy/entropy_avg") if opts.trainer == "ppo" \
            else ("reward", "entropy")
        history = [h for h in trainer.state.log_history if reward_key in h]
        result["reward"] = [round(h[reward_key], 3) for h in history]
        result["entropy"] = [round(h.get(entropy_key, float("nan")), 3) for h in history]
        model = policy if opts.trainer == "ppo" else trainer.model
        if opts.save_model:
            model.save_pretrained(opts.save_model)
            tok.save_pretrained(opts.save_model)
            result["saved_model"] = opts.save_model
        if opts.curriculum != "none":  # did the policy learn the tasks it trained on?
            learned = evaluate_model(model, rl_tasks, n=opts.probe_samples, seed=opts.seed + 2, pool=pool, **gen)
            result["rl_tasks_pass@1"] = [round(result["probe"]["kept_pass@1_fresh"], 3),
                                         round(learned.pass_at_k["pass@1"], 3)]
        q = max(1, len(history) // 4)
        result["reward_first_last_quarter"] = [round(sum(result["reward"][:q]) / q, 3),
                                               round(sum(result["reward"][-q:]) / q, 3)]
        t = time.perf_counter()
        after = evaluate_model(model, heldout, n=opts.eval_n, seed=opts.seed, pool=pool, **{**gen, "k": eval_k})
        record_heldout(after)
        result["eval_seconds"] = round(time.perf_counter() - t, 1)
        if mix_shares:  # weight-space mixes of base and trained: do they keep pass@1's gain and the base's pass@10?
            result["mixed"] = {}
            trained = {name: w.detach().clone() for name, w in model.state_dict().items()}
            with torch.no_grad():
                for share in mix_shares:
                    model.load_state_dict({name: torch.lerp(base_weights[name].to(w), w, share)
                                           if w.is_floating_point() else w for name, w in trained.items()})
                    report = evaluate_model(model, heldout, n=opts.eval_n, seed=opts.seed, pool=pool,
                                            **{**gen, "k": eval_k})
                    record_heldout(report, result["mixed"].setdefault(str(share), {}))
                model.load_state_dict(trained)
    finish()


if __name__ == "__main__":
    main()
