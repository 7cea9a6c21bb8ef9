"""Where the seconds of an RL step go: `StepTimer`, the per-step time split of `ActorCriticTrainer`.

Every optimiser step is split into the parts below, measured with wall-clock timers around the trainer's own
methods (exclusive times: a part timed inside another is not counted twice):

* ``generation``: sampling the completions (`GRPOTrainer._generate`);
* ``reward``: scoring them, i.e. running the programs and their unit tests in the sandbox (`_calculate_rewards`);
* ``scoring``: the rest of building the batch (tokenising, the reference / old policy's log-probabilities when
  `beta > 0` or `num_iterations > 1`, GRPO's metrics);
* ``replay``: the replay buffer: adding the batch (with its AST fingerprints) and the replayed batch's forward;
* ``policy``: the policy's forward and backward (the critic's small head rides on both) and its optimiser step;
* ``critic``: the critic's own optimiser step (gradient clip, AdamW, schedule);
* ``other``: what is left of the step's wall time (gradient clipping of the policy, the learning-rate schedule,
  the data loader, callbacks before this one).

Each step's parts are logged as ``time/<part>`` (and ``time/step``, the step's wall time) beside the reward, and
summed over the run in `StepTimer.totals` (the quickstart's ``rl_time_split``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

from transformers import TrainerCallback

PARTS = ("generation", "reward", "scoring", "replay", "policy", "critic")


class StepTimer(TrainerCallback):
    """Times the parts of each optimiser step (see the module docstring). The trainer wraps its methods in
    ``with timer.part(name):``; this callback opens and closes the step and hands each step's split to ``metrics``
    (the trainer's ``_metrics["train"]``, logged at the step's end)."""

    def __init__(self, metrics=None):
        self.metrics = metrics
        self.totals: dict[str, float] = defaultdict(float)  # seconds per part over the run, and "step"
        self.steps = 0
        self._parts: dict[str, float] = defaultdict(float)  # this step's
        self._nested: list[float] = []  # per open part: seconds of the parts timed inside it
        self._step_started: float | None = None
        self._optimizer_started: float | None = None

    @contextmanager
    def part(self, name: str):
        self._nested.append(0.0)
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            inner = self._nested.pop()
            self._parts[name] += elapsed - inner
            if self._nested:
                self._nested[-1] += elapsed

    def split(self) -> dict[str, float]:
        """Seconds per part summed over the steps timed so far, ``other``, ``step`` (wall time) and ``steps``."""
        out = {name: round(self.totals[name], 2) for name in (*PARTS, "other", "step")}
        out["steps"] = self.steps
        return out

    # ---------------------------------------------------------------- the step's boundaries (Trainer callbacks)
    def on_step_begin(self, args, state, control, **kwargs):
        self._parts.clear()
        self._step_started = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._optimizer_started = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self._optimizer_started is not None:
            self._parts["policy"] += time.perf_counter() - self._optimizer_started
            self._optimizer_started = None

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is None:
            return
        step = time.perf_counter() - self._step_started
        self._step_started = None
        split = {name: self._parts.get(name, 0.0) for name in PARTS}
        split["other"] = max(0.0, step - sum(split.values()))
        split["step"] = step
        self.steps += 1
        for name, seconds in split.items():
            self.totals[name] += seconds
            if self.metrics is not None:
                self.metrics[f"time/{name}"].append(seconds)
