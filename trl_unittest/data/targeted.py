"""The third round: inputs aimed at the mutants that the generated inputs leave alive.

The first two programs (:mod:`.observe`) choose tests only among the inputs generated up front
(:mod:`.inputs`). For a function that :func:`.selection.finish` would keep (or would drop only for a low mutation
score or kill fraction) and whose mutants are not all killed by its usable inputs, :func:`survivors_worth_a_round`
names the survivors and :func:`targeted_inputs` makes more inputs aimed at them, inside the function's contract:

- neighbours of the usable inputs, one argument changed at a time, starting from the inputs that reach a
  survivor's line: ints +-1, 0 and negated; floats +-1, halved, 0; strings emptied, cut to one character, with a
  repeated character, reversed, with a character the code looks for inserted once or twice (the short string
  constants of the body and of the carried context: a separator, a quote) or a non-ASCII, a non-BMP, a control,
  a quoting or an escaping one; bytes likewise; lists and tuples with a number of the body (or one either side)
  as an item when they hold numbers, empty, one item, with an item repeated (equal adjacent items: ``<``
  against ``<=``), reversed, with the items negated; a scalar argument set to an item of a list argument of its
  kind (a value the list holds, twice once repeated); a parameter the body calls (``key=``) given a simple
  callable (``abs``, ``len``, ``str.lower``, ``str``). Each changed argument keeps its kind, and a list the
  docstring says is sorted stays sorted (:func:`.contract.sorted_params`), so the inputs stay inside the contract
  the first inputs were generated in (:mod:`.contract`);
- when the neighbours leave room, more inputs from the same contract, generated with another seed
  (:func:`.inputs.generate_inputs`: it costs about as much as all the neighbours together, so it only fills up).

They run as the other inputs do, through the execution pools: the reference, traced, under the first hash seed
(:func:`.observe.reference_program`, screened as the first run is), then under the other hash seed the reference
again, the survivors and the trivial-body probes (:func:`.observe.second_program`). Inputs whose two runs differ are
dropped (and counted as nondeterministic); the others join the function's usable inputs with the survivors they
kill and the probes they let pass (:func:`merge_round`), and :func:`.selection.finish` chooses the suite again among
all of them: the probes' limit holds on the final suite as on any other.

A round that cannot be used (the reference times out or fails on the new inputs, or a survivor breaks the shared
program) is discarded and the function goes on with the inputs it had (counted: ``extra_rounds_discarded``).
Mutants that survive the round too, i.e. give the reference's outcome on every usable input, the aimed ones
included, while some of those inputs run the mutated line, are *likely equivalent*: :func:`.selection.finish` sets
them aside from the score and counts them (``mutants_likely_equivalent``). A survivor on a line that no input runs
is no evidence of equivalence (only of a branch the inputs miss) and stays in the score, as do the survivors of a
function without a round (none needed or started, no aimed input, a discarded round).

Hand-written: mutation tools report survivors but do not generate inputs; test generators (Pynguin) search over
whole modules, far beyond the time one function gets here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.contract import sorted_params, usage_kinds
from trl_unittest.data.extract import parse as _parse
from trl_unittest.data.inputs import body_constants, generate_inputs, to_source
from trl_unittest.data.observe import Work, new_work, observe, same_observation
from trl_unittest.execution.values import LiteralError, decode_value

# simple callables for a parameter the body calls: builtins, so a test stays one readable call
CALLABLES = ("abs", "len", "str.lower", "str")
# characters string code often treats apart: non-ASCII, beyond the BMP (surrogate pairs), a control character,
# quotes, an escape, a space
SPECIAL_CHARS = ("\u00e9", "\U0001f600", "\n", '"', "'", "\\", " ")
SEEDS = 4  # the inputs whose neighbours come first


@dataclass
class Round:
    """A function's third round: the inputs aimed at its survivors, and what they did."""

    survivors: list[int]  # indices into the function's mutants
    work: Work  # the aimed inputs as a function of their own: its mutants are the survivors
    kills: dict[int, set[int]] = field(default_factory=dict)  # function input -> survivors (function's indices)
    passes: dict[str, set[int]] = field(default_factory=dict)  # probe operator -> function inputs it passes
    used: bool = False  # the round ran and its inputs joined the function's


def survivors_worth_a_round(w: Work, rm, cfg: BuilderConfig, report: BuildReport,
                            trial: tuple | None = None) -> tuple[list[int], tuple | None]:
    """(the mutants no usable input kills, when a round for them is worth running: the function would be kept
    (or dropped only for its mutation score) and has not had its round, else []; the trial choice that decided it,
    ``(selection.finish's result, its report)``, or None when none was made). Without a round the trial is the
    function's final choice: the caller uses it instead of choosing again. ``trial``: one made already on the
    same kills (the audit's decision), used instead of a new one."""
    from trl_unittest.data import selection

    if cfg.max_extra_inputs <= 0 or not w.mutants or w.round is not None or rm is None or rm.status != "ran":
        return [], trial
    candidates, _ = selection.candidate_tests(w, BuildReport())
    kills, n_mut, _ = selection.kills_of(w, candidates, rm)
    dead = set().union(*kills.values()) if kills else set()
    survivors = [j for j in range(n_mut) if j not in dead]
    if not survivors:  # (the cheap test first: the trial choice below costs as much as the final one)
        return [], trial
    if trial is None:
        trial_report = BuildReport()
        trial = (selection.finish(w, rm, cfg, trial_report), trial_report)
    worth = selection.more_mutants_may_help(trial[0])
    return (survivors if worth else []), trial


def start_round(w: Work, survivors: list[int], cfg: BuilderConfig) -> Round | None:
    """The round for ``survivors`` (None when no new input could be made); ``w.round`` is set either way, so that a
    function gets one round at most."""
    exprs = targeted_inputs(w, survivors, cfg)
    w3 = new_work(w.cand, w.fingerprint, [], exprs)
    w3.mutants = [w.all_mutants[j] for j in survivors]
    w3.probes = w.probes
    w.round = Round(survivors, w3)
    return w.round if exprs else None


def merge_round(w: Work, rnd: Round, rerun, rm3, report: BuildReport) -> None:
    """Joins the round's inputs whose rerun (``rerun``, under the other hash seed) agrees with their first run to
    the function's usable inputs, with the survivors they kill and the probes they let pass (``rm3``: the runners'
    part of the round's second program)."""
    from trl_unittest.data import selection
    from trl_unittest.data.scoring import kill_matrix

    w3 = rnd.work
    # (over the inputs the rerun ran, not w3.usable, which this narrows: a retried call gives the same)
    agree = [i for i, t in zip(w3.mutant_inputs, rerun.tests) if same_observation(w3.obs[i], observe(t))]
    report.nondeterministic_tests += len(w3.mutant_inputs) - len(agree)
    w3.usable = agree
    candidates, _ = selection.candidate_tests(w3, BuildReport())
    kills3, _, passes3 = kill_matrix(w3, candidates, rm3)
    offset = len(w.tests)
    w.tests.extend(w3.tests)
    w.obs.extend(w3.obs)
    w.usable.extend(offset + i for i in agree)
    rnd.kills = {offset + i: {rnd.survivors[r] for r in kills3[i]} for i in agree}
    rnd.passes = {op: {offset + i for i in s} for op, s in passes3.items()}
    rnd.used = True


# ------------------------------------------------------------------------------------------ aimed inputs

def targeted_inputs(w: Work, survivors: list[int], cfg: BuilderConfig) -> list[str]:
    """At most ``cfg.max_extra_inputs`` new call expressions aimed at ``survivors`` (see the module docstring):
    neighbours of the usable inputs, those reaching a survivor's line first, taken in turn from each input so
    that many contribute; then, if there is room, inputs from the contract under another seed."""
    cand = w.cand
    seen = {t.expr for t in w.tests}
    mutants = w.all_mutants
    lines = {mutants[j].line for j in survivors}
    # seeds: inputs that reach a survivor's line, then those with a value (not an exception), the richer first
    order = sorted(w.usable, key=lambda i: (-len(lines & set(w.obs[i].lines)), w.obs[i].kind != "value",
                                            -len(w.tests[i].expr), i))
    names = [p.name for p in cand.params]
    keep_sorted = sorted_params(cand.docstring, names)
    called = {k for k, v in usage_kinds(cand.func_src).items() if not v}  # parameters the body calls
    constants = body_constants(cand.func_src) + _context_constants(cand.context)
    inserts = [c for c in constants if type(c) in (str, bytes) and 0 < len(c) <= 3][:6]
    inserts += [c for c in constants if type(c) in (int, float)][:4]  # items a list of numbers gets
    lists: list[list[str]] = []
    for i in order:
        opened, near = neighbours(w.tests[i].expr, cand, keep_sorted, called, inserts)
        # a callable opens a branch no literal reaches: it comes first, with neighbours of its own call
        lists.append(opened + near)
        if opened and len(lists) <= SEEDS:
            lists.insert(0, neighbours(opened[0], cand, keep_sorted, called, inserts)[1])
    out: list[str] = []

    def add(expr: str) -> bool:
        if expr not in seen:
            seen.add(expr)
            out.append(expr)
        return len(out) >= cfg.max_extra_inputs

    # in turn from the first SEEDS inputs' lists (each input's neighbours in turn), then from the others'
    for group in (lists[:SEEDS], lists[SEEDS:]):
        for k in range(max((len(n) for n in group), default=0)):
            for n in group:
                if k < len(n) and add(n[k]):
                    return out
    # room left (few usable inputs, or none a plain call): inputs from the contract under another seed
    n_doc = len(w.doctest_expected)
    for e in generate_inputs(cand, [t.expr for t in w.tests[:n_doc]], max_inputs=cfg.max_inputs, seed=cfg.seed + 1):
        if add(e):
            break
    return out


def neighbours(expr: str, cand, keep_sorted: set[str], called: set[str],
               inserts: list = ()) -> tuple[list[str], list[str]]:
    """Calls next to ``expr`` (a call of the entry point with literal arguments), one argument changed at a time:
    (those giving a parameter the body calls a callable, the others: a scalar set to an item of a list, then
    values next to each argument's); ([], []) for any other expression."""
    try:
        call = _parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError):
        return [], []
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == cand.entry_point) or \
            any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return [], []
    positional = [p.name for p in cand.params if p.kind in ("posonly", "pos")]
    if len(call.args) > len(positional):
        return [], []
    # the call's arguments by parameter name: (source text, literal value or _OPEN)
    args: dict[str, tuple[str, Any]] = {}
    for name, node in list(zip(positional, call.args)) + [(k.arg, k.value) for k in call.keywords]:
        args[name] = (ast.unparse(node), _literal(node))
    n_pos = len(call.args)

    def render(changed: dict[str, str]) -> str:
        texts = {k: v[0] for k, v in args.items()} | changed
        parts = [texts[name] for name in positional[:n_pos]]
        parts += [f"{k}={v}" for k, v in texts.items() if k not in positional[:n_pos]]
        return f"{cand.entry_point}({', '.join(parts)})"

    out: list[str] = []

    def push(changed: dict[str, str | None]) -> None:
        if any(v is None for v in changed.values()):  # a value with no short literal (to_source): no such call
            return
        e = render(changed)
        if e != expr and e not in out:
            out.append(e)

    for p in cand.params:  # a parameter the body calls, absent or None here: a simple callable
        if p.name in called and p.kind in ("pos", "kwonly") and args.get(p.name, ("None", None))[1] is None:
            for fn in CALLABLES:
                push({p.name: fn})
    n_opened = len(out)
    for name, (_, v) in args.items():  # a scalar set to an item of a list argument of its kind
        for other, (_, seq) in args.items():
            if other == name or type(seq) not in (list, tuple) or not seq or type(v) not in (int, float, str):
                continue
            items = [x for x in seq if type(x) is type(v)]
            if not items:
                continue
            mid = items[len(items) // 2]
            repeated = _sorted_if(type(seq)(list(seq) + [mid]), other in keep_sorted)
            if repeated is not None:
                push({name: to_source(mid), other: to_source(repeated)})
            for x in (mid, items[0], items[-1]):
                push({name: to_source(x)})
    per_arg = [[(name, x) for x in value_neighbours(v, name in keep_sorted, inserts)] for name, (_, v) in args.items()]
    for k in range(max((len(n) for n in per_arg), default=0)):  # the arguments in turn: each varies early
        for n in per_arg:
            if k < len(n):
                push({n[k][0]: n[k][1]})
    return out[:n_opened], out[n_opened:]


def _context_constants(context: str) -> list:
    """Short string and bytes constants that the carried context names at module level (``TICK = "'"``)."""
    try:
        tree = _parse(context) if context.strip() else None
    except (SyntaxError, ValueError, RecursionError):
        return []
    return [s.value.value for s in (tree.body if tree else ()) if isinstance(s, ast.Assign) and
            isinstance(s.value, ast.Constant) and type(s.value.value) in (str, bytes)]


class _Open:  # an argument that is no literal (left as it is)
    pass


_OPEN = _Open()


def _literal(node: ast.expr) -> Any:
    try:
        return decode_value(ast.unparse(node))
    except (LiteralError, ValueError, TypeError, RecursionError):
        return _OPEN


def _sorted_if(v, must: bool):
    if not must:
        return v
    try:
        return type(v)(sorted(v))
    except TypeError:
        return None


def value_neighbours(v: Any, keep_sorted: bool = False, inserts: list = ()) -> list[str]:
    """Literal source texts of values of ``v``'s kind next to it (see the module docstring); a list the contract
    says is sorted stays sorted; ``inserts``: the body's constants: short strings or bytes a string or bytes value
    gets inserted in its middle, numbers a list of numbers gets as an item (each, and one either side: the
    boundaries of ``v > 4 and v != 5``, which items drawn at random rarely hold)."""
    t = type(v)
    cands: list[Any]
    if t is bool:
        cands = [not v]
    elif t is int:
        cands = [v - 1, v + 1, 0, -v]
    elif t is float:
        cands = [v - 1.0, v + 1.0, v / 2, 0.0]
    elif t in (str, bytes):
        # the characters the code looks for first (they reach its branches), then the plain edits
        chars = [c for c in inserts if type(c) is t]
        chars += [c if t is str else c.encode("utf-8") for c in SPECIAL_CHARS]
        mid = len(v) // 2
        cands = [v[:mid] + c + v[mid:] for c in chars]
        cands += [v[:mid] + c + v[mid:] + c for c in chars]  # twice: a split in three, a quoted part
        cands += [v[:0], v[:1], v + v[-1:], v[::-1]] if v else []
    elif t in (list, tuple):
        cands = []
        if v and all(type(x) in (int, float) for x in v):  # (an empty list's items may be strings: `strs: list[str]`)
            mid = len(v) // 2
            numbers = [c + d for c in inserts if type(c) in (int, float) for d in (0, -1, 1)]
            cands += [t(list(v[:mid]) + [x] + list(v[mid:])) for x in dict.fromkeys(numbers)]
        cands += [t(), t(v[:1])] if v else []
        if v:
            mid = len(v) // 2
            cands += [t(list(v[:mid + 1]) + list(v[mid:])), t(reversed(v))]
            if all(type(x) is int for x in v):
                cands.append(t(-x for x in v))
        cands = [c for c in (_sorted_if(c, keep_sorted) for c in cands) if c is not None]
    elif t is dict:
        cands = [{}] + ([dict(list(v.items())[:-1])] if len(v) > 1 else [])
    elif t in (set, frozenset):
        cands = [t()] + ([t(sorted(v, key=repr)[:-1])] if len(v) > 1 else [])
    else:
        return []
    out = []
    for c in cands:
        s = to_source(c)
        if s is not None and c != v and s not in out:
            out.append(s)
    return out
