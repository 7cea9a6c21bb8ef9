"""Mutation scoring: which of a function's mutants each candidate test kills, and the line coverage of a suite.

The mutants come from :mod:`.mutation` and run in the second program (:func:`.observe.second_program`); a mutant is
killed by a test when the test, as the reward would judge it, fails on the mutant.
"""

from __future__ import annotations

import ast

from trl_unittest.data.extract import parse as _parse
from trl_unittest.data.observe import Observation, Work, outcome
from trl_unittest.execution.values import LiteralError, decode_shared, decode_value, values_close, values_equal
from trl_unittest.tasks import Test


def killed(ref: Observation, test: Test, mut_tr) -> bool:
    """Whether a mutant's result on a test differs from the reference's, as the test would judge it."""
    return killed_by(ref, test, *outcome(mut_tr))


def killed_by(ref: Observation, test: Test, kind: str, text: str) -> bool:
    """:func:`killed` of a result given as :func:`.observe.outcome`'s ``(kind, text)``."""
    if ref.kind == "raises":
        return not (kind == "raises" and text == ref.text)
    if kind != "value":
        return True
    if text == ref.text:  # the same literal decodes to the same value (NaN included: values_equal says so)
        return False
    try:
        exp, act = decode_shared(ref.text), decode_value(text)
    except LiteralError:
        return True
    if test.op == "approx":
        return not values_close(exp, act, test.rel_tol, test.abs_tol)
    return not values_equal(exp, act)


def kill_matrix(w: Work, candidates: dict[int, Test], rm) -> tuple[dict[int, set[int]], int, dict[str, set[int]]]:
    """(mutants killed by each usable input, number of mutants scored, the usable inputs each probe passes).

    0 mutants are scored when they did not run (none made, or one broke the shared program: the score stays
    unmeasured). Probes that did not run pass nothing here: the caller drops such a task (``probes_unmeasured``)."""
    kills: dict[int, set[int]] = {i: set() for i in w.usable}
    probe_passes: dict[str, set[int]] = {p.operator: set() for p in w.probes}
    if rm is None or rm.status != "ran":
        return kills, 0, probe_passes
    n_mut = len(w.mutants)
    runners = w.runners
    for (r_idx, i), tr in zip(w.runner_pairs, rm.tests):  # inputs: a superset of w.usable (nondeterministic ones
        if i in kills and not tr.unrun:  # left since); a pair not run computes what the reference does
            dead = killed(w.obs[i], candidates[i], tr)
            if r_idx < n_mut and dead:
                kills[i].add(r_idx)
            elif r_idx >= n_mut and not dead:
                probe_passes[runners[r_idx].operator].add(i)
    for (r_idx, i), (kind, text) in w.known_runs.items():  # probes computed on literal arguments, not run
        if i in kills and not killed_by(w.obs[i], candidates[i], kind, text):
            probe_passes[runners[r_idx].operator].add(i)
    return kills, n_mut, probe_passes


def executable_lines(func_src: str) -> set[int]:
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


def line_coverage(func_src: str, lines: set[int]) -> float | None:
    """Fraction of the function's executable lines (docstring aside) among ``lines``; None when it has none."""
    executable = executable_lines(func_src)
    return len(lines & executable) / len(executable) if executable else None
