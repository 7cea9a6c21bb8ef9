"""The pipeline that drives one build's stages: :class:`Builder`.

One thread drives all stages through futures, so the builder's own CPU work overlaps the sandboxed runs instead of
alternating with them. The static stages (:mod:`.static_stages`) are pure functions of a file or a function;
they run in this process or in spawned worker processes (``static_workers``). Everything that decides a task
depends only on the function (its inputs, its mutants, the pool that runs its mutants), so tasks do not depend on
how functions are batched — the Ray pipeline (:mod:`trl_unittest.data.ray_pipeline`) relies on it. The one
ordered step, deduplication (first occurrence wins), stays in the driving thread. CPython 3.11's parser is not
safe to use from two threads at once (gh-106905: a spurious SystemError, the tree is never wrong) and the
execution pool's threads parse results, so parses here are retried on that error.

A function's way through (:class:`_Flight`): its file's static stages -> first reference program (traced) ->
mutant generation (static workers; skipped, with the run probes, for a function whose first outcomes repeat so
often that no suite can hold the constant probes off: :func:`.selection.no_suite_possible`, 370 of the 879 second
programs on the builder benchmark's set) -> second program (rerun + mutants, the other hash seed) -> when asked
(``max_mutants_kept``; off by default: 22% of the build's speed for a small gain, ``benchmarks/RESULTS.md``), for a
function that would be kept (or dropped only for what its tests kill) and whose mutation sites outnumber the sample
(``max_mutants``), the audit: the rest of its mutants on its usable inputs, the other hash seed again, so that its
tests are chosen and scored on every site, as a mutation tool would, while the functions that are dropped pay for
the sample only -> for a function that would be kept (or dropped only for what its tests kill) and whose mutants
are not all killed by its usable inputs, the third round (:mod:`.targeted`): inputs aimed at the survivors, run
like the first inputs (the reference traced under the first hash seed, then the reference again with the survivors
and the probes under the other) -> test choice among all usable inputs -> for a function that may keep state, a
verification run of the chosen tests in order; for one that builds a set (or calls ``hash``), that run is under a
third hash seed (``verify_hash_seed``, a pool of one worker started when first needed). Only functions that reach the
audit, the third round or the verification pay for them.
"""

from __future__ import annotations

import logging
import zlib
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import contextmanager
from typing import Any, Iterable

from trl_unittest.data import filters, observe, selection, static_stages, targeted
from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.extract import Candidate
from trl_unittest.data.observe import R_NONDET, R_ORDER, Work, may_depend_on_hash, may_keep_state
from trl_unittest.data.scoring import kill_matrix
from trl_unittest.data.probes import make_probes
from trl_unittest.data.sources import SourceFile
from trl_unittest.data.static_stages import FileResult, Inline, Planned, Spawned, StaticStages, worker_file, \
    worker_mutants
from trl_unittest.tasks import Task

RETRIES = 20  # gh-106905 retries of one parse
# A function whose stage raised (a defect of the builder that some code nobody tuned on meets: isort's
# `add_to_line` once crashed the third round) is dropped under this reason and named in the report's warnings, and
# a file whose static stages raised is counted in `files_failed`: one function or file does not end a build.
R_BUILDER_ERROR = "builder_error"
MAX_ERROR_WARNINGS = 20  # named in the report's warnings; the counts hold them all

logger = logging.getLogger(__name__)


class Builder:
    """Runs the pipeline; use :func:`build_dataset` unless you need the pieces."""

    def __init__(self, config: BuilderConfig | None = None):
        self.config = config or BuilderConfig()
        self.dedup = filters.Deduplicator()
        self._stages: StaticStages | None = None
        self._static = None
        self._pools = None
        self._verify_pool = None
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
                n = 0 if static_stages.cores() <= 2 else max(1, static_stages.cores() // 3)
            if n <= 0:
                self._static = Inline(self.stages)
            else:  # spawn, not fork: the builder has threads (the pools'), a fork could copy a held lock
                self._static = Spawned(n, self.config)
                self._static.warm()
        return self._static

    def grow_static(self) -> None:
        """The input has proved large (``static_stages.GROW_AFTER_FILES`` files): on a 2-core machine the static
        stages move from this process to 2 worker processes. Measured with ``benchmarks/builder.py`` on 2 idle
        cores: on the full run (1,530 files) 10.6 tested tasks/s/core in-process, 12.1 with 1 worker, 13.0 with 2;
        on the quick run (118 files) in-process was fastest, which is why small inputs never start workers."""
        if self.config.static_workers is None and isinstance(self._static, Inline) and static_stages.cores() == 2:
            self._static = Spawned(2, self.config)
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

    def verify_pool(self):
        """The pool of the third hash seed (``verify_hash_seed``), started at the first task that needs it."""
        if self._verify_pool is None:
            from trl_unittest.execution import ExecutionPool, Limits

            self._verify_pool = ExecutionPool(1, sandbox=self.config.sandbox,
                                              limits=Limits(test_timeout=self.config.reference_timeout),
                                              hash_seed=int(self.config.verify_hash_seed))
        return self._verify_pool

    def close(self) -> None:
        if self._pools is not None:
            for p in self._pools:
                p.close()
            self._pools = None
        if self._verify_pool is not None:
            self._verify_pool.close()
            self._verify_pool = None
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
    # -------------------------------------------------------------------------------------------- stages
    # the dynamic stages (defined in .observe and .selection), bound to this builder's settings
    @staticmethod
    def _work(cand: Candidate, fp: str, expected: list, exprs: list[str]) -> Work:
        return observe.new_work(cand, fp, expected, exprs)

    def reference_program(self, w: Work):
        return observe.reference_program(w, self.config)

    def second_program(self, w: Work):
        return observe.second_program(w, self.config)

    def verify_program(self, task: Task):
        return observe.verify_program(task, self.config)

    @staticmethod
    def split_second(w: Work, r2):
        return observe.split_second(w, r2)

    def screen_reference(self, w: Work, ra, report: BuildReport) -> str | None:
        return observe.screen_reference(w, ra, self.config, report)

    def judge_reference(self, w: Work, rb, report: BuildReport) -> str | None:
        return observe.judge_reference(w, rb, self.config, report)

    @staticmethod
    def probes_for(w: Work) -> list:
        """The trivial-body probes that run with a function's mutants (the constant ones need no run)."""
        return make_probes(w.cand)

    def finish(self, w: Work, rm, report: BuildReport) -> Task | str:
        return selection.finish(w, rm, self.config, report)

    # -------------------------------------------------------------------------------------------- pipeline
    def _retrying(self, fn, *args, report: BuildReport):
        """``fn(*args, scratch_report)``, repeated when ``execution.values.decode_value`` on this thread meets
        gh-106905's spurious SystemError (the pool's threads parse at the same time); counts go to ``report``
        only from the attempt that succeeded."""
        for attempt in range(RETRIES + 1):
            scratch = BuildReport()
            try:
                out = fn(*args, scratch)
            except SystemError:
                if attempt == RETRIES:
                    raise
                self.retries += 1
                continue
            report.merge(scratch)
            return out

    def _pool_for(self, w: "Work | Task"):
        """The pool (hash seed) that runs a function's first reference run (the second program goes to the other
        pool): fixed per function, so that the result does not depend on how functions are batched or sharded
        (the Ray pipeline relies on that), and the two pools share the traced runs."""
        task_id = w.task_id if isinstance(w, Task) else w.cand.task_id
        return self.pools()[zlib.crc32(task_id.encode()) % 2]

    def process_files(self, files: Iterable[SourceFile], report: BuildReport, progress=None,
                      prefetch: list[SourceFile] | None = None, max_seen: int | None = None) -> list[Task]:
        """All stages for the functions of ``files``; tasks in source order.

        One thread drives everything through futures, so CPU work and sandboxed runs overlap: files go to the
        static worker processes (extraction, filters, inputs), their candidates are admitted in file order
        (first occurrence wins) and their first reference program submitted to a pool; a usable first run
        sends the function back to the workers for its mutants, then its second program (rerun + mutants) to the
        other pool; its results give the task, after a third round (aimed inputs: their reference run on the first
        pool, then their rerun with the surviving mutants and the probes on the other) where one is worth it
        (:mod:`.targeted`). In between, this thread only admits, judges and chooses tests.
        AST work on this
        thread is retried on gh-106905's spurious SystemError (the pools' threads parse results meanwhile).
        At most ``4 * batch_size`` functions are in flight. ``prefetch`` (the files of the next call, i.e. the
        next shard) go to the static worker processes once ``files`` are all submitted, so that they are being
        extracted while this call's last programs run instead of after. ``max_seen``: no new file is started once
        this many functions were seen (files in flight still finish)."""
        tasks = self._run(report, files=files, progress=progress, prefetch=prefetch, max_seen=max_seen)
        return [tasks[k] for k in sorted(tasks)]

    def run_planned(self, admitted: Iterable[tuple[int, Planned]], report: BuildReport) -> dict[int, Task]:
        """The dynamic stages (sandboxed runs, mutants, test choice) for candidates already through the static
        stages and admitted (deduplicated, not contaminated), each with its sequence number; returns the tasks
        by sequence number. The second map of :mod:`trl_unittest.data.ray_pipeline`."""
        return self._run(report, admitted=admitted)

    def _run(self, report: BuildReport, files: Iterable[SourceFile] | None = None,
             admitted: Iterable[tuple[int, Planned]] | None = None, progress=None,
             prefetch: list[SourceFile] | None = None, max_seen: int | None = None) -> dict[int, Task]:
        return _Flight(self, report, files, admitted, progress, prefetch, max_seen).run()


class _Flight:
    """One call of the dynamic stages: the functions in flight, by stage, each under its sequence number (the
    order of the tasks returned). At most ``4 * batch_size`` functions are in flight."""

    def __init__(self, builder: Builder, report: BuildReport, files, admitted, progress, prefetch, max_seen):
        self.b, self.report, self.progress, self.max_seen = builder, report, progress, max_seen
        self.pa, self.pb = builder.pools()
        self.static = builder.static_executor()
        self.n_static = getattr(self.static, "_max_workers", 1)
        self.limit = max(1, 4 * builder.config.batch_size)
        self.file_futs: list[tuple[SourceFile, Any]] = []  # (file, its static stages' future), in file order
        self.firsts: dict[int, tuple[Work, Any]] = {}  # seq -> work, first reference run (traced)
        self.mgen: dict[int, tuple[Work, Any]] = {}  # seq -> work, mutant generation (static stages)
        self.seconds: dict[int, tuple[Work, Any]] = {}  # seq -> work, second program (rerun + mutants, other seed)
        # seq -> (work, its second program's runners' result, ...): the audit's mutant generation (static stages),
        # then its program (the audit's work, its future; other seed)
        self.audit_gen: dict[int, tuple[Work, Any, Any]] = {}
        self.audits: dict[int, tuple[Work, Any, Work, Any]] = {}
        # seq -> (work, its second program's runners' result, its third round, the round's future): the aimed
        # inputs' reference run (traced, first seed), then their rerun with the survivors and probes (other seed)
        self.extra_refs: dict[int, tuple[Work, Any, targeted.Round, Any]] = {}
        self.extra_runs: dict[int, tuple[Work, Any, targeted.Round, Any]] = {}
        # seq -> (task, its reference run on the chosen tests, the pool it ran on, the drop reason if it fails)
        self.verifies: dict[int, tuple[Task, Any, Any, str]] = {}
        self.tasks: dict[int, Task] = {}
        self.seq = 0
        self.files_it = iter(files if files is not None else ())
        self.to_prefetch = list(prefetch or ())
        self.admitted_it = iter(admitted if admitted is not None else ())

    def run(self) -> dict[int, Task]:
        self.top_up()
        while self.file_futs or self.in_flight():
            if not self.step():
                if not self.file_futs and self.b._idle_hooks:  # nothing left to extract: wait usefully
                    hooks, self.b._idle_hooks = self.b._idle_hooks, []
                    for hook in hooks:
                        hook()
                    continue
                pending = [fut for _, fut in self.file_futs[:1]]
                pending += [f for stage in (self.firsts, self.mgen, self.seconds) for _, f in stage.values()]
                pending += [v[1] for v in self.verifies.values()]
                pending += [v[-1] for stage in (self.audit_gen, self.audits, self.extra_refs, self.extra_runs)
                            for v in stage.values()]
                wait(pending, return_when=FIRST_COMPLETED)
            self.top_up()
        return self.tasks

    def in_flight(self) -> int:
        return len(self.firsts) + len(self.mgen) + len(self.seconds) + len(self.audit_gen) + len(self.audits) + \
            len(self.verifies) + len(self.extra_refs) + len(self.extra_runs)

    def _warn(self, what: str, e: BaseException) -> None:
        logger.warning("trl_unittest build: %s: %s: %s", what, type(e).__name__, e, exc_info=True)
        if len([w for w in self.report.warnings if w.startswith(R_BUILDER_ERROR)]) < MAX_ERROR_WARNINGS:
            self.report.warnings.append(f"{R_BUILDER_ERROR}: {what}: {type(e).__name__}: {e}"[:300])

    @contextmanager
    def guarded(self, k: int, w: "Work | Planned | Task"):
        """Runs one function's step; if it raises, the function leaves every stage and is dropped as
        ``R_BUILDER_ERROR``, named in the report's warnings."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - counted and named, see R_BUILDER_ERROR
            for stage in (self.firsts, self.mgen, self.seconds, self.audit_gen, self.audits, self.extra_refs,
                          self.extra_runs, self.verifies, self.tasks):
                stage.pop(k, None)
            self.report.drop(R_BUILDER_ERROR)
            self._warn(w.task_id if isinstance(w, Task) else w.cand.task_id, e)

    def second_pool(self, w: Work):
        return self.pb if self.b._pool_for(w) is self.pa else self.pa

    def result(self, pool, fut, make_program):
        """A program's result; one whose grading hit gh-106905 (a SystemError raised on the pool's thread) is run
        again, up to ``RETRIES`` times."""
        for _ in range(RETRIES):
            try:
                return fut.result()
            except SystemError:
                self.b.retries += 1
                fut = pool.submit(make_program())
        return fut.result()

    def submit_first(self, k: int, item: Planned) -> None:
        w = self.b._work(item.cand, item.fingerprint, item.doctest_expected, item.exprs)
        self.firsts[k] = (w, self.b._pool_for(w).submit(self.b.reference_program(w)))
        self.report.programs += 1

    def submit_second(self, k: int, w: Work) -> None:
        prog = self.b._retrying(lambda r: self.b.second_program(w), report=self.report)
        self.seconds[k] = (w, self.second_pool(w).submit(prog))
        self.report.programs += 1

    def top_up(self) -> None:
        """Start files (and the next shard's, once these are all started) and admitted functions while there
        is room."""
        b, report = self.b, self.report
        while len(self.file_futs) < 2 * self.n_static + 2 and self.in_flight() <= self.limit:
            f = next(self.files_it, None) if self.max_seen is None or report.seen < self.max_seen else None
            if f is None:
                if self.to_prefetch and isinstance(self.static, Spawned):
                    for g in self.to_prefetch:  # keyed by identity: the next call gets these very objects
                        b._prefetched[id(g)] = (g, self.static.submit(worker_file, g))
                    self.to_prefetch.clear()
                break
            _, fut = b._prefetched.pop(id(f), (None, None))
            if fut is None:
                b.files_started += 1
                if b.files_started == static_stages.GROW_AFTER_FILES:
                    b.grow_static()
                    self.static = b.static_executor()
                    self.n_static = getattr(self.static, "_max_workers", 1)
                fut = self.static.submit(worker_file, f)
            self.file_futs.append((f, fut))
        while self.in_flight() <= self.limit:
            nxt = next(self.admitted_it, None)
            if nxt is None:
                break
            self.submit_first(*nxt)

    def step(self) -> bool:
        """Move every function whose current stage is done to its next; whether any moved."""
        moved = [self.files_done(), self.firsts_done(), self.mutants_done(), self.seconds_done(),
                 self.audit_gen_done(), self.audits_done(), self.extra_refs_done(), self.extra_runs_done(),
                 self.verifies_done()]
        return any(moved)

    def files_done(self) -> bool:
        did = False
        while self.file_futs and self.file_futs[0][1].done():
            f, fut = self.file_futs.pop(0)
            try:
                fr: FileResult = fut.result()
            except Exception as e:  # noqa: BLE001 - counted and named (R_BUILDER_ERROR)
                self.report.files += 1
                self.report.files_failed += 1
                self._warn(f"{f.source}:{f.path}", e)
                did = True
                continue
            self.report.merge(fr.report)
            for item in fr.planned:
                if self.b.admit(item.fingerprint, item.contaminated, self.report):
                    with self.guarded(self.seq, item):
                        self.submit_first(self.seq, item)
                    self.seq += 1
            if self.progress is not None:
                self.progress.update(1)
            did = True
        return did

    def firsts_done(self) -> bool:
        done = [k for k, (_, f) in self.firsts.items() if f.done()]
        for k in done:
            w, f = self.firsts.pop(k)
            with self.guarded(k, w):
                ra = self.result(self.b._pool_for(w), f, lambda: self.b.reference_program(w))
                reason = self.b._retrying(self.b.screen_reference, w, ra, report=self.report)
                if reason:
                    self.report.drop(reason)
                elif len(w.usable) < self.b.config.min_tests:  # too few tests whatever the mutants do: no
                    self.submit_second(k, w)  # mutants; finish() drops it (no_usable_tests) if the rerun agrees
                elif self.b._retrying(lambda r: selection.no_suite_possible(w, self.b.config), report=self.report):
                    # constant bodies pass too many of any suite: finish() can only drop it (trivial_body_passes).
                    # The rerun goes on (the function is tested like any other); mutants and run probes would
                    # change nothing
                    w.no_suite = True
                    self.report.mutation_skipped_trivial += 1
                    self.submit_second(k, w)
                else:
                    w.probes = self.b._retrying(lambda r: self.b.probes_for(w), report=self.report)
                    self.mgen[k] = (w, self.static.submit(worker_mutants, w.cand.func_src, w.cand.entry_point))
        return bool(done)

    def mutants_done(self) -> bool:
        done = [k for k, (_, f) in self.mgen.items() if f.done()]
        for k in done:
            w, f = self.mgen.pop(k)
            with self.guarded(k, w):
                w.mutants = f.result()
                self.submit_second(k, w)
        return bool(done)

    def seconds_done(self) -> bool:
        b, report = self.b, self.report
        done = [k for k, (_, f) in self.seconds.items() if f.done()]
        for k in done:
            w, f = self.seconds.pop(k)
            with self.guarded(k, w):
                r2 = self.result(self.second_pool(w), f, lambda: b.second_program(w))
                if w.mutants and r2.status != "ran":
                    # a mutant broke the shared program (or it failed for another reason): run the rerun and the
                    # probes alone; the score stays unmeasured, and if the rerun fails again, that decides
                    w.mutants_broke, w.mutants = r2.status, []
                    self.submit_second(k, w)
                    continue
                rerun, mutants_result = b.split_second(w, r2)
                reason = b._retrying(b.judge_reference, w, rerun, report=report)
                if reason:
                    report.drop(reason)
                    continue
                report.tested += 1
                self.after_second(k, w, mutants_result)
        return bool(done)

    def after_second(self, k: int, w: Work, rm) -> None:
        """The function's audit, else its third round, else its test choice."""
        if not self.start_audit(k, w, rm) and not self.start_round(k, w, rm):
            self.conclude(k, w, rm)

    def start_audit(self, k: int, w: Work, rm) -> bool:
        """Starts the function's audit (see the module docstring) when its sample left mutation sites out and a
        test choice on the sample would keep it (or drop it only for its score); whether it started. A choice that
        says otherwise is kept for the next step (``w.trial``): nothing it depends on changes without an audit."""
        b, cfg = self.b, self.b.config
        if w.audited or cfg.max_mutants_kept <= cfg.max_mutants or len(w.mutants) < cfg.max_mutants or \
                rm is None or rm.status != "ran":
            return False
        w.audited = True
        trial_report = BuildReport()
        out = b._retrying(b.finish, w, rm, report=trial_report)
        if not selection.more_mutants_may_help(out):
            w.trial = (out, trial_report)
            return False
        self.audit_gen[k] = (w, rm, self.static.submit(worker_mutants, w.cand.func_src, w.cand.entry_point,
                                                       len(w.mutants), cfg.max_mutants_kept))
        return True

    def audit_gen_done(self) -> bool:
        b = self.b
        done = [k for k, v in self.audit_gen.items() if v[-1].done()]
        for k in done:
            w, rm, f = self.audit_gen.pop(k)
            with self.guarded(k, w):
                extra = f.result()
                if not extra:  # no site beyond the sample after all (duplicates, mutants that do not compile)
                    self.after_second(k, w, rm)
                    continue
                wa, prog = b._retrying(lambda r: observe.audit_program(w, extra, b.config), report=self.report)
                self.audits[k] = (w, rm, wa, self.second_pool(w).submit(prog))
                self.report.audits += 1
                self.report.programs += 1
        return bool(done)

    def audits_done(self) -> bool:
        """The audit's result: the kills of the added mutants join the function's (``Work.extra_kills``); an
        audit whose program broke (a mutant that takes the process down) is discarded: the sample stands."""
        b = self.b
        done = [k for k, v in self.audits.items() if v[-1].done()]
        for k in done:
            w, rm, wa, f = self.audits.pop(k)
            with self.guarded(k, w):
                ra = self.result(self.second_pool(w), f, lambda: observe.second_program(wa, b.config))
                if ra.status != "ran":
                    self.report.audits_discarded += 1
                else:
                    _, rma = b.split_second(wa, ra)
                    candidates, _ = selection.candidate_tests(w, BuildReport())
                    kills, n, _ = b._retrying(lambda r: kill_matrix(wa, candidates, rma), report=self.report)
                    w.extra_mutants, w.extra_kills = wa.mutants, kills
                    self.report.audit_mutants += n
                self.after_second(k, w, rm)
        return bool(done)

    def start_round(self, k: int, w: Work, rm) -> bool:
        """Starts the function's third round (:mod:`.targeted`) when it is worth one; whether it started."""
        b, cfg = self.b, self.b.config
        trial, w.trial = w.trial, None
        survivors, trial = b._retrying(lambda r: targeted.survivors_worth_a_round(w, rm, cfg, r, trial),
                                       report=self.report)
        rnd = b._retrying(lambda r: targeted.start_round(w, survivors, cfg), report=self.report) if survivors else None
        if rnd is None:
            if trial is not None:  # the trial choice is the final one: no round changed the function's inputs
                self.conclude(k, w, rm, trial)
                return True
            return False
        self.report.extra_rounds += 1
        self.extra_refs[k] = (w, rm, rnd, b._pool_for(w).submit(b.reference_program(rnd.work)))
        self.report.programs += 1
        return True

    def conclude(self, k: int, w: Work, rm, trial: tuple | None = None) -> None:
        """Chooses the tests (:func:`.selection.finish`, or the trial choice already made: ``(result, its
        report)``): the task, its verification run, or a drop."""
        b, report = self.b, self.report
        if trial is not None:
            out, trial_report = trial
            report.merge(trial_report)
        else:
            out = b._retrying(b.finish, w, rm, report=report)
        if isinstance(out, str):
            report.drop(out)
        elif b.config.verify_hash_seed is not None and \
                may_depend_on_hash(w.cand.func_src, w.cand.context, tuple(t.expr for t in out.tests if t.expr)):
            # a fresh process under a third seed: checks the order of the tests (state) and of sets at once
            reason = R_ORDER if may_keep_state(w.cand.func_src, w.cand.context) else R_NONDET
            pool = b.verify_pool()
            self.verifies[k] = (out, pool.submit(b.verify_program(out)), pool, reason)
            report.programs += 1
        elif may_keep_state(w.cand.func_src, w.cand.context):
            pool = b._pool_for(w)
            self.verifies[k] = (out, pool.submit(b.verify_program(out)), pool, R_ORDER)
            report.programs += 1
        else:
            self.tasks[k] = out
            report.kept += 1

    def extra_refs_done(self) -> bool:
        """The aimed inputs' first run (traced, the function's first pool): screened as a first run is; then their
        rerun with the survivors and probes on the other pool. A round whose run cannot be used is discarded."""
        b = self.b
        done = [k for k, v in self.extra_refs.items() if v[-1].done()]
        for k in done:
            w, rm, rnd, f = self.extra_refs.pop(k)
            with self.guarded(k, w):
                ra = self.result(b._pool_for(w), f, lambda: b.reference_program(rnd.work))
                if b._retrying(b.screen_reference, rnd.work, ra, report=BuildReport()):
                    self.report.extra_rounds_discarded += 1
                    self.conclude(k, w, rm)
                    continue
                prog = b._retrying(lambda r: b.second_program(rnd.work), report=self.report)
                self.extra_runs[k] = (w, rm, rnd, self.second_pool(w).submit(prog))
                self.report.programs += 1
        return bool(done)

    def extra_runs_done(self) -> bool:
        b = self.b
        done = [k for k, v in self.extra_runs.items() if v[-1].done()]
        for k in done:
            w, rm, rnd, f = self.extra_runs.pop(k)
            with self.guarded(k, w):
                r3 = self.result(self.second_pool(w), f, lambda: b.second_program(rnd.work))
                if r3.status != "ran":  # a survivor broke the shared program: the function goes on without the round
                    self.report.extra_rounds_discarded += 1
                else:
                    rerun, rm3 = b.split_second(rnd.work, r3)
                    b._retrying(lambda r: targeted.merge_round(w, rnd, rerun, rm3, r), report=self.report)
                self.conclude(k, w, rm)
        return bool(done)

    def verifies_done(self) -> bool:
        done = [k for k, (_, f, _, _) in self.verifies.items() if f.done()]
        for k in done:
            task, f, pool, reason = self.verifies.pop(k)
            with self.guarded(k, task):
                rv = self.result(pool, f, lambda: self.b.verify_program(task))
                if rv.all_passed:
                    self.tasks[k] = task
                    self.report.kept += 1
                else:
                    self.report.drop(reason)
        return bool(done)
