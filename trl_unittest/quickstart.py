"""The main job: data -> reward -> training -> a better pass@k, on embedded defaults, on a CPU, in minutes.

``trl-unittest quickstart [--budget small-bugs|small|tiny|medium] [--out DIR]``:

1. build the task datasets (the standard library + the synthetic exercises of :mod:`trl_unittest.data.exercises`,
   split into train and held-out sources by :mod:`trl_unittest.data.split`; cached);
2. train (or find in the cache) the small code model of :mod:`trl_unittest.models`;
3. evaluate it on held-out tasks (pass@k, per source);
4. train it with :class:`~trl_unittest.trainer.ActorCriticTrainer` and :class:`~trl_unittest.rewards.UnitTestReward`
   on train-split tasks (fresh exercises it never trained on, or the train split's own tasks narrowed by a
   curriculum), measuring held-out pass@1 at a few points during training;
5. evaluate again, print a before/after table and where the RL steps' time went (generation, reward, policy,
   critic, replay: ``rl_time_split``), write ``OUT/training.png`` (reward and pass@1 over training),
   ``OUT/summary.json``, per-task ``OUT/eval_{base,trained}.jsonl`` and the trained model in ``OUT/model``.

Each step is also a subcommand: ``trl-unittest build``, ``trl-unittest train --config ...``, ``trl-unittest eval``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trl_unittest.rewards import SCHEMES, UnitTestReward


@dataclass
class Budget:
    model: str  # a budget of trl_unittest.models.BUDGETS
    eval_tasks: int  # held-out tasks evaluated (an even spread over the held-out set)
    n: int  # samples per task
    k: tuple[int, ...]
    steps: int  # RL optimiser steps
    checkpoints: int  # held-out pass@1 measurements during training (besides before/after)
    checkpoint_tasks: int  # held-out tasks for those measurements
    batch_size: int
    max_completion_length: int
    learning_rate: float
    temperature: float = 0.8
    beta: float = 0.0  # KL penalty towards the starting model (TRL's `beta`)
    probe_samples: int = 8  # curriculum: RL on the train tasks that the base model solves in some but not all of
                            # these samples (0: train on every task). Always-solved tasks carry no learning signal
                            # (R - V is ~0 once the critic knows them) and never-solved ones give a model this small
                            # none either; measured: on the mixed train set the reward stayed flat, on the
                            # in-between tasks it rises (benchmarks/RESULTS.md, "RL on the small model")
    rl_tasks: str = "train"  # "train": the train split's tasks (SFT data, narrowed by the curriculum); "fresh":
                             # `fresh_count` new train-split exercises the model never trained on
                             # (data.exercises.fresh_exercise_tasks): the task set that moves held-out pass@1
    fresh_count: int = 0
    reward_scheme: str = "partial"  # UnitTestReward's scheme during RL (evaluation is pass@k either way)
    replay_policy_batch_size: int = 0  # ActorCriticConfig's: passing replayed programs in the policy loss per step

    def __post_init__(self):
        if self.reward_scheme not in SCHEMES:
            raise ValueError(f"Budget.reward_scheme {self.reward_scheme!r}: expected one of {SCHEMES}")
        if self.rl_tasks not in ("train", "fresh"):
            raise ValueError(f"Budget.rl_tasks {self.rl_tasks!r}: expected 'train' or 'fresh'")
        if self.rl_tasks == "fresh" and self.fresh_count < 1:
            raise ValueError(f"Budget.rl_tasks 'fresh' needs fresh_count >= 1, got {self.fresh_count}")


BUDGETS = {
    "tiny": Budget(model="tiny", eval_tasks=40, n=4, k=(1, 4), steps=8, checkpoints=1, checkpoint_tasks=24,
                   batch_size=16, max_completion_length=48, learning_rate=2e-4, probe_samples=4),
    "small": Budget(model="small", eval_tasks=100, n=10, k=(1, 10), steps=240, checkpoints=3, checkpoint_tasks=40,
                    batch_size=32, max_completion_length=64, learning_rate=5e-5, beta=0.05),
    # the default: the model with a slip habit (models.BUDGETS["small-bugs"]), RL on the ~1,200 tasks built from 2,000
    # fresh train-split exercises without a KL penalty: removed the habit on held-out tasks too on the builds of
    # 2026-11-26 and 12-05 (benchmarks/RESULTS.md, "A model with a slip habit"), less so on the rebuild of 12-06
    # ("three RL seeds"); every held-out task. 1,000 steps, not the 1,600 of before: over 3 RL seeds held-out pass@1
    # +0.035 [+0.003, +0.065] against +0.039, a paired difference of -0.004 [-0.030, +0.023], in 62% of the RL time
    # (RESULTS.md, "1,000 steps")
    "small-bugs": Budget(model="small-bugs", eval_tasks=10_000, n=10, k=(1, 10), steps=1000, checkpoints=3,
                         checkpoint_tasks=60, batch_size=32, max_completion_length=64,
                         # half the step of before (5e-5): over 3 RL seeds on the 12-06 build, the same held-out
                         # pass@1 gain (+0.039 [-0.003, +0.079] against +0.041) and a third of the pass@10 loss
                         # (-0.016 [-0.053, +0.015] against -0.046 [-0.091, -0.003]; RESULTS.md, "learning rate")
                         learning_rate=2.5e-5, beta=0.0,
                         probe_samples=0, rl_tasks="fresh", fresh_count=2000,
                         # CodeRL's scheme, not partial credit: over 3 RL seeds on the 12-06 build, held-out pass@1
                         # +0.041 [+0.001, +0.079] against partial's +0.006 (RESULTS.md, "three RL seeds")
                         reward_scheme="coderl",
                         # the replay buffer's passing programs in the policy loss (8 a step, importance-weighted):
                         # over 3 RL seeds held-out pass@1 +0.062 [+0.031, +0.093] against +0.035 without (paired
                         # +0.027 [+0.003, +0.051]), pass@10 kept (-0.003 [-0.028, +0.021] against -0.020); RL steps
                         # ~18% slower (RESULTS.md, "replayed to the policy")
                         replay_policy_batch_size=8),
    # the 27M-parameter model, for a GPU (`--device cuda`): every held-out task, larger batches, a smaller step
    "medium": Budget(model="medium", eval_tasks=10_000, n=10, k=(1, 10), steps=240, checkpoints=3,
                     checkpoint_tasks=40, batch_size=64, max_completion_length=64, learning_rate=2e-5, beta=0.05),
}


def spread(ds, count: int):
    """``count`` rows spread evenly over the dataset (deterministic; keeps the mix of sources)."""
    if count >= len(ds):
        return ds
    step = len(ds) / count
    return ds.select(sorted({int(i * step) for i in range(count)}))


def fit_prompts(ds, tokenizer, max_prompt_tokens: int):
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in ds["prompt"]]
    return ds.select([i for i, n in enumerate(lengths) if n <= max_prompt_tokens])


def _pass1_callback(eval_ds, every: int, n: int, temperature: float, tokenizer, pool, record: list):
    from transformers import TrainerCallback

    from trl_unittest.evaluation import evaluate_model

    class PassAtOne(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every and state.global_step % every == 0 and state.global_step < state.max_steps:
                rep = evaluate_model(model, eval_ds, n=n, k=(1,), temperature=temperature, max_new_tokens=64,
                                     tokenizer=tokenizer, pool=pool, progress=False, batch_size=32)
                record.append({"step": state.global_step, "pass@1": rep.pass_at_k["pass@1"]})

    return PassAtOne()


class _ProgressLines:
    """``--no-progress``: one line every ``every`` percent of a long step (done / total, elapsed, ETA, and what the
    caller adds, e.g. the reward) instead of progress bars; callable as ``(done, total, **extra)``."""

    def __init__(self, console, what: str, every: int = 5):
        self.console, self.what, self.every = console, what, every
        self.t0 = time.perf_counter()
        self.next = every

    def __call__(self, done: int, total: int, **extra: Any) -> None:
        pct = 100.0 * done / max(1, total)
        if pct < self.next and done < total:
            return
        self.next = (int(pct) // self.every + 1) * self.every
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (total - done) if done else math.nan
        more = "".join(f", {key} {value}" for key, value in extra.items())
        self.console.print(f"    {self.what}: {done}/{total} ({pct:.0f}%){more}, elapsed {_clock(elapsed)}, "
                           f"ETA {_clock(eta)}", highlight=False, soft_wrap=True)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _quiet_progress(trainer, progress: bool, desc: str = "RL steps", console=None) -> None:
    """One progress bar with the running reward instead of a printed dict per step (``logging_steps=1`` keeps every
    step in ``log_history`` for the plot; 1,000 printed dicts would bury the before/after table). Also draws TRL
    1.12's PPOTrainer's bar (its reward is logged as ``objective/scores``)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not progress:
        if console is not None:
            class RewardLines(TrainerCallback):
                lines = None

                def on_train_begin(self, args, state, control, **kwargs):
                    self.lines = _ProgressLines(console, desc)

                def on_log(self, args, state, control, logs=None, **kwargs):
                    reward = (logs or {}).get("reward", (logs or {}).get("objective/scores"))
                    if self.lines is not None and reward is not None:
                        self.lines(state.global_step, state.max_steps, reward=f"{reward:+.3f}")

            trainer.add_callback(RewardLines())
        return

    class RewardBar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, desc=desc, dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            reward = (logs or {}).get("reward", (logs or {}).get("objective/scores"))
            if self.bar is not None and reward is not None:
                rate = {"pass_rate": f"{logs['pass_rate']:.2f}"} if "pass_rate" in logs else {}
                self.bar.set_postfix(reward=f"{reward:+.3f}", **rate, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    trainer.add_callback(RewardBar())


@dataclass
class _Run:
    """What the steps of one quickstart run share: its settings, where it prints and writes, and its timings."""

    b: Budget
    budget: str  # the budget's name ("custom" for a Budget given as such)
    out: Path
    seed: int
    progress: bool
    device: str
    console: Any
    started: float = 0.0  # time.perf_counter() when the work began
    times: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)  # steps finished by an earlier, interrupted run
    step: str = "start"  # the step running now (named when interrupted)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def gen_batch(self) -> int:  # sequences per generate() call
        return 256 if self.cuda else 32

    @property
    def heldout_sampling(self) -> dict[str, Any]:  # the before/after evaluation's sampling, the same both times
        return dict(n=self.b.n, k=self.b.k, temperature=self.b.temperature, max_new_tokens=64,
                    batch_size=self.gen_batch, seed=self.seed)

    def evaluate(self, model, tasks, **kwargs):
        from trl_unittest.evaluation import evaluate_model

        return evaluate_model(model, tasks, device=self.device, **kwargs)  # every model loaded by path: on `device`

    def bars(self, what: str):
        """``progress=`` for a long step: bars, or (``--no-progress``) a line every 5%."""
        return True if self.progress else _ProgressLines(self.console, what)

    def line_factory(self, prefix: str = ""):
        """``progress=`` for a step of several long parts (the builds, the model's training): bars, or a factory
        of line loggers, one per part (``what -> _ProgressLines``)."""
        return True if self.progress else (lambda what: _ProgressLines(self.console, f"{prefix}{what}"))

    # a finished step's outputs, reused when the same run starts again after an interruption
    def finished(self, step: str) -> dict[str, Any] | None:
        path = self.out / "steps" / f"{step}.json"
        if not path.exists():
            return None
        self.reused.append(step)
        return json.loads(path.read_text())

    def finish(self, step: str, record: dict[str, Any]) -> None:
        path = self.out / "steps" / f"{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)


@dataclass
class _Tasks:
    """The task sets of one run: held-out ones for evaluation, train ones for RL."""

    heldout: Any  # evaluated before and after (an even spread of the held-out tasks this model never saw)
    dropped: int  # held-out tasks left out because this model trained on their function
    checkpoint: Any  # the subset measured during training
    train: Any  # the RL tasks (narrowed by the curriculum in `_train`)


@dataclass
class _Training:
    """What RL produced, and what was measured on its own tasks around it."""

    model: str  # the trained model's folder (OUT/model)
    train_ds: Any  # the tasks RL trained on
    probe: dict[str, Any] | None  # the curriculum's probe (EvalReport.to_dict()), or None
    rl_check: Any  # the RL tasks measured before and after
    rl_check_n: int
    rl_before: float
    curve: list[dict[str, float]]  # held-out pass@1 on the checkpoint subset during training
    history: list[dict[str, Any]]  # reward per step
    time_split: dict[str, float] | None  # seconds of the RL steps per part (ActorCriticTrainer.step_timer.split())


def run_quickstart(budget: str | Budget = "tiny", out: str | os.PathLike = "quickstart-out", seed: int = 0,
                   progress: bool = True, device: str = "auto") -> dict[str, Any]:
    """The main job, one step per call (see the module docstring); returns the summary written to ``OUT/summary.json``.

    ``budget``: a name of :data:`BUDGETS` or a :class:`Budget`; ``device``: where the model is trained and sampled
    ("auto": a GPU if torch sees one; bf16 there)."""
    import torch

    from trl_unittest.execution import ExecutionPool, Limits

    from trl_unittest.usage import Interrupted, library_progress_bars

    run = _start(budget, out, seed, progress, device)
    torch.manual_seed(seed)
    try:
        with library_progress_bars(progress):  # no progress: no library bars either (its own lines log the steps)
            data = _datasets(run)
            model_dir, tokenizer = _model(run, data)
            tasks = _tasks(run, data, model_dir, tokenizer)
            with ExecutionPool(num_workers=2, limits=Limits(test_timeout=1.0, setup_timeout=3.0)) as pool:
                base = _evaluate_before(run, model_dir, tasks, pool)
                training = _train(run, model_dir, tokenizer, tasks, pool)
                trained, rl_after = _evaluate_after(run, training, tasks, tokenizer, pool)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted during {run.step}: finished steps are kept in {run.out / 'steps'} (and the "
                          f"datasets and model in the cache); the same command resumes after them") from None
    run.times["total"] = time.perf_counter() - run.started
    return _report(run, data, model_dir, tasks, base, training, trained, rl_after)


def _start(budget: str | Budget, out, seed: int, progress: bool, device: str) -> _Run:
    """Check the budget and the device (before any work), create the output folder, start the clock."""
    from rich.console import Console

    from trl_unittest.evaluation import resolve_device
    from trl_unittest.models import set_threads
    from trl_unittest.usage import UsageError, check_out_dir

    set_threads()
    if isinstance(budget, Budget):
        b, budget = budget, "custom"
    elif budget in BUDGETS:
        b = BUDGETS[budget]
    else:
        raise UsageError(f"unknown budget {budget!r}: expected one of {sorted(BUDGETS)} or a Budget")
    device = resolve_device(device)
    check_out_dir(out)
    run = _Run(b=b, budget=budget, out=Path(out), seed=seed, progress=progress, device=device,
               console=Console(stderr=True))
    settings = {"budget": budget, "budget_settings": json.loads(json.dumps(asdict(b))), "seed": seed}
    recorded = run.out / "steps" / "run.json"
    if recorded.exists():  # an earlier run into the same folder: resume it only if it is the same run
        before = json.loads(recorded.read_text())
        if before != settings:
            differ = [k for k in settings if before.get(k) != settings[k]]
            raise UsageError(f"--out {out} holds a quickstart run with other settings ({', '.join(differ)}): use "
                             f"another --out, or delete {out} to start again")
    elif (run.out / "summary.json").exists():  # a finished run that recorded no settings: never written over
        raise UsageError(f"--out {out} holds the results of an earlier quickstart run: use another --out, or delete "
                         f"{out} to start again")
    run.out.mkdir(parents=True, exist_ok=True)
    run.finish("run", settings)
    run.started = time.perf_counter()
    return run


def _datasets(run: _Run):
    """Step 1: the train and held-out task datasets (stdlib modules + synthetic exercises; cached)."""
    from trl_unittest.data.split import build_split_datasets

    run.step = "step 1 (datasets)"
    run.console.rule(f"[bold]trl-unittest quickstart[/bold] (budget {run.budget})")
    if run.budget == "tiny":
        run.console.print("    budget tiny: a smoke test of the pipeline (a model of a few minutes, 8 RL steps); its "
                          "numbers say nothing about RL")
    run.console.print("1/5 datasets: stdlib modules + synthetic exercises, split into train / held-out sources")
    t = time.perf_counter()
    data = build_split_datasets(run.b.model, progress=run.line_factory())
    run.times["datasets"] = time.perf_counter() - t
    run.console.print(f"    {data.info}")
    return data


def _model(run: _Run, data) -> tuple[str, Any]:
    """Step 2: the small code model trained on train sources (cached), and its tokenizer."""
    from transformers import AutoTokenizer

    from trl_unittest.models import ensure_code_model, model_figures

    run.step = "step 2 (model)"
    run.console.print("2/5 the small code model (tokenizer + pretraining + SFT on train sources; cached)")
    t = time.perf_counter()
    model_dir = ensure_code_model(run.b.model, train_tasks=data.train, progress=run.line_factory("model "),
                                  device=run.device)
    run.times["model"] = time.perf_counter() - t
    figures = model_figures(model_dir)
    run.console.print(f"    {model_dir} ({figures.get('parameters', 0) / 1e6:.2f} M parameters)")
    return model_dir, AutoTokenizer.from_pretrained(model_dir)


def _tasks(run: _Run, data, model_dir: str, tokenizer) -> _Tasks:
    """Step 2 (continued): the held-out tasks this model never saw, and the RL tasks (the train split or fresh)."""
    from trl_unittest.data.exercises import fresh_exercise_tasks
    from trl_unittest.data.split import heldout_for_model
    from trl_unittest.models import recipe_for

    b = run.b
    # the split's own filter covers the default model's training data; a model trained on more drops what it saw
    heldout, dropped = heldout_for_model(data.heldout, model_dir)
    if dropped:
        run.console.print(f"    {dropped} held-out tasks left out: this model trained on functions with their "
                          f"fingerprint")
    heldout = spread(heldout, b.eval_tasks)
    rl_source = data.train
    if b.rl_tasks == "fresh":
        t = time.perf_counter()
        rl_source = fresh_exercise_tasks("train", data, model_dir, b.fresh_count, budget=b.model,
                                         progress=run.line_factory())
        run.console.print(f"    RL tasks: {len(rl_source)} built from {b.fresh_count} fresh train-split exercises "
                          f"(shapes SFT taught, functions no training step saw)")
        run.times["rl_tasks"] = time.perf_counter() - t
    train = fit_prompts(rl_source, tokenizer, recipe_for(b.model).max_positions - b.max_completion_length)
    return _Tasks(heldout=heldout, dropped=dropped, checkpoint=spread(heldout, b.checkpoint_tasks), train=train)


def _evaluate_before(run: _Run, model_dir: str, tasks: _Tasks, pool):
    """Step 3: the base model's pass@k on the held-out tasks."""
    run.step = "step 3 (base model evaluation)"
    run.console.print(f"3/5 base model on {len(tasks.heldout)} held-out tasks, {run.b.n} samples each")
    done = run.finished("eval_base")
    if done is not None:
        run.console.print(f"    finished by an earlier run: reused {run.out / 'eval_base.jsonl'}")
        base = _saved_report(done["report"], run.out / "eval_base.jsonl")
    else:
        t = time.perf_counter()
        base = run.evaluate(model_dir, tasks.heldout, pool=pool, out_jsonl=run.out / "eval_base.jsonl",
                            progress=run.bars("base model"), **run.heldout_sampling)
        done = {"report": base.to_dict(), "seconds": time.perf_counter() - t}
        run.finish("eval_base", done)
    run.times["eval_base"] = done["seconds"]
    run.console.print(base.table("base model"))
    return base


def _saved_report(summary: dict[str, Any], jsonl: Path):
    """An EvalReport written by a finished step: its summary and its per-task rows."""
    from trl_unittest.evaluation import EvalReport

    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return EvalReport(pass_at_k=summary["pass_at_k"], num_tasks=summary["num_tasks"],
                      num_samples=summary["num_samples"], metrics=summary["metrics"], by_source=summary["by_source"],
                      seconds=summary["seconds"], rows=rows)


def _curriculum(run: _Run, model_dir: str, train_ds, pool):
    """The rows of the RL tasks the base model solves in some but not all of ``probe_samples`` samples, and the
    probe's summary (None, None: no curriculum)."""
    b = run.b
    if not b.probe_samples:
        return None, None
    probe = run.evaluate(model_dir, train_ds, n=b.probe_samples, k=(1,), temperature=b.temperature,
                         max_new_tokens=b.max_completion_length, batch_size=run.gen_batch, seed=run.seed + 1,
                         pool=pool, progress=run.bars("curriculum probe"))
    between = [i for i, r in enumerate(probe.rows) if 0 < r["correct"] < r["n"]]
    solved = [i for i, r in enumerate(probe.rows) if r["correct"] > 0]
    run.console.print(f"    curriculum: of {len(train_ds)} train tasks, {len(between)} solved in some but not all "
                      f"of {b.probe_samples} samples, {len(solved)} solved at least once")
    if len(between) >= b.batch_size:
        rl_rows = between
    elif len(solved) >= b.batch_size:
        rl_rows = solved
    else:  # a model too weak for a curriculum (the `tiny` CI budget): train on everything
        rl_rows = list(range(len(train_ds)))
    run.console.print(f"    RL trains on {len(rl_rows)} tasks")
    return rl_rows, probe.to_dict()


def _train(run: _Run, model_dir: str, tokenizer, tasks: _Tasks, pool) -> _Training:
    """Step 4: ActorCriticTrainer with UnitTestReward on the RL tasks, held-out pass@1 measured along the way; the
    trained model is saved in ``OUT/model`` (and evaluated from there)."""
    b = run.b
    run.step = "step 4 (RL)"
    done = run.finished("train")
    if done is not None and (run.out / "model" / "config.json").exists():
        train_ds = tasks.train.select(done["rl_rows"]) if done["rl_rows"] is not None else tasks.train
        run.console.print(f"4/5 ActorCriticTrainer: finished by an earlier run: reused {run.out / 'model'}")
    else:
        t = time.perf_counter()
        rl_rows, probe = _curriculum(run, model_dir, tasks.train, pool)
        train_ds = tasks.train.select(rl_rows) if rl_rows is not None else tasks.train
        rl_check = train_ds if probe is not None else spread(train_ds, 100)
        rl_check_n = b.probe_samples or 8
        # did the policy learn the tasks it trains on? "before" on fresh samples drawn as the "after" ones are (the
        # probe's own pass@1 on the tasks it selected is biased by the selection)
        rl_before = run.evaluate(model_dir, rl_check, n=rl_check_n, k=(1,), temperature=b.temperature,
                                 max_new_tokens=b.max_completion_length, batch_size=run.gen_batch, seed=run.seed + 2,
                                 pool=pool, progress=False).pass_at_k["pass@1"]
        curve, history, time_split = _rl(run, model_dir, tokenizer, tasks, train_ds, pool)
        done = {"rl_rows": rl_rows, "probe": probe, "rl_before": rl_before, "rl_check_n": rl_check_n,
                "curve": curve, "history": history, "time_split": time_split, "seconds": time.perf_counter() - t}
        run.finish("train", done)
    run.times["train"] = done["seconds"]
    rl_check = train_ds if done["probe"] is not None else spread(train_ds, 100)
    return _Training(model=str(run.out / "model"), train_ds=train_ds, probe=done["probe"], rl_check=rl_check,
                     rl_check_n=done["rl_check_n"], rl_before=done["rl_before"], curve=done["curve"],
                     history=done["history"], time_split=done.get("time_split"))


def _rl(run: _Run, model_dir: str, tokenizer, tasks: _Tasks, train_ds, pool):
    """The RL run itself: (held-out pass@1 curve on the checkpoint subset, reward per step, time split)."""
    from trl_unittest.trainer import ActorCriticConfig, ActorCriticTrainer

    b = run.b
    run.console.print(f"4/5 ActorCriticTrainer: {b.steps} steps x {b.batch_size} completions on {len(train_ds)} "
                      f"train tasks, reward scheme {b.reward_scheme}")
    reward = UnitTestReward(b.reward_scheme, pool=pool)
    args = ActorCriticConfig(
        output_dir=str(run.out / "trainer"), per_device_train_batch_size=b.batch_size,
        max_completion_length=b.max_completion_length, learning_rate=b.learning_rate, max_steps=b.steps,
        temperature=b.temperature, beta=b.beta, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=not run.cuda, bf16=run.cuda, disable_tqdm=not run.progress, lr_scheduler_type="constant",
        seed=run.seed, critic_learning_rate=1e-3,
        replay_capacity=256, replay_critic_batch_size=8, whiten_advantages=False,
        replay_policy_batch_size=b.replay_policy_batch_size)
    trainer = ActorCriticTrainer(model_dir, reward, args=args, train_dataset=train_ds.shuffle(seed=run.seed),
                                 processing_class=tokenizer)
    curve: list[dict[str, float]] = []
    every = max(1, b.steps // (b.checkpoints + 1)) if b.checkpoints else 0
    _quiet_progress(trainer, run.progress, console=run.console)
    trainer.add_callback(_pass1_callback(tasks.checkpoint, every, 2, b.temperature, tokenizer, pool, curve))
    ck0 = run.evaluate(model_dir, tasks.checkpoint, n=2, k=(1,), temperature=b.temperature, max_new_tokens=64,
                       pool=pool, progress=False)
    curve.insert(0, {"step": 0, "pass@1": ck0.pass_at_k["pass@1"]})
    trainer.train()
    ckf = run.evaluate(trainer.model, tasks.checkpoint, n=2, k=(1,), temperature=b.temperature, max_new_tokens=64,
                       tokenizer=tokenizer, pool=pool, progress=False)
    curve.append({"step": b.steps, "pass@1": ckf.pass_at_k["pass@1"]})
    history = [{"step": h["step"], "reward": h["reward"], "pass_rate": h.get("pass_rate")}
               for h in trainer.state.log_history if "reward" in h and "step" in h]
    trainer.save_model(str(run.out / "model"))  # last: a model folder there means the step finished
    tokenizer.save_pretrained(str(run.out / "model"))
    return curve, history, trainer.step_timer.split()


def _evaluate_after(run: _Run, training: _Training, tasks: _Tasks, tokenizer, pool):
    """Step 5: the trained model on its own RL tasks and on the same held-out tasks as before; (report, RL pass@1)."""
    b = run.b
    run.step = "step 5 (trained model evaluation)"
    run.console.print(f"5/5 trained model on the same {len(tasks.heldout)} held-out tasks")
    done = run.finished("eval_trained")
    if done is not None:
        run.console.print(f"    finished by an earlier run: reused {run.out / 'eval_trained.jsonl'}")
        trained = _saved_report(done["report"], run.out / "eval_trained.jsonl")
    else:
        t = time.perf_counter()
        rl_after = run.evaluate(training.model, training.rl_check, n=training.rl_check_n, k=(1,),
                                temperature=b.temperature, max_new_tokens=b.max_completion_length,
                                batch_size=run.gen_batch, seed=run.seed + 2, tokenizer=tokenizer, pool=pool,
                                progress=False).pass_at_k["pass@1"]
        trained = run.evaluate(training.model, tasks.heldout, tokenizer=tokenizer, pool=pool,
                               out_jsonl=run.out / "eval_trained.jsonl", progress=run.bars("trained model"),
                               **run.heldout_sampling)
        done = {"report": trained.to_dict(), "rl_after": rl_after, "seconds": time.perf_counter() - t}
        run.finish("eval_trained", done)
    run.times["eval_trained"] = done["seconds"]
    return trained, done["rl_after"]


def _report(run: _Run, data, model_dir: str, tasks: _Tasks, base, training: _Training, trained,
            rl_after: float) -> dict[str, Any]:
    """The before/after table, ``OUT/training.png`` and ``OUT/summary.json``; returns the summary."""
    from trl_unittest.models import model_figures

    b, out = run.b, run.out
    rl_tasks = {"tasks": len(training.train_ds), "source": b.rl_tasks, "measured_on": len(training.rl_check),
                "samples": training.rl_check_n, "pass@1_before": training.rl_before, "pass@1_after": rl_after}
    run.console.print(_before_after(base, trained, training.history, rl_tasks))
    if training.time_split:
        run.console.print(_time_split_table(training.time_split))
    plot = _plot(training.history, training.curve, out / "training.png", run.budget, full=(b.steps, base, trained),
                 subset=len(tasks.checkpoint), scheme=b.reward_scheme)
    summary = {
        "budget": run.budget, "budget_settings": asdict(b), "model": model_dir,
        "model_figures": model_figures(model_dir),
        "data": data.info, "heldout_eval_tasks": len(tasks.heldout), "heldout_dropped_as_trained_on": tasks.dropped,
        "train_tasks": len(training.train_ds),
        "train_probe": training.probe, "rl_tasks": rl_tasks, "reused_steps": run.reused,
        "base": base.to_dict(), "trained": trained.to_dict(), "reward_history": training.history,
        "pass1_curve": training.curve, "seconds": {k: round(v, 1) for k, v in run.times.items()},
        "rl_time_split": training.time_split,
        "files": {"plot": str(plot), "eval_base": str(out / "eval_base.jsonl"),
                  "eval_trained": str(out / "eval_trained.jsonl"), "model": str(out / "model")},
    }
    if run.budget == "tiny":
        summary["note"] = "budget tiny: a smoke test of the pipeline; its numbers say nothing about RL"
        run.console.print(f"[yellow]{summary['note']}[/yellow]")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    reused = f" (reused from an earlier run: {', '.join(run.reused)})" if run.reused else ""
    run.console.print(f"wrote {out / 'summary.json'}, {plot}; total {run.times['total']:.0f} s{reused}")
    return summary


def _before_after(base, trained, history, rl_tasks=None):
    from rich.table import Table

    t = Table(title="held-out tasks: before and after RL from unit tests")
    t.add_column("metric")
    t.add_column("base", justify="right")
    t.add_column("trained", justify="right")
    t.add_column("change", justify="right")
    for key in base.pass_at_k:
        a, b = base.pass_at_k[key], trained.pass_at_k[key]
        t.add_row(f"{key} (all)", f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}")
    for src in sorted(base.by_source):
        for key in base.pass_at_k:
            a, b = base.by_source[src][key], trained.by_source.get(src, {}).get(key, float("nan"))
            t.add_row(f"{key} ({src}, {int(base.by_source[src]['tasks'])} tasks)", f"{a:.3f}", f"{b:.3f}",
                      f"{b - a:+.3f}")
    for key in ("tests_passed", "compile_error"):
        a, b = base.metrics.get(key, math.nan), trained.metrics.get(key, math.nan)
        t.add_row(key.replace("_", " ") + " (per sample)", f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}")
    if rl_tasks:
        a, b = rl_tasks["pass@1_before"], rl_tasks["pass@1_after"]
        of = "" if rl_tasks["measured_on"] == rl_tasks["tasks"] else f"{rl_tasks['measured_on']} of "
        t.add_row(f"pass@1 on {of}the {rl_tasks['tasks']} RL train tasks", f"{a:.3f}", f"{b:.3f}", f"{b - a:+.3f}")
    if history:
        q = max(1, len(history) // 4)
        first = sum(h["reward"] for h in history[:q]) / q
        last = sum(h["reward"] for h in history[-q:]) / q
        t.add_row(f"train reward (first / last {q} steps)", f"{first:+.3f}", f"{last:+.3f}", f"{last - first:+.3f}")
    return t


def _time_split_table(split: dict[str, float]):
    """Where the RL steps' seconds went: per part, the total, the mean per step and the share of the steps' time."""
    from rich.table import Table

    from trl_unittest.trainer.timing import PARTS

    steps, total = max(1, int(split["steps"])), split["step"]
    t = Table(title="RL time per step", caption=f"{int(split['steps'])} steps, {total:.0f} s in all (held-out "
                                                  f"checkpoint evaluations not included)")
    for column in ("part", "seconds", "per step", "share"):
        t.add_column(column, justify="left" if column == "part" else "right")
    for part in (*PARTS, "other"):
        t.add_row(part, f"{split[part]:.1f}", f"{split[part] / steps:.3f}",
                  f"{100 * split[part] / total:.0f}%" if total else "-")
    return t


def _interval(report) -> float:
    """Half-width of a 95% normal interval of pass@1 over tasks (task-to-task spread; sampling noise included)."""
    values = [r["pass@1"] for r in report.rows if "pass@1" in r]
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return 1.96 * math.sqrt(var / len(values))


def _plot(history, curve, path: Path, budget: str, full=None, subset: int | None = None,
          scheme: str = "partial") -> Path:
    """Reward per step, and held-out pass@1: the checkpoint curve on a ``subset`` of tasks (2 samples each: noisy)
    and, with ``full`` = (steps, base report, trained report), the before/after evaluation on all of them as two
    points with 95% intervals. Legends sit below the axes, off the lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    steps = [h["step"] for h in history]
    rewards = [h["reward"] for h in history]
    ax1.plot(steps, rewards, ".", alpha=0.5, label="batch mean")
    if len(rewards) >= 3:
        w = max(2, len(rewards) // 8)
        # from the first full window on: a mean over the first few steps alone is as noisy as the dots
        smooth = [sum(rewards[i - w + 1: i + 1]) / w for i in range(w - 1, len(rewards))]
        ax1.plot(steps[w - 1:], smooth, "-", label=f"moving mean ({w} steps)")
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel(f"unit-test reward ({scheme})")
    ax1.set_title("reward on train tasks")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    of = f"subset of {subset} tasks" if subset else "a subset of the tasks"
    ax2.plot([c["step"] for c in curve], [c["pass@1"] for c in curve], "o-", label=f"{of}, 2 samples/task")
    top = max(c["pass@1"] for c in curve)
    if full:
        steps_done, before, after = full
        points = [(0, before), (steps_done, after)]
        ax2.errorbar([x for x, _ in points], [r.pass_at_k["pass@1"] for _, r in points],
                     yerr=[_interval(r) for _, r in points], fmt="s", capsize=4,
                     label=f"all {before.num_tasks} tasks, {before.num_samples} samples/task (95% interval)")
        top = max(top, *(r.pass_at_k["pass@1"] + _interval(r) for _, r in points))
    ax2.set_xlabel("optimiser step")
    ax2.set_ylabel("pass@1")
    ax2.set_ylim(0, min(1.0, max(0.05, top * 1.2)))
    ax2.set_title("held-out pass@1")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    smoke = " - a smoke test: its numbers say nothing about RL" if budget == "tiny" else ""
    fig.suptitle(f"trl-unittest quickstart ({budget}){smoke}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------- CLI
def add_quickstart_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("quickstart", help="build data, evaluate, train with ActorCriticTrainer, evaluate "
                                                 "again: the whole loop on a CPU in minutes")
    p.add_argument("--budget", default="small-bugs", choices=sorted(BUDGETS),
                   help="small-bugs (default): the model with a slip habit, 1,000 RL steps, about 20 minutes on 2 cores "
                        "(a held-out gain on some model builds, not all: README); small: the clean model, "
                        "240 steps on a curriculum of train tasks, 10 minutes; tiny: CI smoke run; medium: a GPU")
    p.add_argument("--out", default="quickstart-out", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars: one line every 5%% of each long "
                                                               "step (done, reward, elapsed, ETA) instead")
    p.add_argument("--device", default="auto", help="auto (a GPU if torch sees one, bf16 there), cpu, cuda, cuda:N; "
                                                    "--budget medium is meant for a GPU")
    p.set_defaults(func=_run_cli)
    return p


def _run_cli(args: argparse.Namespace) -> int:
    summary = run_quickstart(args.budget, args.out, seed=args.seed, progress=not args.no_progress,
                             device=args.device)
    print(json.dumps({"budget": summary["budget"], "base": summary["base"]["pass_at_k"],
                      "trained": summary["trained"]["pass_at_k"], "seconds": summary["seconds"]["total"],
                      "out": str(args.out)}), file=sys.stdout)
    return 0


# ------------------------------------------------------------------------------------------- train (CLI)
@dataclass
class TrainScriptArguments:
    """Script arguments of ``trl-unittest train`` (with ``ActorCriticConfig`` and TRL's ``ModelConfig``)."""

    dataset: str = field(default="quickstart", metadata={
        "help": "train tasks: 'quickstart' (the train split of trl_unittest.data.split), 'humaneval', 'mbpp[:split]', "
                "a `trl-unittest build` folder, a .parquet or a .jsonl task file"})
    eval_dataset: str | None = field(default="quickstart", metadata={
        "help": "held-out tasks evaluated before and after training ('quickstart': the held-out split); "
                "empty to skip"})
    eval_tasks: int = field(default=60, metadata={"help": "held-out tasks evaluated (an even spread)"})
    eval_n: int = field(default=4, metadata={"help": "samples per held-out task"})
    eval_k: list[int] = field(default_factory=lambda: [1, 4], metadata={"help": "k values of pass@k"})
    reward_scheme: str = field(default="partial", metadata={"help": "binary, fraction, coderl or partial"})
    sandbox: str = field(default="auto", metadata={"help": "auto, bwrap, unshare or none"})
    test_timeout: float = field(default=1.0, metadata={"help": "seconds per test without a reference runtime"})


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="RL from unit tests with ActorCriticTrainer, configured like `trl grpo` (YAML + flags)",
        description="Train with ActorCriticTrainer and UnitTestReward. Arguments: TrainScriptArguments, "
                    "ActorCriticConfig (every GRPOConfig field too) and TRL's ModelConfig, from --config YAML and/or "
                    "--flags (flags win), parsed by trl.TrlParser. model_name_or_path 'quickstart:tiny' / "
                    "'quickstart:small' is the small code model built offline.",
        prefix_chars="+", add_help=False)  # every --flag (and --help) goes to TrlParser
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="--config YAML (e.g. trl_unittest/configs/actor_critic.yaml) and --field value pairs")
    p.set_defaults(func=run_train)
    return p


def parse_train_args(argv: list[str]):
    """(script, training, model) arguments from ``--config YAML`` and flags. A bad config (syntax, an unknown key, a
    value of the wrong type) or flag is a :class:`~trl_unittest.usage.UsageError` naming it, not argparse's usage."""
    from trl import ModelConfig, TrlParser

    from trl_unittest.trainer import ActorCriticConfig
    from trl_unittest.usage import UsageError, check_yaml_config

    types_ = (TrainScriptArguments, ActorCriticConfig, ModelConfig)
    given = {_flag_name(a) for a in argv if a.startswith("--")}
    for i, arg in enumerate(argv):
        if arg == "--config" or arg.startswith("--config="):
            path = arg.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
            if not path:
                raise UsageError("--config needs a YAML file")
            given |= set(check_yaml_config(path, types_))
    if not given & {"bf16", "fp16", "use_cpu"} and not _has_accelerator():
        # TRL's configs default to bf16, which stops a CPU-only machine with transformers' "Your setup doesn't support
        # bf16/gpu" before anything the user gave is checked; with no precision asked for, train in fp32 there
        argv = [*argv, "--bf16", "false"]

    class _Parser(TrlParser):
        def error(self, message):  # one line instead of 200 lines of usage
            raise UsageError(f"{message} (see `trl-unittest train --help`)")

    parser = _Parser(types_, prog="trl-unittest train")
    try:
        return parser.parse_args_and_config(args=argv)[:3]
    except (TypeError, ValueError) as e:  # a dataclass' __post_init__ refusing a combination of values
        if isinstance(e, UsageError):
            raise
        raise UsageError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e


def _flag_name(arg: str) -> str:
    return arg[2:].partition("=")[0].replace("-", "_")


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available()) or \
        bool(getattr(torch, "xpu", None) and torch.xpu.is_available())


def run_train(args: argparse.Namespace) -> int:
    from trl_unittest.usage import check_model, check_out_dir, check_task_spec

    argv = list(args.rest or [])
    script_args, training_args, model_args = parse_train_args(argv)
    # the names and paths, before any data is built or a model loaded
    check_model(model_args.model_name_or_path or "quickstart:small", flag="model_name_or_path")
    for flag in ("dataset", "eval_dataset"):
        spec = getattr(script_args, flag)
        if spec and spec != "quickstart":
            check_task_spec(spec, flag=flag)
    check_out_dir(training_args.output_dir, flag="output_dir")
    summary = train(script_args, training_args, model_args)
    print(json.dumps(summary), file=sys.stdout)
    return 0


def train(script_args: TrainScriptArguments, training_args, model_args) -> dict[str, Any]:
    """What ``trl-unittest train`` runs: optional held-out evaluation, ActorCriticTrainer, evaluation again."""
    from transformers import AutoTokenizer
    from trl import get_peft_config

    from trl_unittest.evaluation import evaluate_model, load_task_source
    from trl_unittest.execution import ExecutionPool, Limits
    from trl_unittest.data.split import build_split_datasets, heldout_for_model
    from trl_unittest.models import ensure_code_model, set_threads
    from trl_unittest.trainer import ActorCriticTrainer

    set_threads()
    model = model_args.model_name_or_path or "quickstart:small"
    budget = model.split(":", 1)[1] if model.startswith("quickstart:") else "small"
    split = None
    if script_args.dataset == "quickstart" or script_args.eval_dataset == "quickstart":
        split = build_split_datasets(budget)
    if model.startswith("quickstart:"):
        model = ensure_code_model(budget, train_tasks=split.train if split else None)
    tokenizer = AutoTokenizer.from_pretrained(model)
    train_ds = split.train if script_args.dataset == "quickstart" else load_task_source(script_args.dataset)
    max_pos = 512
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(model)
        max_pos = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 512)
    except Exception:  # noqa: BLE001 (a model without a readable config: keep the default)
        pass
    train_ds = fit_prompts(train_ds, tokenizer, max_pos - training_args.max_completion_length)
    eval_ds = None
    if script_args.eval_dataset:
        eval_ds = heldout_for_model(split.heldout, model)[0] if script_args.eval_dataset == "quickstart" \
            else load_task_source(script_args.eval_dataset)
        eval_ds = spread(eval_ds, script_args.eval_tasks)
    out = Path(training_args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"model": model, "train_tasks": len(train_ds), "output_dir": str(out)}
    gen = dict(n=script_args.eval_n, k=tuple(script_args.eval_k), temperature=training_args.temperature,
               max_new_tokens=training_args.max_completion_length, batch_size=32)
    with ExecutionPool(sandbox=script_args.sandbox, limits=Limits(test_timeout=script_args.test_timeout)) as pool:
        if eval_ds is not None:
            summary["base"] = evaluate_model(model, eval_ds, pool=pool, out_jsonl=out / "eval_base.jsonl",
                                             **gen).to_dict()
        reward = UnitTestReward(scheme=script_args.reward_scheme, pool=pool)
        trainer = ActorCriticTrainer(model, reward, args=training_args, train_dataset=train_ds,
                                     processing_class=tokenizer, peft_config=get_peft_config(model_args))
        trainer.train()
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
        if eval_ds is not None:
            summary["trained"] = evaluate_model(trainer.model, eval_ds, tokenizer=tokenizer, pool=pool,
                                                out_jsonl=out / "eval_trained.jsonl", **gen).to_dict()
    summary["reward_history"] = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
