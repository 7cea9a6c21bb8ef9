"""Trivial-body probes: the bodies a reward-hacking policy tries first, checked against every candidate test.

Two kinds. Bodies whose result depends on the arguments (``return <an argument>``, ``return list/sorted/set/
tuple(<first argument>)``) are *run*: they keep the function's signature (its ``def`` line and docstring, as the
prompt shows them) under another name and run as mutants do, in the second program, on every usable input
(:func:`make_probes`). Bodies that return one constant or raise one exception (``return None``, ``return 0``,
``return []``, the most common expected value, ``raise ValueError``...) need no run: such a body passes exactly the
tests that expect that value or that exception, so every distinct expected outcome is a probe
(:func:`outcome_probes`).

:mod:`.selection` keeps a task only when every probe fails most of its chosen tests
(``BuilderConfig.max_trivial_pass``; the default is below the ``partial`` reward's zero, so no probe earns a
positive reward).
"""

from __future__ import annotations

import re
from typing import Any

from trl_unittest.data.extract import Candidate
from trl_unittest.data.mutation import Mutant
from trl_unittest.execution.values import LiteralError, decode_value, values_equal

def probe_bodies(cand: Candidate) -> list[tuple[str, str]]:
    """(probe name, one-line body) of the probes that must run: each argument passed through, and ``list``,
    ``sorted``, ``set``, ``tuple`` of the first one."""
    out: dict[str, str] = {}
    for p in cand.params:
        if p.name not in ("self", "cls"):
            out[f"arg:{p.name}"] = f"return {p.name}"
    first = next((p.name for p in cand.params if p.kind in ("posonly", "pos") and p.name not in ("self", "cls")),
                 None)
    if first is not None:
        for fn in ("list", "sorted", "set", "tuple"):
            out[f"{fn}:{first}"] = f"return {fn}({first})"
    return list(out.items())


def outcome_probes(obs: dict[int, Any]) -> dict[str, set[int]]:
    """The constant bodies as probes without a run: for each distinct outcome among the usable inputs'
    observations (``{input: Observation}``), the inputs whose test that outcome passes. Values compare as
    decoded values (``1`` and ``1.0`` are one outcome, as the tests judge them)."""
    groups: dict[str, set[int]] = {}
    reps: list[tuple[Any, str]] = []
    for i, o in obs.items():
        if o.kind == "raises":
            groups.setdefault(f"raise:{o.text}", set()).add(i)
            continue
        if o.kind != "value":
            continue
        try:
            v = decode_value(o.text)
        except LiteralError:
            groups.setdefault(f"const:{o.text}", set()).add(i)
            continue
        for rv, label in reps:
            if values_equal(rv, v):
                groups[label].add(i)
                break
        else:
            label = f"const:{o.text}"
            reps.append((v, label))
            groups[label] = {i}
    return groups


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
