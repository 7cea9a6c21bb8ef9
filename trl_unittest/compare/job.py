"""One run of a comparison: one variant, one seed. Trains (or not, for `base`), measures held-out pass@1 along the
way and pass@k at the end, and writes ``result.json`` into its run folder.

Runs in the comparison's process, or in its own (``python -m trl_unittest.compare.job SPEC.json``): always so for
PPO, whose TRL 1.12 lives in another environment, and for every method when ``isolate`` is on, so that the peak
memory measured is the run's own.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _replay_without_ast_filter(capacity: int, eviction: str, seed: int):
    """The replay buffer with its AST filter off (the ablation): every completion gets a fingerprint of its own, so
    none is a duplicate of a stored one."""
    from trl_unittest.trainer import ReplayBuffer

    class ReplayWithoutAstFilter(ReplayBuffer):
        def add(self, prompt, completion, prompt_ids, completion_ids, reward, entry_point="", fingerprint=None,
                **kwargs):
            return super().add(prompt, completion, prompt_ids, completion_ids, reward, entry_point,
                               fingerprint=f"offered-{self.offered}", **kwargs)

    return ReplayWithoutAstFilter(capacity, eviction, seed=seed)


def frozen_critic_settings(fraction: float | None, steps: int) -> dict[str, Any]:
    """The paper's ablation as ``ActorCriticConfig`` fields: the critic alone trains on the first ``fraction`` of
    the ``steps``, then is frozen; {} for no fraction (the critic trains in sync)."""
    if not fraction:
        return {}
    return dict(critic_warmup_steps=max(1, round(fraction * steps)), freeze_critic_after_warmup=True)


def _trainer(spec: dict[str, Any], tasks, tokenizer, reward, cuda: bool):
    """(trainer, the policy model object it updates in place) for the spec's method."""
    v = dict(spec["variant"])
    method = v.pop("method")
    for key in ("reward_scheme", "rl_tasks"):
        v.pop(key, None)
    ast_filter = v.pop("replay_ast_filter", True)
    fraction = v.pop("critic_pretrain_fraction", None)
    steps, batch = spec["steps"], spec["batch_size"]
    common = dict(output_dir=str(Path(spec["run_dir"]) / "trainer"), per_device_train_batch_size=batch,
                  learning_rate=spec["learning_rate"], temperature=spec["temperature"], logging_steps=1,
                  report_to="none", save_strategy="no", use_cpu=not cuda, bf16=cuda, disable_tqdm=True, lr_scheduler_type="constant", seed=spec["seed"])
    model = spec["model"]
    train_ds = tasks.shuffle(seed=spec["seed"])
    if method == "ppo":  # TRL 1.12: value model + reference model, the unit-test reward behind a reward "model"
        import copy

        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        from trl_unittest.trainer import UnitTestRewardModel

        args = PPOConfig(**common, total_episodes=steps * batch, response_length=spec["max_completion_length"],
                         kl_coef=spec["beta"], stop_token="eos", missing_eos_penalty=None,
                         num_sample_generations=0, **v)
        policy = AutoModelForCausalLM.from_pretrained(model)
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=copy.deepcopy(policy),
                             reward_model=UnitTestRewardModel(reward, tokenizer, tasks),
                             value_model=AutoModelForSequenceClassification.from_pretrained(model, num_labels=1),
                             train_dataset=train_ds.map(lambda row: tokenizer(row["prompt"]),
                                                        remove_columns=tasks.column_names))
        return trainer, policy
    common.update(max_completion_length=spec["max_completion_length"], max_steps=steps, beta=spec["beta"])
    if method == "actor_critic":
        from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

        v.update(frozen_critic_settings(fraction, steps))
        args = ActorCriticConfig(**common, **v)
        trainer = ActorCriticTrainer(model, reward, args=args, train_dataset=train_ds, processing_class=tokenizer)
        if not ast_filter:
            trainer.replay = _replay_without_ast_filter(args.replay_capacity, args.replay_eviction, args.seed)
    elif method == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        trainer = GRPOTrainer(model, reward, args=GRPOConfig(**common, **v), train_dataset=train_ds,
                              processing_class=tokenizer)
    elif method == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        trainer = RLOOTrainer(model, reward, args=RLOOConfig(**common, **v), train_dataset=train_ds,
                              processing_class=tokenizer)
    else:
        raise ValueError(f"unknown method {method!r}")
    return trainer, trainer.model


def _peak_memory_mib(cuda: bool, own_process: bool) -> tuple[float | None, str]:
    import torch

    if cuda:
        return torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
    if own_process:  # ru_maxrss is in KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
    return None, "not measured (run in the comparison's process: isolate: true measures it)"


def run_job(spec: dict[str, Any], own_process: bool = False) -> dict[str, Any]:
    """Train and evaluate one (variant, seed); returns the result (also written to ``RUN_DIR/result.json``)."""
    from trl_unittest.usage import library_progress_bars

    with library_progress_bars(False):  # a "Loading weights" bar per model load would bury the run's own bar
        return _run_job(spec, own_process)


def _run_job(spec: dict[str, Any], own_process: bool) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    from trl_unittest.data.builder import load_tasks
    from trl_unittest.evaluation import evaluate_model, resolve_device
    from trl_unittest.execution import ExecutionPool, Limits
    from trl_unittest.models import set_threads
    from trl_unittest.quickstart import _quiet_progress
    from trl_unittest.rewards import UnitTestReward

    set_threads()
    torch.manual_seed(spec["seed"])
    device = resolve_device(spec["device"])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    method = spec["variant"]["method"]
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    heldout = load_tasks(spec["heldout"])
    sampling = dict(temperature=spec["temperature"], max_new_tokens=spec["max_completion_length"],
                    batch_size=256 if cuda else 32, seed=spec["seed"], progress=False, device=device)
    result: dict[str, Any] = {"variant": spec["name"], "method": method, "seed": spec["seed"], "key": spec["key"],
                              "heldout_task_ids": list(heldout["task_id"]), "curve": [], "reward_history": []}
    started = time.perf_counter()
    with ExecutionPool(num_workers=spec["workers"], limits=Limits(test_timeout=1.0, setup_timeout=3.0)) as pool:
        def evaluate(model, n, k):
            return evaluate_model(model, heldout, n=n, k=k, tokenizer=tokenizer, pool=pool, **sampling)

        if method == "base":
            final = evaluate(spec["model"], spec["eval_n"], spec["eval_k"])
            result.update(completions=0, steps=0, train_seconds=0.0, samples_per_second=None)
        else:
            scheme = spec["variant"].get("reward_scheme", spec["reward_scheme"])
            tasks = load_tasks(spec["rl_tasks"])
            if len(tasks) < spec["batch_size"]:  # a batch needs that many distinct prompts: repeat the tasks
                import datasets

                tasks = datasets.concatenate_datasets([tasks] * -(-spec["batch_size"] // len(tasks)))
            trainer, policy = _trainer(spec, tasks, tokenizer, UnitTestReward(scheme=scheme, pool=pool), cuda)
            points = spec["curve_points"] + 1  # evenly spaced measurements, the last one being the final evaluation
            at_steps = {round(spec["steps"] * i / points) for i in range(1, points)} - {0, spec["steps"]}
            eval_seconds = [0.0]

            class HeldOutCurve(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    if state.global_step in at_steps:
                        t = time.perf_counter()
                        rep = evaluate(policy, spec["curve_n"], (1,))
                        eval_seconds[0] += time.perf_counter() - t
                        result["curve"].append({"step": state.global_step,
                                                "completions": state.global_step * spec["batch_size"],
                                                "pass@1": rep.pass_at_k["pass@1"],
                                                "per_task": [r["pass@1"] for r in rep.rows]})

            _quiet_progress(trainer, spec["progress"], desc=f"{spec['name']} seed {spec['seed']}")
            trainer.add_callback(HeldOutCurve())
            t = time.perf_counter()
            trainer.train()
            train_seconds = time.perf_counter() - t - eval_seconds[0]
            steps = trainer.state.global_step
            # PPO counts its episodes (completions) itself; the others sample batch_size per step (BUDGET_KEYS)
            completions = int(trainer.state.episode) if method == "ppo" else steps * spec["batch_size"]
            reward_key = "objective/scores" if method == "ppo" else "reward"
            result.update(
                completions=completions, steps=steps, train_seconds=round(train_seconds, 2),
                samples_per_second=completions / train_seconds if train_seconds > 0 else None,
                curve_eval_seconds=round(eval_seconds[0], 2), reward_scheme=scheme, rl_tasks=len(tasks),
                reward_history=[round(h[reward_key], 4) for h in trainer.state.log_history if reward_key in h])
            replay = [h for h in trainer.state.log_history if "replay/unique_ast_ratio" in h]
            if replay:  # the ablations' replay buffer as it ended: entries, and the share of non-duplicate ASTs
                result["replay"] = {"buffer": type(trainer.replay).__name__, "size": replay[-1].get("replay/size"),
                                    "unique_ast_ratio": replay[-1]["replay/unique_ast_ratio"]}
            final = evaluate(policy, spec["eval_n"], spec["eval_k"])
    result["final"] = {"pass_at_k": final.pass_at_k, "metrics": final.metrics, "by_source": final.by_source,
                       "per_task": {key: [r[key] for r in final.rows] for key in final.pass_at_k}}
    result["peak_memory_mib"], result["peak_memory_kind"] = _peak_memory_mib(cuda, own_process)
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["device"] = device
    write_result(run_dir, result)
    return result


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    """Through a temp file and a rename: a run interrupted while writing leaves no half a result behind."""
    tmp = run_dir / f"result.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(run_dir / "result.json")


def _quiet_libraries() -> None:
    """In a run's own process: no library deprecation notices, dataset bars or load reports (PPO's value head is
    new by design) between the comparison's progress lines; errors still show."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    warnings.simplefilter("ignore", FutureWarning)
    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _quiet_libraries()
    spec = json.loads(Path(argv[0]).read_text())
    try:
        run_job(spec, own_process=True)
    except Exception:  # noqa: BLE001 (recorded for the comparison's report, then a failed exit)
        (Path(spec["run_dir"]) / "error.txt").write_text(traceback.format_exc())
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
