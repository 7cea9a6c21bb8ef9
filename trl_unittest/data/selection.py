"""Test selection: the test each usable input becomes, the greedy choice of a task's suite, and the task.

Tests are chosen greedily: doctests the reference agrees with first, then the input that kills the most
not-yet-killed mutants, then new arcs/lines (branch/line coverage), then a new outcome, up to ``max_tests``.
The mutation score and line coverage of the chosen suite are stored with the task.
"""

from __future__ import annotations

from typing import Any

from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.observe import R_LOW_MUTATION, R_NO_TESTS, Work
from trl_unittest.data.scoring import kill_matrix, line_coverage
from trl_unittest.execution.values import decode_value, values_equal
from trl_unittest.tasks import Task, Test


def _has_float(v: Any) -> bool:
    if type(v) in (float, complex):
        return True
    if type(v) in (list, tuple, set, frozenset):
        return any(_has_float(x) for x in v)
    if type(v) is dict:
        return any(_has_float(x) for x in v.values())
    return False


def candidate_tests(w: Work, report: BuildReport) -> tuple[dict[int, Test], set[int]]:
    """(the test each usable input becomes, the doctest inputs whose example the reference agrees with);
    counts the doctest examples the reference disagrees with."""
    candidates: dict[int, Test] = {}
    doctest_ok: set[int] = set()
    for i in w.usable:
        o = w.obs[i]
        if o.kind == "raises":
            t = Test(kind="call", expr=w.tests[i].expr, op="raises", exception=o.text)
        elif _has_float(decode_value(o.text)):
            t = Test(kind="call", expr=w.tests[i].expr, op="approx", expected=o.text, rel_tol=1e-6, abs_tol=1e-9)
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
    return candidates, doctest_ok


def choose_tests(w: Work, kills: dict[int, set[int]], doctest_ok: set[int], cfg: BuilderConfig) -> list[int]:
    """The chosen inputs, in input order (see the module docstring)."""
    chosen: list[int] = [i for i in w.usable if i in doctest_ok][:cfg.max_tests]
    killed = set().union(*(kills[i] for i in chosen)) if chosen else set()
    lines = set().union(*(set(w.obs[i].lines) for i in chosen)) if chosen else set()
    arcs = set().union(*(set(w.obs[i].arcs) for i in chosen)) if chosen else set()
    outcomes = {w.obs[i].key() for i in chosen}
    rest = [i for i in w.usable if i not in chosen]

    def gain(i):
        o = w.obs[i]
        return (len(kills[i] - killed), len(set(o.lines) - lines), len(set(o.arcs) - arcs),
                o.key() not in outcomes and o.kind == "value", -len(w.tests[i].expr))

    while rest and len(chosen) < cfg.max_tests:
        best = max(rest, key=gain)
        if gain(best)[:4] == (0, 0, 0, False) and len(chosen) >= cfg.min_tests:
            break
        chosen.append(best)
        rest.remove(best)
        killed |= kills[best]
        lines |= set(w.obs[best].lines)
        arcs |= set(w.obs[best].arcs)
        outcomes.add(w.obs[best].key())
    return sorted(chosen)


def finish(w: Work, rm, cfg: BuilderConfig, report: BuildReport) -> Task | str:
    """Chooses the tests, computes mutation score and coverage; returns a Task or a drop reason. ``rm``: the
    mutants' part of the second program's result (None without mutants)."""
    cand = w.cand
    candidates, doctest_ok = candidate_tests(w, report)
    kills, n_mut = kill_matrix(w, candidates, rm)
    chosen = choose_tests(w, kills, doctest_ok, cfg)
    if len(chosen) < cfg.min_tests:
        return R_NO_TESTS
    score = len(set().union(*(kills[i] for i in chosen))) / n_mut if n_mut else None
    coverage = line_coverage(cand.func_src, set().union(*(set(w.obs[i].lines) for i in chosen)))
    if score is not None and score < cfg.min_mutation_score:
        return R_LOW_MUTATION
    report.doctest_tests += sum(1 for i in chosen if i in doctest_ok)
    report.observed_tests += sum(1 for i in chosen if i not in doctest_ok)
    return Task(
        task_id=cand.task_id, prompt=cand.prompt, entry_point=cand.entry_point, tests=[candidates[i] for i in chosen],
        reference=cand.reference, context=cand.context,
        reference_runtime=sum(w.obs[i].time for i in chosen),
        provenance={"source": cand.source, "path": cand.path, "qualname": cand.qualname, "line": cand.line,
                    "license": cand.license},
        mutation_score=score, coverage=coverage)
