"""trl_unittest: reinforcement learning from unit tests for code models, on top of Hugging Face TRL."""

from trl_unittest.execution import ExecutionPool, Limits, Program, ProgramResult
from trl_unittest.rewards import AsyncUnitTestReward, UnitTestReward, pass_at_k
from trl_unittest.tasks import Task, Test, from_dataset, to_dataset

__version__ = "0.1.0.dev0"

__all__ = ["Task", "Test", "to_dataset", "from_dataset", "ExecutionPool", "Limits", "Program", "ProgramResult",
           "UnitTestReward", "AsyncUnitTestReward", "pass_at_k"]
