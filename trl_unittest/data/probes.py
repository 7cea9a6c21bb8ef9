"""Trivial-body probes: the bodies a reward-hacking policy tries first, run against every candidate test.

A probe keeps the function's signature (its ``def`` line and docstring, as the prompt shows them) and replaces
the body with one line: ``return None``, ``return <an argument>``, ``return list/sorted/set/tuple(<first
argument>)``, a constant of a type the reference returned (``0``, ``1``, ``''``, ``[]``, ...), the reference's
most common return value, or ``raise <its most common exception>``. Probes run as mutants do (renamed, in the
second program, on every usable input); :mod:`.selection` keeps a task only when every probe fails most of its
chosen tests (``BuilderConfig.max_trivial_pass``; the default is below the ``partial`` reward's zero, so no probe
earns a positive reward).

A body that hard-codes the prompt's examples is no probe here: the examples are part of the suite and at least
``min_hidden_tests`` more are hidden; the benchmark reports the shown share.
"""

from __future__ import annotations

import builtins
import re
from collections import Counter

from trl_unittest.data.extract import Candidate
from trl_unittest.data.mutation import Mutant
from trl_unittest.execution.values import LiteralError, decode_value

# constants a lazy body returns, per type the reference was seen to return
_CONSTANTS = {int: ("0", "1", "-1"), float: ("0.0", "1.0"), bool: ("True", "False"), str: ("''",),
              bytes: ("b''",), list: ("[]",), tuple: ("()",), dict: ("{}",), set: ("set()",),
              frozenset: ("frozenset()",), complex: ("0j",)}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def probe_bodies(cand: Candidate, values: list[str], exceptions: list[str]) -> list[tuple[str, str]]:
    """(probe name, one-line body) for a candidate whose reference returned the literals ``values`` and raised
    ``exceptions`` (type names) on its usable inputs. Decoding a literal parses it: callers on a thread that may
    meet gh-106905 retry."""
    out: dict[str, str] = {"none": "return None"}
    args = [p for p in cand.params if p.kind in ("posonly", "pos", "kwonly") and p.name not in ("self", "cls")]
    for p in cand.params:
        if p.kind in ("posonly", "pos", "kwonly", "vararg", "kwarg"):
            out[f"arg:{p.name}"] = f"return {p.name}"
    if args:
        first = args[0].name
        for fn in ("list", "sorted", "set", "tuple"):
            out[f"{fn}:{first}"] = f"return {fn}({first})"
    types = []
    for text in values:
        try:
            t = type(decode_value(text))
        except LiteralError:
            continue
        if t not in types:
            types.append(t)
    for t in types:
        for c in _CONSTANTS.get(t, ()):
            out.setdefault(f"const:{c}", f"return {c}")
    if values:
        common = Counter(values).most_common(1)[0][0]
        out.setdefault(f"const:{common}", f"return {common}")
    names = [e for e in exceptions if _IDENT.match(e)]
    if names:
        exc = Counter(names).most_common(1)[0][0]
        if isinstance(getattr(builtins, exc, None), type) or exc in cand.context:
            out[f"raise:{exc}"] = f"raise {exc}"
    return list(out.items())


def make_probes(cand: Candidate, values: list[str], exceptions: list[str]) -> list[Mutant]:
    """The probes of :func:`probe_bodies` as renamed functions (``Mutant`` records, operator ``probe:...``) that
    run next to the reference and its mutants."""
    header = cand.header if cand.header.endswith("\n") else cand.header + "\n"
    pattern = re.compile(r"^(\s*(?:async\s+)?def\s+)" + re.escape(cand.entry_point) + r"(\s*\()", re.M)
    if not pattern.search(header):
        return []
    body_lines = [ln for ln in cand.body.splitlines() if ln.strip()]
    indent = re.match(r"\s*", body_lines[0]).group(0) if body_lines else "    "
    out = []
    for k, (label, body) in enumerate(probe_bodies(cand, values, exceptions)):
        name = f"{cand.entry_point}__probe_{k}"
        src = pattern.sub(lambda m: m.group(1) + name + m.group(2), header, count=1) + f"{indent}{body}\n"
        out.append(Mutant(operator=f"probe:{label}", line=0, source=src, name=name))
    return out
