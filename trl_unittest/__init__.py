"""trl_unittest: reinforcement learning from unit tests for code models, on top of Hugging Face TRL.

Public API (re-exports only). The trainer, builder and evaluation pull in TRL/transformers, so they load on
first use."""

from trl_unittest.execution import ExecutionPool, Limits, Program, ProgramResult
from trl_unittest.rewards import AsyncUnitTestReward, UnitTestReward, pass_at_k
from trl_unittest.tasks import Task, Test, from_dataset, to_dataset

__version__ = "0.1.0.dev0"

_LAZY = {
    "ActorCriticConfig": "trl_unittest.trainer",
    "ActorCriticTrainer": "trl_unittest.trainer",
    "UnitTestRewardModel": "trl_unittest.trainer",
    "build_dataset": "trl_unittest.data.builder",
    "BuilderConfig": "trl_unittest.data.builder",
    "evaluate_model": "trl_unittest.evaluation",
    "load_mbpp": "trl_unittest.data.loaders",
    "load_humaneval": "trl_unittest.data.loaders",
}

__all__ = ["Task", "Test", "to_dataset", "from_dataset", "ExecutionPool", "Limits", "Program", "ProgramResult",
           "UnitTestReward", "AsyncUnitTestReward", "pass_at_k", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trl_unittest' has no attribute {name!r}")
