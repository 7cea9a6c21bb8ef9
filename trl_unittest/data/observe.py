"""Observe and record: the sandboxed runs of a reference function on its candidate inputs, and what they say.

Per function two programs run through the executor (batched across functions by :mod:`.pipeline`):

1. :func:`reference_program`: the reference on every candidate input (doctest calls + generated inputs) under one
   hash seed, with line and arc tracing; it stops at the first input that times out (the function is dropped);
   :func:`screen_reference` keeps the inputs worth a second run (not those where the reference raises an exception
   that its text does not declare: :func:`declared_exceptions`);
2. :func:`second_program`: under the other hash seed (another ``PYTHONHASHSEED``, another process) and a wall
   clock moved by ``RERUN_CLOCK_SHIFT``, the reference and all its mutants (renamed) in one program: first the
   usable inputs again (:func:`judge_reference` drops tests whose observations differ), then each mutant on them
   (scored by :mod:`.scoring`).

A kept function that may keep state between calls (:func:`may_keep_state`) runs its chosen tests once more, in
order, in a fresh process (:func:`verify_program`); one that builds a set or calls ``hash``, or is given a set
(:func:`may_depend_on_hash`), does so under a third hash seed.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from typing import Any

from trl_unittest.code import rename_names
from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.extract import Candidate
from trl_unittest.data.extract import parse as _parse
from trl_unittest.data.mutation import Mutant
from trl_unittest.data.probes import bind_literal_call, literal_outcome
from trl_unittest.execution.values import LiteralError, decode_shared, decode_value, values_equal
from trl_unittest.execution.worker import CALLEE
from trl_unittest.tasks import Task, Test

# The second program's wall clock is this far ahead (400 days, 1 hour, 1 minute and 1 second: the year, the day
# of the week and every field of the time of day differ), so that an output that depends on the time (a gzip
# header's mtime, found in boltons' `gzip_bytes`, kept once and dropped once by two builds a second apart) differs
# between the runs, whenever they happen, instead of only when they straddle a second.
RERUN_CLOCK_SHIFT = 400 * 86400 + 3661.0

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
R_LOW_KILLS = "low_kill_fraction"  # the tests kill too few of all the mutants, likely equivalent ones included
R_ORDER = "reference_fails_chosen_tests"

RUNTIME_EFFECT_ERRORS = {"ModuleNotFoundError", "ImportError", "PermissionError", "FileNotFoundError", "OSError",
                         "ConnectionError", "BlockingIOError", "IsADirectoryError", "NotADirectoryError",
                         "ChildProcessError", "ProcessLookupError", "InterruptedError", "SystemExit"}
# exceptions from generated inputs that say "wrong kind of argument", not behaviour worth testing
NOISE_ERRORS = {"TypeError", "AttributeError", "RecursionError", "MemoryError", "NameError", "UnboundLocalError",
                "KeyboardInterrupt", "SystemError", "UnencodableValue"}
_RAISED_NAME = re.compile(r"\braise\s+(?:[A-Za-z_][\w.]*\.)?([A-Za-z_]\w*)")
_ASSERT = re.compile(r"^\s*assert\b", re.M)


def declared_exceptions(cand: Candidate) -> frozenset[str]:
    """The exceptions a function's code commits to: raised by name (``raise X``, ``raise X(...)``,
    ``raise mod.X(...)``) in the function or its carried context, ``AssertionError`` when either asserts. Those its
    docstring names count too (:func:`exception_declared` reads them).

    A generated input on which the reference raises anything else (``IndexError`` on an empty list,
    ``ZeroDivisionError`` for a zero step) is outside the function's contract: the exception is an accident of
    this implementation, and a correct rewrite that returns 0 or raises ``ValueError`` there would fail a test
    that expects it. In a package with several implementations of one function (``rotate_v1``/``rotate_v2``,
    ``benchmarks/RESULTS.md``), siblings disagreed exactly on such inputs. Read from the text with a regular
    expression: a match inside a string or a comment only keeps an input, never drops one."""
    text = cand.func_src + "\n" + (cand.context or "")
    names = set(_RAISED_NAME.findall(text))
    if _ASSERT.search(text):
        names.add("AssertionError")
    return frozenset(names)


def exception_declared(name: str, cand: Candidate | None, raised: frozenset[str]) -> bool:
    """Whether the exception ``name`` (the sandbox's type name) is raised by name in ``raised``
    (:func:`declared_exceptions`) or named in the function's docstring as a word (``Raises: ValueError``, a
    doctest's traceback). Without a candidate (nothing to read) every exception counts as declared."""
    if cand is None:
        return True
    short = name.rsplit(".", 1)[-1]
    return short in raised or re.search(rf"(?<![\w.]){re.escape(short)}\b", cand.docstring or "") is not None


def rename_expr(expr: str, old: str, new: str) -> str:
    """``expr`` with every ``Name`` node ``old`` renamed ``new``, the rest of its text as it was: the names are
    replaced where the parse found them (an unparse of the whole expression costs ten times the parse)."""
    if expr.startswith(old + "(") and expr.count(old) == 1:
        # the common case, a call of the function whose name occurs nowhere else in the text: that one occurrence
        # is the Name node (the parse of a large input would cost up to a millisecond)
        return new + expr[len(old):]
    tree = _parse(expr, mode="eval")
    spans = [(n.lineno, n.col_offset, n.end_col_offset) for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id == old]
    if not spans:
        return expr
    if "\r" in expr:  # the parser's lines also end at a \r: rare, so the unparse instead of counting them
        return ast.unparse(rename_names(tree, {old: new}))
    # positions are (1-based line, UTF-8 byte column); a Name never spans lines
    lines = expr.encode("utf-8").split(b"\n")
    for lineno, start, end in sorted(spans, reverse=True):
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:start] + new.encode("utf-8") + line[end:]
    return b"\n".join(lines).decode("utf-8")


@dataclass
class Observation:
    """What the reference did on one input."""

    kind: str  # "value" | "raises" | "unencodable" | "timeout" | "error"
    text: str = ""  # literal text (value) or exception name (raises)
    time: float = 0.0
    lines: tuple = ()
    arcs: tuple = ()

    def key(self) -> tuple:
        return self.kind, self.text


def outcome(tr) -> tuple[str, str]:
    """:func:`observe`'s ``(kind, text)`` alone: what the kill matrix compares, for ~100k mutant runs a build."""
    if tr.outcome == "timeout":
        return "timeout", ""
    if tr.outcome in ("passed", "failed") and tr.observed is not None:
        return "value", tr.observed
    if (tr.error_type or "").startswith("UnencodableValue"):
        return "unencodable", tr.error_type
    if tr.outcome == "error":
        return "raises", tr.error_type or "Error"
    return "error", tr.error_type or ""


def observe(tr) -> Observation:
    t = tr.time if isinstance(tr.time, float) and math.isfinite(tr.time) else 0.0
    kind, text = outcome(tr)
    if kind in ("timeout", "error"):
        return Observation(kind, text, t)
    return Observation(kind, text, t, tuple(tr.lines or ()), tuple(tuple(a) for a in (tr.arcs or ())))


def same_observation(a: Observation, b: Observation) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind != "value":
        return a.text == b.text
    try:
        return values_equal(decode_shared(a.text), decode_value(b.text))  # a: the first run's, decoded again later
    except LiteralError:
        return a.text == b.text


@dataclass
class Work:
    """One function on its way through the dynamic stages."""

    cand: Candidate
    fingerprint: str
    doctest_expected: list[tuple[str | None, str | None]]  # per doctest input: (expected literal, exception)
    tests: list[Test]  # observe tests (doctest inputs first)
    mutants: list[Mutant]
    obs: list[Observation] = field(default_factory=list)
    usable: list[int] = field(default_factory=list)
    final_tests: list[Test] = field(default_factory=list)
    mutant_inputs: list[int] = field(default_factory=list)  # the usable inputs when the second program was made
    # (runner, input) of each of the second program's runner tests, in order: all pairs but a local mutant's on an
    # input whose reference run never reached its line (it would run as the reference does: not killed)
    runner_pairs: list[tuple[int, int]] = field(default_factory=list)
    # (runner, input) -> (kind, text) of the probes known without a run on that input (.probes.literal_outcome)
    known_runs: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    bindings: dict = field(default_factory=dict)  # expr -> .probes.bind_literal_call's result: second_program
    mutants_broke: str = ""  # status of a second program whose mutants broke it (then rerun without them)
    probes: list[Mutant] = field(default_factory=list)  # trivial bodies (.probes), run after the mutants
    round: Any = None  # its third round (.targeted.Round), once one was started
    no_suite: bool = False  # its first run's constant probes ruled out every suite (.selection.no_suite_possible)
    kill_cache: Any = None  # (second program's runners' result, its kill matrix): see .selection.kills_of
    # the audit (.pipeline): mutants beyond the sample, run on the usable inputs for a function that would be kept;
    # they follow `mutants` in the mutant indices of the kill matrix (.selection.kills_of), the third round, the score
    audited: bool = False
    extra_mutants: list[Mutant] = field(default_factory=list)
    extra_kills: dict[int, set[int]] = field(default_factory=dict)  # usable input -> extra_mutants it kills
    trial: Any = None  # a test choice made before the audit was found not worth it: (result, its report)
    templates: dict = field(default_factory=dict)  # (expr, entry point) -> its test calling CALLEE: second_program

    @property
    def all_mutants(self) -> list[Mutant]:
        """The second program's mutants, then the audit's: the mutant indices of the kill matrix."""
        return self.mutants + self.extra_mutants

    @property
    def runners(self) -> list[Mutant]:
        """What the second program runs on the usable inputs after the reference: mutants, then probes."""
        return self.mutants + self.probes


def new_work(cand: Candidate, fp: str, expected: list, exprs: list[str]) -> Work:
    tests = [Test(kind="call", expr=e, op="eq", expected="None") for e in exprs]
    # mutants are made later, only for functions whose reference runs were usable
    return Work(cand, fp, expected, tests, [])


def reference_program(w: Work, cfg: BuilderConfig):
    """The first run of the reference, traced, on every planned input. One timeout is enough to drop the
    function, so the run stops at the first."""
    from trl_unittest.execution import Program

    timeouts = [cfg.reference_timeout] * len(w.tests)
    return Program(code=w.cand.func_src, tests=w.tests, context=w.cand.context, timeouts=timeouts,
                   trace_lines=True, max_timeouts=1)


def second_program(w: Work, cfg: BuilderConfig):
    """One program under the other hash seed and a shifted clock (``RERUN_CLOCK_SHIFT``): first the inputs the
    first run found usable, again (only those can turn out nondeterministic; a timeout among them ends their run),
    then every mutant and probe on them.
    A mutant that hangs is killed by that input and skips its other inputs (unrun, not counted as kills);
    every other mutant still runs all of its inputs, but a local one (``Mutant.local``) only those whose first run
    reached its line: on the others it computes what the reference does (a fifth of the mutant runs on the
    benchmark set; a kill among them was never seen there but from the operators that are not local). Should
    another hash seed take a path the first run did not, a kill would be missed, never made up: the score errs
    low. A probe whose outcome on an input is known from its literal arguments (:func:`.probes.literal_outcome`)
    does not run there: ``w.known_runs`` holds it."""
    from trl_unittest.execution import Program

    w.mutant_inputs = list(w.usable)
    tests = [w.tests[i] for i in w.usable]
    timeouts = [cfg.reference_timeout] * len(tests)
    groups = [-1] * len(tests)
    callees: list[str | None] = [None] * len(tests)
    context = w.cand.context
    w.runner_pairs = []
    w.known_runs = {}
    if w.runners:
        templates = []
        for i in w.usable:  # second_program runs again for retries and on the third round's work: renamed once
            key = (w.tests[i].expr, w.cand.entry_point)
            if key not in w.templates:
                w.templates[key] = Test("call", rename_expr(key[0], key[1], CALLEE), "eq", "None")
            templates.append(w.templates[key])
        budgets = [max(cfg.mutant_timeout_floor, cfg.mutant_timeout_factor * w.obs[i].time) for i in w.usable]
        reached = [set(w.obs[i].lines) for i in w.usable]
        n_mut = len(w.mutants)
        if w.probes:
            for i in w.usable:
                if w.tests[i].expr not in w.bindings:
                    w.bindings[w.tests[i].expr] = bind_literal_call(w.cand, w.tests[i].expr)
        for j, m in enumerate(w.runners):  # one expression per input, each mutant its callee: compiled once
            for k, i in enumerate(w.usable):
                if m.local and m.line not in reached[k]:
                    continue
                if j >= n_mut:
                    known = literal_outcome(w.cand, m.operator[len("probe:"):], w.bindings[w.tests[i].expr])
                    if known is not None:
                        w.known_runs[(j, i)] = known
                        continue
                w.runner_pairs.append((j, i))
                tests.append(templates[k])
                timeouts.append(budgets[k])
                groups.append(j)
                callees.append(m.name)
        context = (context + "\n\n" if context else "") + "\n\n".join(m.source for m in w.runners)
    return Program(code=w.cand.func_src, tests=tests, context=context, timeouts=timeouts,
                   test_groups=groups, max_timeouts=len(w.runners) + 1, callees=callees,
                   clock_shift=RERUN_CLOCK_SHIFT)


def audit_program(w: Work, extra: list[Mutant], cfg: BuilderConfig) -> tuple[Work, Any]:
    """(the audit's work, its program): the second program (:func:`second_program`: the rerun, then the runners)
    with ``extra`` as its only runners, on the function's usable inputs; :func:`split_second` and
    :func:`.scoring.kill_matrix` of that work read its result."""
    import dataclasses

    wa = dataclasses.replace(w, mutants=list(extra), probes=[], runner_pairs=[], known_runs={}, kill_cache=None,
                             mutant_inputs=[], extra_mutants=[], extra_kills={}, trial=None)
    return wa, second_program(wa, cfg)


def verify_program(task: Task, cfg: BuilderConfig):
    """The kept task as the reward will run it: its reference against the chosen tests, in order, in one
    fresh process. The tests were observed among other calls (all inputs, then mutants sharing the module's
    state), so a function that keeps state between calls can disagree with its own tests here."""
    from trl_unittest.execution import Program

    return Program(code=task.reference, tests=task.tests, context=task.context, test_setup=task.test_setup,
                   timeouts=[cfg.reference_timeout] * len(task.tests))


def split_second(w: Work, r2):
    """(the rerun's result, the runners' (mutants', probes') result or None) of a second program's result."""
    from trl_unittest.execution import ProgramResult

    n = len(w.mutant_inputs)
    rerun = ProgramResult(status=r2.status, tests=r2.tests[:n], error=r2.error)
    if not w.runners:
        return rerun, None
    return rerun, ProgramResult(status=r2.status, tests=r2.tests[n:], error=r2.error)


def status_reason(r) -> str:
    if r.status == "compile_error":
        return R_COMPILE
    if r.status == "import_error":
        return R_RUNTIME_EFFECT if r.error in RUNTIME_EFFECT_ERRORS else R_IMPORT
    return R_SANDBOX


def screen_reference(w: Work, ra, cfg: BuilderConfig, report: BuildReport) -> str | None:
    """Fills w.obs and w.usable (the inputs worth a second run) from the first run; or a drop reason."""
    if ra.status != "ran":
        return status_reason(ra)
    oa = [observe(t) for t in ra.tests]
    w.obs = oa
    if any(o.kind == "raises" and o.text in RUNTIME_EFFECT_ERRORS for o in oa):
        return R_RUNTIME_EFFECT
    if any(o.kind == "timeout" for o in oa):  # non-terminating (or too slow) on some input
        return R_TIMEOUT
    n_doc = len(w.doctest_expected)
    unenc = 0
    usable = []
    raised = declared_exceptions(w.cand) if w.cand is not None and not cfg.keep_undeclared_exceptions else None
    for i, x in enumerate(oa):
        if x.kind == "unencodable":
            unenc += 1
        elif x.kind == "value" and len(x.text) <= cfg.max_value_chars:
            usable.append(i)
        elif x.kind == "raises" and not (x.text.startswith("__candidate__.") or
                                         (x.text in NOISE_ERRORS and i >= n_doc)):
            if raised is not None and i >= n_doc and not exception_declared(x.text, w.cand, raised):
                report.undeclared_exception_inputs += 1  # outside the contract (declared_exceptions)
                continue
            usable.append(i)
    if not usable:
        return R_UNENCODABLE if unenc else R_NO_TESTS
    if sum(oa[i].time for i in usable) > cfg.max_reference_time:
        return R_TIMEOUT
    w.usable = usable
    return None


def judge_reference(w: Work, rb, cfg: BuilderConfig, report: BuildReport) -> str | None:
    """Keeps in w.usable the inputs whose second run (rb, on w.usable) agrees with the first; or a drop
    reason."""
    if rb.status != "ran":
        return status_reason(rb)
    ob = [observe(t) for t in rb.tests]
    if any(o.kind == "raises" and o.text in RUNTIME_EFFECT_ERRORS for o in ob):
        return R_RUNTIME_EFFECT
    if any(o.kind == "timeout" for o in ob):
        return R_TIMEOUT
    usable = [i for i, y in zip(w.usable, ob) if same_observation(w.obs[i], y)]
    nondet = len(w.usable) - len(usable)
    report.nondeterministic_tests += nondet
    if nondet and len(usable) < cfg.min_tests:
        return R_NONDET
    if not usable:
        return R_NO_TESTS
    # all results identical (doctests included): the suite cannot tell the function from a constant
    if len({w.obs[i].key() for i in usable}) == 1 and len(usable) > 1:
        return R_NO_TESTS
    w.usable = usable
    return None


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


_HASHING_CALLS = {"set", "frozenset", "hash"}


def may_depend_on_hash(func_src: str, context: str, exprs: tuple[str, ...] = ()) -> bool:
    """Whether the function (or a carried helper) builds a set or calls ``hash``, or one of its tests' calls
    (``exprs``) passes it a set: the orders of sets of strings change with ``PYTHONHASHSEED``, and the builder's two
    seeds can agree by chance (``top_sort`` popping from a set of strings did, 2026-12-08). Such a kept function
    runs its chosen tests once more under a third seed (``BuilderConfig.verify_hash_seed``)."""
    try:
        trees = [_parse(func_src)] + ([_parse(context)] if context.strip() else [])
        trees += [_parse(e, mode="eval") for e in exprs]
    except (SyntaxError, ValueError, RecursionError):
        return True
    return any(isinstance(node, (ast.Set, ast.SetComp)) or
               (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _HASHING_CALLS)
               for tree in trees for node in ast.walk(tree))


def _immutable(node: ast.AST) -> bool:
    return all(isinstance(n, _IMMUTABLE_LITERALS + (ast.expr_context, ast.operator, ast.unaryop))
               for n in ast.walk(node))
