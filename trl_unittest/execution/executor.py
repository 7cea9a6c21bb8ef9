"""What the reward and evaluation need from an execution backend, as a protocol.

``ExecutionPool`` (one machine) satisfies it as is; ``RayExecutor`` (``ray_executor.py``, a Ray cluster) is a
drop-in: ``UnitTestReward(executor=...)``, ``evaluate_completions(pool=...)``. A backend runs a batch of
``Program`` and returns one ``ProgramResult`` per program, in order, with verdicts decided on the trusted side.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

from trl_unittest.execution.results import Limits, Program, ProgramResult


@runtime_checkable
class Executor(Protocol):
    limits: Limits  # the default per-program limits (rewards derive per-test budgets from them)

    def run_batch(self, programs: Iterable[Program], progress: bool = False,
                  desc: str = "executing") -> list[ProgramResult]:
        """One result per program, in order."""

    async def run_batch_async(self, programs: Iterable[Program]) -> list[ProgramResult]:
        """The same as a coroutine, so that async rewards run concurrently."""

    def close(self) -> None:
        """Release processes (and, for remote backends, actors); idempotent."""
