"""Trivial-body probes: the bodies a reward-hacking policy tries first, checked against every candidate test.

Two kinds. Bodies whose result depends on the arguments (``return <an argument>``, ``return list/sorted/set/
tuple(<first argument>)``) are *run*: they keep the function's signature (its ``def`` line and docstring, as the
prompt shows them) under another name and run as mutants do, in the second program, on every usable input
(:func:`make_probes`). Bodies that return one constant or raise one exception (``return None``, ``return 0``,
``return []``, the most common expected value, ``raise ValueError``...) need no run: such a body passes exactly the
tests that expect that value or that exception, so every distinct expected outcome is a probe
(:func:`outcome_probes`). And the bodies that must run need no run either on a call whose arguments are all
literals: what ``return x`` or ``sorted(x)`` gives there is known beforehand (:func:`literal_outcome`: 35k of the
second programs' 125k runs on the builder benchmark's set).

:mod:`.selection` keeps a task only when every probe fails most of its chosen tests
(``BuilderConfig.max_trivial_pass``; the default is below the ``partial`` reward's zero, so no probe earns a
positive reward). Hand-written: probing a reward with the answers a lazy policy would give is specific to this
task format; mutation tools make faulty variants of the code, not trivial replacements of it.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import Any

from trl_unittest.data.extract import Candidate
from trl_unittest.data.extract import parse as _parse
from trl_unittest.data.mutation import Mutant
from trl_unittest.execution.values import LiteralError, decode_shared, values_close, values_equal
from trl_unittest.execution.worker import Unencodable, encode_value


def probe_bodies(cand: Candidate) -> list[tuple[str, str]]:
    """(probe name, one-line body) of the probes that must run: each argument passed through, and ``list``,
    ``sorted``, ``set``, ``tuple`` of the first one."""
    out: dict[str, str] = {}
    for p in cand.params:  # module-level functions only (methods are no candidates): `cls` is an argument too
        out[f"arg:{p.name}"] = f"return {p.name}"
    first = next((p.name for p in cand.params if p.kind in ("posonly", "pos")), None)
    if first is not None:
        for fn in ("list", "sorted", "set", "tuple"):
            out[f"{fn}:{first}"] = f"return {fn}({first})"
    return list(out.items())


def outcome_probes(obs: dict[int, Any], rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> dict[str, set[int]]:
    """The constant bodies as probes without a run: for each distinct outcome among the usable inputs'
    observations (``{input: Observation}``), the inputs whose test that outcome passes, judged as the tests judge:
    equal values (``1`` and ``1.0`` are one), and close ones where the expected value holds a float (the tests'
    ``approx`` tolerance)."""
    groups: dict[str, set[int]] = {}
    values: dict[int, Any] = {}
    for i, o in obs.items():
        if o.kind == "raises":
            groups.setdefault(f"raise:{o.text}", set()).add(i)
        elif o.kind == "value":
            try:
                values[i] = decode_shared(o.text)  # only compared: one decoding shared with the kill matrix's
            except LiteralError:
                groups.setdefault(f"const:{o.text}", set()).add(i)
    # Most inputs share their outcome with others (decode_shared gives one text one object): each comparison is
    # made once per pair of objects, not per pair of inputs (the same verdicts: both functions are pure)
    memo: dict[tuple, bool] = {}

    def equal(w: Any, v: Any) -> bool:
        key = (id(w), id(v))
        if key not in memo:
            memo[key] = values_equal(w, v)
        return memo[key]

    def close(w: Any, v: Any) -> bool:
        key = (id(w), id(v), None)
        if key not in memo:
            memo[key] = values_close(w, v, rel_tol, abs_tol)
        return memo[key]

    # the inputs of each distinct object, and the first of them: every verdict below is per object, so it is asked
    # once per object rather than once per input (the same verdicts, in a fraction of the comparisons)
    holders: dict[int, list[int]] = {}
    for j, w in values.items():
        holders.setdefault(id(w), []).append(j)
    distinct = []  # (object, its first input, its inputs, whether it holds a float)
    for js in holders.values():
        w = values[js[0]]
        distinct.append((w, min(js), js, has_float(w)))
    for i, v in values.items():
        label = f"const:{obs[i].text}"
        if any(first < i and equal(w, v) for w, first, _, _ in distinct):  # the same constant, seen already
            continue
        groups[label] = {j for w, _, js, floats in distinct if equal(w, v) or (floats and close(w, v)) for j in js}
    return groups


def has_float(v: Any) -> bool:
    if type(v) in (float, complex):
        return True
    if type(v) in (list, tuple, set, frozenset):
        return any(has_float(x) for x in v)
    if type(v) is dict:
        return any(has_float(x) for x in v.values())
    return False


def make_probes(cand: Candidate) -> list[Mutant]:
    """The probes of :func:`probe_bodies` as renamed functions (``Mutant`` records, operator ``probe:...``) that
    run next to the reference and its mutants."""
    header = cand.header if cand.header.endswith("\n") else cand.header + "\n"
    pattern = re.compile(r"^(\s*(?:async\s+)?def\s+)" + re.escape(cand.entry_point) + r"(\s*\()", re.M)
    if not pattern.search(header):
        return []
    body_lines = [ln for ln in cand.body.splitlines() if ln.strip()]
    indent = re.match(r"\s*", body_lines[0]).group(0) if body_lines else "    "
    out = []
    for k, (label, body) in enumerate(probe_bodies(cand)):
        name = f"{cand.entry_point}__probe_{k}"
        src = pattern.sub(lambda m: m.group(1) + name + m.group(2), header, count=1) + f"{indent}{body}\n"
        out.append(Mutant(operator=f"probe:{label}", line=0, source=src, name=name))
    return out


# the run probes computed on literal arguments: the built-in each applies to the first argument, and the types
# whose iteration order is fixed by the literal (a set's or frozenset's order depends on the hash seed)
_APPLIED = {"list": list, "sorted": sorted, "set": set, "tuple": tuple}
_ORDERED = (list, tuple, str, bytes, dict)


@functools.lru_cache(maxsize=256)
def _named_in(context: str, func_src: str) -> frozenset[str]:
    """The names of ``_APPLIED`` that the program's text mentions: searched once per function, not once per
    (probe, input) pair."""
    text = context + "\n" + func_src
    return frozenset(name for name in _APPLIED if re.search(rf"\b{name}\b", text))


def bind_literal_call(cand: Candidate, expr: str) -> dict[str, Any] | None:
    """The value each parameter gets when ``expr``, a call of the candidate on literal arguments only
    (``f(1, 'a', k=[2])``), binds it (parameters left to their defaults are absent); None when the expression is
    anything else or the call would not bind (the sandbox must run it). Literals hold no names, so the program's
    own namespace cannot change them; values are built here by ``ast.literal_eval``, as the compiler would."""
    if cand.header.split("def ", 1)[0].strip():  # a decorator may change what a call passes: run it
        return None
    try:
        call = _parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == cand.entry_point):
        return None
    if any(isinstance(n, (ast.Name, ast.Starred, ast.Call)) for a in [*call.args, *call.keywords]
           for n in ast.walk(a)):
        return None
    try:
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None
    if None in kwargs or len(kwargs) != len(call.keywords):  # `**mapping`, or a keyword given twice
        return None
    positional = [p for p in cand.params if p.kind in ("posonly", "pos")]
    vararg = next((p.name for p in cand.params if p.kind == "vararg"), None)
    kwarg = next((p.name for p in cand.params if p.kind == "kwarg"), None)
    bound: dict[str, Any] = {}
    if len(args) > len(positional) and vararg is None:
        return None
    for p, v in zip(positional, args):
        bound[p.name] = v
    if vararg is not None:
        bound[vararg] = tuple(args[len(positional):])
    extra: dict[str, Any] = {}
    by_name = {p.name for p in cand.params if p.kind in ("pos", "kwonly")}
    positional_names = {p.name for p in positional}
    for k, v in kwargs.items():
        if k in by_name and k not in bound:
            bound[k] = v
        elif kwarg is not None and k not in bound and k not in positional_names:
            extra[k] = v
        else:  # unknown, positional-only or already bound: the call raises TypeError
            return None
    if kwarg is not None:
        bound[kwarg] = extra
    if any(p.name not in bound and p.default is None for p in cand.params if p.kind in ("posonly", "pos", "kwonly")):
        return None  # a required argument missing
    return bound


def literal_outcome(cand: Candidate, label: str, bound: dict[str, Any] | None) -> tuple[str, str] | None:
    """What the run probe ``label`` (a name of :func:`probe_bodies`) gives on a call binding ``bound``
    (:func:`bind_literal_call`), as the sandbox would report it: ``("value", its literal text)``, ``("raises",
    exception name)`` or ``("unencodable", "")``; None when it must run."""
    if bound is None:
        return None
    kind, name = label.split(":", 1)
    if name not in bound:  # left to its default, whose value the program computes
        return None
    value = bound[name]
    if kind != "arg":
        if type(value) not in _ORDERED:
            return None
        if kind in _named_in(cand.context, cand.func_src):
            # the program may name something else so (a parameter, a helper, the function itself, a rebound
            # built-in): the probe's `list(x)` would call that
            return None
        try:
            value = _APPLIED[kind](value)
        except TypeError:  # unhashable items (set), items that do not compare (sorted)
            return "raises", "TypeError"
        except Exception:  # (a limit of this process, which the sandbox's need not share)
            return None
    try:
        return "value", encode_value(value)
    except Unencodable:
        return "unencodable", ""
    except Exception:
        return None
