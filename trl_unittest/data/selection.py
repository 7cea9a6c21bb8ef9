"""Test selection: the test each usable input becomes, the greedy choice of a task's suite, and the task.

Tests are chosen greedily (:func:`choose_tests`): doctests the reference agrees with (the prompt's examples are
part of the suite, which keeps ``min_hidden_tests`` more), then the input that keeps the trivial-body probes
(:mod:`.probes`) lowest, then the input that kills the most not-yet-killed mutants, then new lines/arcs
(line/branch coverage), then the most mutants killed in all, then a new outcome; the suite is the longest prefix of
that order in which no probe passes more than ``max_trivial_pass`` of the tests. The usable inputs include those of
the third round (:mod:`.targeted`, inputs aimed at the mutants the generated ones leave alive) once it has run: the
suite is chosen again among all of them, under the same probe limit. The mutants are the second program's sample
(``max_mutants``) and, when asked, for a function that would be kept, the rest of its mutation sites (the audit,
``max_mutants_kept`` in all, :mod:`.pipeline`).

A task is dropped when its reference disagrees with a docstring example, when the probes did not run, when no
suite holds them off, or when fewer than ``min_hidden_tests`` of its tests are hidden from the prompt. The
mutation score is the chosen suite's kills over the mutants that ran (``min_mutants`` of them at least, else it
stays unmeasured), less those set aside as likely equivalent (counted in ``mutants_likely_equivalent``): mutants
that survived a third round, i.e. gave the reference's outcome on every usable input, generated and aimed, although
some of those inputs ran the mutated line. Every other mutant that no usable input kills stays in the score as a
survivor (counted in ``mutants_unkilled_by_any_input``): in a function without a third round (none was needed or
started, no aimed input could be made, the round was discarded), or on a line that no input runs. Without inputs
aimed at it and reaching it, "equivalent" would only mean "beyond the generated inputs": setting those aside made
every score 1.0 where mutmut killed 0.57 on the same tasks, and setting aside the third round's unreached survivors
too made the builder's median 1.0 where mutmut's was 0.875 (``benchmarks/RESULTS.md``, and this change's
measurements). Even so, the mutants set aside are not proven equivalent: a task keeps only if its tests kill
``min_kill_fraction`` of all its mutants, those set aside included (``low_kill_fraction``). On 18 packages never
tuned on, the tasks this drops were the ones where mutmut, which counts every survivor, killed least (0.27-0.75:
a hash of a version-gated call, header parsers whose quoted and escaped forms no input reached); mutmut's median over
the tasks kept rose from 0.842 to 1.0.
"""

from __future__ import annotations


from trl_unittest.data.config import BuilderConfig, BuildReport
from trl_unittest.data.inputs import docstring_calls
from trl_unittest.data.observe import R_LOW_KILLS, R_LOW_MUTATION, R_NO_TESTS, Work
from trl_unittest.data.probes import has_float, outcome_probes, probe_bodies
from trl_unittest.data.scoring import kill_matrix, line_coverage
from trl_unittest.execution.values import decode_shared, values_equal
from trl_unittest.tasks import Task, Test

R_TRIVIAL_PASSES = "trivial_body_passes"  # some probe passes more than max_trivial_pass of every suite left
R_PROBES_UNMEASURED = "probes_unmeasured"
R_FEW_HIDDEN = "too_few_hidden_tests"
R_DOC_CONTRADICTS = "reference_contradicts_docstring"


def candidate_tests(w: Work, report: BuildReport) -> tuple[dict[int, Test], set[int]]:
    """(the test each usable input becomes, the doctest inputs whose example the reference agrees with);
    counts the doctest examples the reference disagrees with."""
    candidates: dict[int, Test] = {}
    doctest_ok: set[int] = set()
    for i in w.usable:
        o = w.obs[i]
        if o.kind == "raises":
            t = Test(kind="call", expr=w.tests[i].expr, op="raises", exception=o.text)
        elif has_float(decode_shared(o.text)):
            t = Test(kind="call", expr=w.tests[i].expr, op="approx", expected=o.text, rel_tol=1e-6, abs_tol=1e-9)
        else:
            t = Test(kind="call", expr=w.tests[i].expr, op="eq", expected=o.text)
        candidates[i] = t
        if i < len(w.doctest_expected):
            exp, exc = w.doctest_expected[i]
            if exc is not None and o.kind == "raises" and o.text == exc:
                doctest_ok.add(i)
            elif exp is not None and o.kind == "value" and values_equal(decode_shared(exp), decode_shared(o.text)):
                doctest_ok.add(i)
            elif exp is not None or exc is not None:
                report.doctest_mismatches += 1
    return candidates, doctest_ok


def shown_inputs(w: Work) -> set[int]:
    """The usable inputs the prompt shows: its doctests, and its docstring's other calls on literals
    (:func:`.inputs.docstring_calls`, whose output a ``code-block`` may show too): none of them counts as hidden."""
    n_doc = len(w.doctest_expected)
    calls = set(docstring_calls(w.cand.docstring, w.cand.entry_point)) if w.cand is not None else set()
    return {i for i in w.usable if i < n_doc or w.tests[i].expr in calls}


def kills_of(w: Work, candidates: dict[int, Test], rm) -> tuple[dict[int, set[int]], int, dict[str, set[int]]]:
    """:func:`.scoring.kill_matrix` of the second program's result ``rm``, computed once per result (the third
    round's check and :func:`finish` both need it); copies, with an empty entry for each usable input it does not
    cover (the third round's, which :func:`finish` fills)."""
    if w.kill_cache is None or w.kill_cache[0] is not rm:
        w.kill_cache = (rm, kill_matrix(w, candidates, rm))
    kills, n_mut, passes = w.kill_cache[1]
    out = {i: set(kills.get(i, ())) for i in w.usable}
    if w.extra_mutants and n_mut:  # the audit's mutants follow the sample's (none counted if the sample broke)
        for i, dead in w.extra_kills.items():
            if i in out:
                out[i] |= {n_mut + j for j in dead}
        n_mut += len(w.extra_mutants)
    return out, n_mut, {k: set(v) for k, v in passes.items()}


def choose_tests(w: Work, kills: dict[int, set[int]], doctest_ok: set[int], passes: dict[str, set[int]],
                 cfg: BuilderConfig, shown: set[int] | None = None) -> tuple[list[int] | None, str | None]:
    """(the chosen inputs in input order, None) or (None, drop reason); see the module docstring.

    The inputs are ordered greedily: doctests the reference agrees with first (the prompt's examples are part of
    the suite), then by how few tests the most-passing probe would then pass, then new mutant kills, new lines,
    new arcs, all its kills, a new outcome, a shorter call. The suite is the longest prefix of that order (at most
    ``max_tests``) in which no probe passes more than ``max_trivial_pass`` of the tests and at least
    ``min_hidden_tests`` are hidden from the prompt."""
    shown = shown_inputs(w) if shown is None else shown  # (finish passes its own: computed once)
    order: list[int] = []
    counts = {p: 0 for p in passes}
    killed: set[int] = set()
    lines: set[int] = set()
    arcs: set = set()
    outcomes: set = set()
    rest = list(w.usable)
    line_sets = {i: set(w.obs[i].lines) for i in rest}
    arc_sets = {i: set(w.obs[i].arcs) for i in rest}
    top = (0, frozenset())  # (the highest probe count, the inputs some probe at that count passes)

    def worst_after(i: int) -> int:
        """The highest probe count once ``i`` is added: one more than now when a probe at the top passes it
        (a probe below the top reaches the top at most)."""
        return top[0] + (i in top[1])

    def gain(i: int) -> tuple:
        o = w.obs[i]
        return (len(kills[i] - killed), len(line_sets[i] - lines), len(arc_sets[i] - arcs),
                o.key() not in outcomes and o.kind == "value")

    def holds(prefix: list[int]) -> bool:
        return all(counts_in(prefix, s) <= cfg.max_trivial_pass * len(prefix) for s in passes.values())

    def counts_in(prefix: list[int], s: set[int]) -> int:
        return sum(1 for i in prefix if i in s)

    def hidden(prefix: list[int]) -> int:
        return sum(1 for i in prefix if i not in shown)

    while rest and len(order) < cfg.max_tests:
        if passes:
            high = max(counts.values())
            top = (high, frozenset().union(*(s for p, s in passes.items() if counts[p] == high)))
        # ties on every gain go to the input that kills the most mutants in all: one that tells many wrong bodies
        # apart (a list with a quoted item) before one that only has an output of its own (a one-word string)
        def rank(i: int) -> tuple:
            new_kills, new_lines, new_arcs, new_outcome = gain(i)
            return (i in doctest_ok, -worst_after(i), new_kills, new_lines, new_arcs, len(kills[i]), new_outcome,
                    -len(w.tests[i].expr))

        best = max(rest, key=rank)
        if not any(gain(best)) and len(order) >= cfg.min_tests and holds(order) and \
                hidden(order) >= cfg.min_hidden_tests:
            break
        order.append(best)
        rest.remove(best)
        for p, s in passes.items():
            counts[p] += best in s
        killed |= kills[best]
        lines |= line_sets[best]
        arcs |= arc_sets[best]
        outcomes.add(w.obs[best].key())
    reason = R_NO_TESTS if len(order) < cfg.min_tests else R_TRIVIAL_PASSES
    for n in range(len(order), cfg.min_tests - 1, -1):
        prefix = order[:n]
        if not holds(prefix):
            continue
        if hidden(prefix) >= cfg.min_hidden_tests:
            return sorted(prefix), None
        reason = R_FEW_HIDDEN
    return None, reason


def no_suite_possible(w: Work, cfg: BuilderConfig) -> bool:
    """Whether the constant probes alone (:func:`.probes.outcome_probes` of the usable inputs) rule out every
    suite, whatever the mutants and the probes still to run: then :func:`finish` can only drop the function
    (``trivial_body_passes``) and neither its mutants nor its run probes need be made nor run. A suite of ``n``
    tests holds at most ``cap(n)`` inputs of each probe's outcome class (every probe may pass at most
    ``max_trivial_pass * n`` of them); inputs of no class are free. No ``n`` in ``[min_tests, min(len(usable),
    max_tests)]`` that the classes can fill means no suite at all, chosen in any order. Rerunning the reference
    only removes inputs, and the probes still to run only add limits, so the verdict stands after the second
    program."""
    groups = outcome_probes({i: w.obs[i] for i in w.usable})
    classes: dict[str, int] = {}
    free = 0
    for i in w.usable:
        label = next((k for k, s in groups.items() if i in s), None)
        if label is None:
            free += 1
        else:
            classes[label] = classes.get(label, 0) + 1
    for n in range(cfg.min_tests, min(len(w.usable), cfg.max_tests) + 1):
        cap = max(c for c in range(n + 1) if c <= cfg.max_trivial_pass * n)  # choose_tests' comparison, exactly
        if free + sum(min(c, cap) for c in classes.values()) >= n:
            return False
    return True


def more_mutants_may_help(out: Task | str) -> bool:
    """Whether a test choice (:func:`finish`'s result) keeps the function or drops it only for what its tests
    kill: then the audit's mutants and the third round's inputs may change it."""
    return isinstance(out, Task) or out in (R_LOW_MUTATION, R_LOW_KILLS)


def finish(w: Work, rm, cfg: BuilderConfig, report: BuildReport) -> Task | str:
    """Chooses the tests, computes mutation score and coverage; returns a Task or a drop reason. ``rm``: the
    runners' (mutants', probes') part of the second program's result (None without any)."""
    cand = w.cand
    if len(w.usable) < cfg.min_tests:
        return R_NO_TESTS
    candidates, doctest_ok = candidate_tests(w, report)
    if report.doctest_mismatches:  # the prompt's own example says otherwise: a test would contradict it
        return R_DOC_CONTRADICTS
    if w.no_suite:  # decided after the first run: no mutants nor run probes were made for it
        return R_TRIVIAL_PASSES
    if (w.probes or probe_bodies(cand)) and (not w.probes or rm is None or rm.status != "ran"):
        return R_PROBES_UNMEASURED
    kills, n_mut, passes = kills_of(w, candidates, rm)
    rnd = w.round if w.round is not None and w.round.used else None
    if rnd is not None:  # the third round's inputs: the survivors they kill, the probes they let pass
        for i, dead in rnd.kills.items():
            kills[i] = set(dead)
        for op, s in rnd.passes.items():
            passes[op] = passes.get(op, set()) | s
    passes.update({f"probe:{k}": v for k, v in outcome_probes({i: w.obs[i] for i in w.usable}).items()})
    shown = shown_inputs(w)
    chosen, reason = choose_tests(w, kills, doctest_ok, passes, cfg, shown)
    if chosen is None:
        return reason
    hidden = sum(1 for i in chosen if i not in shown)
    dead = set().union(*kills.values()) if kills else set()
    unkilled = [j for j in range(n_mut) if j not in dead]
    # set aside only what survived inputs aimed at it, on a line some input runs (see the module docstring)
    reached = set().union(*(w.obs[i].lines for i in w.usable)) if rnd is not None else set()
    mutants = w.all_mutants
    equivalent = [j for j in unkilled if mutants[j].line in reached]
    n_scored = n_mut - len(equivalent)
    killed = set().union(*(kills[i] for i in chosen))
    score = len(killed) / n_scored if n_scored >= max(1, cfg.min_mutants) else None
    coverage = line_coverage(cand.func_src, set().union(*(set(w.obs[i].lines) for i in chosen)))
    if score is not None and score < cfg.min_mutation_score:
        return R_LOW_MUTATION
    if n_mut >= max(1, cfg.min_mutants) and len(killed) < cfg.min_kill_fraction * n_mut:
        return R_LOW_KILLS
    report.doctest_tests += sum(1 for i in chosen if i in doctest_ok)
    report.observed_tests += sum(1 for i in chosen if i not in doctest_ok)
    report.hidden_tests += hidden
    if score is None:
        report.scores_unmeasured += 1
    else:
        report.mutants_scored += n_scored
    report.mutants_unkilled_by_any_input += len(unkilled) - len(equivalent)
    report.mutants_likely_equivalent += len(equivalent)
    if rnd is not None:
        report.mutants_killed_by_extra_inputs += sum(1 for j in rnd.survivors if j in dead)
        report.targeted_tests += sum(1 for i in chosen if i in rnd.kills)
    return Task(
        task_id=cand.task_id, prompt=cand.prompt, entry_point=cand.entry_point, tests=[candidates[i] for i in chosen],
        reference=cand.reference, context=cand.context,
        reference_runtime=sum(w.obs[i].time for i in chosen),
        provenance={"source": cand.source, "path": cand.path, "qualname": cand.qualname, "line": cand.line,
                    "license": cand.license},
        mutation_score=score, coverage=coverage)
