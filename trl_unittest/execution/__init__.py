"""Sandboxed execution of untrusted programs against unit tests. Nothing here knows about TRL."""

from trl_unittest.execution.asserts import RewriteReport, rewrite_asserts
from trl_unittest.execution.pool import ExecutionPool
from trl_unittest.execution.results import Limits, Program, ProgramResult, TestResult
from trl_unittest.execution.sandbox import SandboxUnavailableError, site_packages

__all__ = ["ExecutionPool", "Limits", "Program", "ProgramResult", "TestResult", "SandboxUnavailableError",
           "site_packages", "rewrite_asserts", "RewriteReport"]
