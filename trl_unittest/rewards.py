"""Unit-test rewards with TRL's reward-function signature, and the pass@k estimator.

``UnitTestReward`` turns each completion into a program (``code.build_program``), runs it against the task's
tests in the sandboxed pool, and maps the outcome to a scalar with one of these schemes:

===========  ===================================================================================================
``binary``   1 if every test passes, else 0
``fraction`` fraction of tests passed
``coderl``   CodeRL (Le et al. 2022): -1 compile error, -0.6 runtime error, -0.3 failed test, +1 all pass
``partial``  (default) CodeRL's penalties for programs that do not compile (-1) or that pass nothing and raise or
             time out (-0.6); otherwise ``-0.3 + 1.3 * fraction passed``, which meets CodeRL at both ends (-0.3 for
             all failed, +1 for all passed) and grades what lies between
===========  ===================================================================================================

It is a plain callable, so ``GRPOTrainer(reward_funcs=UnitTestReward())`` works as is; ``AsyncUnitTestReward`` is
the ``async`` flavour that TRL runs concurrently with other async rewards.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Callable, Sequence

from trl_unittest.code import adds_code, build_program
from trl_unittest.execution import ExecutionPool, Limits, Program, ProgramResult, rewrite_asserts
from trl_unittest.execution.executor import Executor
from trl_unittest.execution.results import UNVERIFIED_MODES
from trl_unittest.tasks import Test, TaskValidationError, parse_tests

SCHEMES = ("binary", "fraction", "coderl", "partial")
COMPILE_ERROR, RUNTIME_ERROR, FAILED_TEST, ALL_PASSED = -1.0, -0.6, -0.3, 1.0


def score(result: ProgramResult, scheme: str = "partial", unverified: str = "fail") -> float:
    """The scalar reward for one program's result under `scheme` (see the module docstring), its unverified
    tests counted as `unverified` says (see :class:`UnitTestReward`)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    result = result.counted(unverified)
    if scheme == "binary":
        return 1.0 if result.all_passed else 0.0
    if scheme == "fraction":
        return result.fraction if result.status == "ran" else 0.0
    if result.status == "compile_error":
        return COMPILE_ERROR
    if result.all_passed:
        return ALL_PASSED
    if scheme == "coderl":
        return RUNTIME_ERROR if result.runtime_error else FAILED_TEST
    if scheme == "partial":
        if result.status != "ran" or (result.passed == 0 and result.runtime_error):
            return RUNTIME_ERROR
        return FAILED_TEST + (ALL_PASSED - FAILED_TEST) * result.fraction
    raise AssertionError(f"unhandled scheme {scheme!r}")


class UnitTestReward:
    """Reward = how well a completion passes its task's unit tests.

    Called by TRL as ``reward(prompts=..., completions=..., completion_ids=..., **columns)``, where ``columns``
    holds the dataset's other columns, one value per completion. By default it reads the task schema's
    ``tests``, ``entry_point``, ``context``, ``test_setup`` and ``reference_runtime`` columns (see ``trl_unittest.tasks``);
    ``tests`` may also be a list of assert strings or a code block (MBPP ``test_list``, HumanEval ``test``),
    which are rewritten into structured tests once and cached.

    Args:
        scheme: one of ``binary``, ``fraction``, ``coderl``, ``partial``.
        pool: an ``ExecutionPool`` to share; by default one is created on first use (``num_workers``,
            ``sandbox``, ``limits``, ``python_paths`` configure it) and closed with :meth:`close`.
        executor: any other backend with the ``Executor`` protocol (``trl_unittest.execution.executor``), e.g. a
            ``RayExecutor`` that runs the programs on a Ray cluster; shared like ``pool`` (not closed here).
        python_paths: import paths made visible (read-only) to programs, e.g.
            ``trl_unittest.execution.site_packages()`` (everything installed).
        packages: third-party packages the dataset's programs may import, by top-level name (``["numpy"]``):
            only these are mounted in the sandbox, read-only (see ``ExecutionPool``).
        tests_column, entry_point_column, context_column, test_setup_column, runtime_column: dataset column names.
        truncate: cut completion-style completions at their first top-level line, as evaluation does (a model
            that rambles past the function body is scored on the function).
        unverified: what a test without a verdict is worth: a ``code`` test (check code run in its own process,
            reaching the program through a call proxy) whose argument or return value could not cross as a plain
            value (a callable, a generator, an object). ``"fail"`` (default): it counts as not passed.
            ``"exclude"``: it is left out and the program is judged on its other tests. ``"count"``: it counts
            as passed. Only ``fail`` is safe under RL: whether its return value can cross is the program's
            choice, so under ``count`` returning a lambda passes, and under ``exclude`` it drops a test the
            program would fail.
        empty_reward: the reward of a completion that adds no code (default: the compile-error reward for
            ``partial``/``coderl``, 0 otherwise). Without it an empty body -- the prompt alone, a valid function
            returning None -- scores as a merely failed program, and RL learns to stop at once.
    """

    def __init__(self, scheme: str = "partial", pool: ExecutionPool | None = None, num_workers: int | None = None,
                 sandbox: str = "auto", limits: Limits | None = None, python_paths: Sequence[str] = (),
                 packages: Sequence[str] = (),
                 tests_column: str = "tests",
                 entry_point_column: str = "entry_point", context_column: str = "context",
                 test_setup_column: str = "test_setup", runtime_column: str = "reference_runtime",
                 truncate: bool = True, empty_reward: float | None = None, executor: Executor | None = None,
                 unverified: str = "fail"):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if unverified not in UNVERIFIED_MODES:
            raise ValueError(f"unverified must be one of {UNVERIFIED_MODES}, got {unverified!r}")
        self.unverified = unverified
        if executor is not None:
            if pool is not None:
                raise ValueError("pass pool= or executor=, not both (a pool is an executor)")
            pool = executor
        self.scheme = scheme
        self.__name__ = f"unit_tests_{scheme}"  # TRL names the logged reward after it
        self.tests_column, self.entry_point_column = tests_column, entry_point_column
        self.context_column, self.runtime_column = context_column, runtime_column
        self.test_setup_column = test_setup_column
        self.limits = limits or (pool.limits if pool is not None else Limits())
        self._pool, self._owns_pool = pool, pool is None
        self._pool_args = {"num_workers": num_workers, "sandbox": sandbox, "limits": self.limits,
                           "python_paths": tuple(python_paths), "packages": tuple(packages)}
        self._rewrite_cache: dict[str, tuple[list[Test], str]] = {}
        self.truncate = truncate
        self.empty_reward = empty_reward if empty_reward is not None else (
            COMPILE_ERROR if scheme in ("partial", "coderl") else 0.0)

    # -------------------------------------------------------------------------------------------- TRL entry
    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], completion_ids: Any = None,
                 **columns: Any) -> list[float]:
        programs = self.programs(prompts, completions, **columns)
        results = self.pool.run_batch(programs)
        return self._finish(results, columns, self._empty(prompts, completions, columns))

    def results(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[ProgramResult]:
        """The full execution results instead of scalars (for evaluation and analysis)."""
        return self.pool.run_batch(self.programs(prompts, completions, **columns))

    # --------------------------------------------------------------------------------------------- helpers
    @property
    def pool(self) -> Executor:
        if self._pool is None:
            self._pool = ExecutionPool(**self._pool_args)
        return self._pool

    def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            self._pool.close()
            self._pool = None

    def __getstate__(self):
        # picklable (TRL and accelerate may copy reward functions): a pool (threads, processes) does not travel;
        # the copy starts its own on first use, with the same limits. Another executor travels as the recipe
        # its __reduce__ gives (a RayExecutor: the same cluster and settings), owned by the copy.
        state = dict(self.__dict__)
        keep = self._pool is not None and not isinstance(self._pool, ExecutionPool)
        state["_pool"], state["_owns_pool"] = (self._pool if keep else None), True
        return state

    def programs(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[Program]:
        n = len(completions)
        if len(prompts) != n:
            raise ValueError(f"got {len(prompts)} prompts but {n} completions")
        if self.tests_column not in columns:
            raise KeyError(f"UnitTestReward needs a {self.tests_column!r} column in the dataset (got columns "
                           f"{sorted(k for k in columns if not k.startswith('log_') and k != 'trainer_state')}); "
                           f"set tests_column= to the column holding the tests")
        tests_col = _column(columns, self.tests_column, n)
        entry_col = _column(columns, self.entry_point_column, n, default="")
        context_col = _column(columns, self.context_column, n, default="")
        setup_col = _column(columns, self.test_setup_column, n, default="")
        runtime_col = _column(columns, self.runtime_column, n, default=None)
        programs = []
        for i in range(n):
            entry = entry_col[i] or ""
            tests, setup = self._tests(tests_col[i], entry, where=f"row {i}")
            test_setup = "\n".join(c for c in (setup_col[i] or "", setup) if c)
            code, rejected = _extract(prompts[i], completions[i], entry, self.truncate)
            timeouts = self.limits.test_timeouts(len(tests), runtime_col[i])
            programs.append(Program(code=code, tests=tests, context=context_col[i] or "", test_setup=test_setup,
                                    timeouts=timeouts, rejected=rejected))
        return programs

    def _tests(self, value: Any, entry_point: str, where: str) -> tuple[list[Test], str]:
        """Structured tests from a column value: structured dicts/JSON, or assert code to rewrite."""
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return self._rewrite("\n".join(value), entry_point)
        if isinstance(value, str):
            stripped = value.lstrip()
            if not stripped.startswith("["):
                return self._rewrite(value, entry_point)
            try:
                json.loads(value)
            except json.JSONDecodeError:
                return self._rewrite(value, entry_point)
        tests = parse_tests(value, where=where)
        if not tests:
            raise TaskValidationError(f"{where}: no tests in column {self.tests_column!r}")
        for j, t in enumerate(tests):
            t.validate(f"{where}, tests[{j}]")
        return tests, ""

    def _rewrite(self, code: str, entry_point: str) -> tuple[list[Test], str]:
        key = entry_point + "\0" + code
        if key not in self._rewrite_cache:
            report = rewrite_asserts(code, entry_point=entry_point)
            if not report.tests:
                raise TaskValidationError(f"no tests found in test code {code[:80]!r}")
            self._rewrite_cache[key] = (report.tests, report.setup)
        return self._rewrite_cache[key]

    def _empty(self, prompts, completions, columns) -> list[bool]:
        entries = _column(columns, self.entry_point_column, len(completions), default="")
        return [not _adds_code(p, c, e or "", self.truncate) for p, c, e in zip(prompts, completions, entries)]

    def _finish(self, results: list[ProgramResult], columns: dict[str, Any], empty: list[bool]) -> list[float]:
        rewards = [self.empty_reward if e else score(r, self.scheme, self.unverified) for r, e in zip(results, empty)]
        log_metric: Callable | None = columns.get("log_metric")
        if log_metric is not None and results:
            for name, value in outcome_metrics(results).items():
                log_metric(f"{self.__name__}/{name}", value)
            log_metric(f"{self.__name__}/empty_completion", sum(empty) / len(empty))
        log_extra: Callable | None = columns.get("log_extra")
        if log_extra is not None:
            log_extra(f"{self.__name__}/outcome", [_outcome_label(r) for r in results])
        return rewards


class AsyncUnitTestReward(UnitTestReward):
    """The same reward as a coroutine: TRL awaits async rewards concurrently with each other."""

    async def __call__(self, prompts, completions, completion_ids=None, **columns):  # type: ignore[override]
        programs = self.programs(prompts, completions, **columns)
        results = await self.pool.run_batch_async(programs)
        return self._finish(results, columns, self._empty(prompts, completions, columns))


def _extract(prompt: Any, completion: Any, entry_point: str, truncate: bool) -> tuple[str, str]:
    """(program, "") for a completion, or ("", reason) when making its program failed: whatever one completion
    holds (nesting deeper than the parser allows, say) is that completion's outcome, a compile error, and never
    an exception out of the reward for the whole batch."""
    try:
        return build_program(prompt, completion, entry_point, truncate=truncate), ""
    except Exception as e:
        return "", f"ExtractionError:{type(e).__name__}"


def _adds_code(prompt: Any, completion: Any, entry_point: str, truncate: bool) -> bool:
    try:
        return adds_code(prompt, completion, entry_point, truncate)
    except Exception:  # its program failed to be made too: scored from the compile_error result
        return True


def _column(columns: dict[str, Any], name: str, n: int, default: Any = "") -> list[Any]:
    if name not in columns or columns[name] is None:
        return [default] * n
    values = list(columns[name])
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _outcome_label(result: ProgramResult) -> str:
    if result.status != "ran":
        return f"{result.status}:{result.error}"
    return f"{result.passed}/{result.total} passed"


def outcome_metrics(results: Sequence[ProgramResult]) -> dict[str, float]:
    """Batch statistics: rates of each program status, all-pass rate, mean fraction of tests passed, and the
    share of test outcomes by kind (an empty batch has none)."""
    n = len(results)
    if n == 0:
        return {}
    statuses = Counter(r.status for r in results)
    outcomes = Counter(t.outcome for r in results for t in r.tests)
    total_tests = sum(outcomes.values()) or 1
    metrics = {
        "pass_rate": sum(r.all_passed for r in results) / n,
        "tests_passed": sum(r.fraction for r in results) / n,
        "compile_error": statuses["compile_error"] / n,
        "import_error": statuses["import_error"] / n,
        "sandbox_error": statuses["sandbox_error"] / n,
        "test_timeout": outcomes["timeout"] / total_tests,
        "test_error": outcomes["error"] / total_tests,
        "test_unverified": outcomes["unverified"] / total_tests,
    }
    return metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, "Evaluating Large Language
    Models Trained on Code", eq. 1): 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if k < 1 or k > n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(samples: Sequence[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks given (n, c) per task; tasks with fewer than k samples are an error."""
    values = [pass_at_k(n, c, k) for n, c in samples]
    return math.fsum(values) / len(values) if values else float("nan")
