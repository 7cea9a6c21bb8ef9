"""Trivial-body probes known without a run: the constant probes that rule a function out after its first run
(selection.no_suite_possible), and the run probes computed on literal arguments (probes.literal_outcome)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_unittest.data import observe, selection
from trl_unittest.data.builder import Builder, BuilderConfig, build_dataset
from trl_unittest.data.config import BuildReport
from trl_unittest.data.extract import extract_module
from trl_unittest.data.observe import Observation, Work
from trl_unittest.data.probes import bind_literal_call, literal_outcome, outcome_probes
from trl_unittest.execution.values import decode_value, values_equal
from trl_unittest.tasks import Test


def _work(outcomes: list) -> Work:
    """A function's work after its first run: one usable input per outcome (an int: that value; a str: that
    exception raised)."""
    obs = [Observation("raises", o) if isinstance(o, str) else Observation("value", repr(o)) for o in outcomes]
    tests = [Test("call", f"f({i})", "eq", "None") for i in range(len(outcomes))]
    w = Work(None, "fp", [], tests, [])
    w.obs, w.usable = obs, list(range(len(outcomes)))
    return w


def test_constant_probes_rule_out_a_function_whose_outcomes_repeat():
    cfg = BuilderConfig()
    assert selection.no_suite_possible(_work([1] * 9 + [2]), cfg)  # `return 1` passes 9 of any 10
    assert selection.no_suite_possible(_work([True, False] * 6), cfg)
    assert not selection.no_suite_possible(_work(list(range(10))), cfg)
    assert not selection.no_suite_possible(_work([1, 1, 2, 3, 4, 5, 6, 7, 8, 9, "ValueError"]), cfg)


@settings(max_examples=300, deadline=None)
@given(outcomes=st.lists(st.one_of(st.integers(0, 5), st.sampled_from(["ValueError", "KeyError"])), min_size=3,
                         max_size=14),
       limit=st.sampled_from([0.1, 0.23, 0.34, 0.5, 0.75]), min_tests=st.integers(1, 3),
       max_tests=st.integers(3, 10), hidden=st.integers(0, 3), data=st.data())
def test_a_function_ruled_out_early_is_one_that_no_suite_holds(outcomes, limit, min_tests, max_tests, hidden, data):
    """Whatever the mutants kill and whatever the probes still to run pass, a function that the constant probes
    ruled out after its first run is dropped by the test choice as trivial_body_passes: skipping its mutants
    changes no task."""
    cfg = BuilderConfig(max_trivial_pass=limit, min_tests=min_tests, max_tests=max_tests,
                        min_hidden_tests=min(hidden, max_tests))
    w = _work(outcomes)
    if not selection.no_suite_possible(w, cfg):
        return
    n = len(outcomes)
    subsets = st.sets(st.integers(0, n - 1), max_size=n)
    kills = {i: data.draw(st.sets(st.integers(0, 7), max_size=4)) for i in w.usable}
    passes = {f"probe:{k}": v for k, v in outcome_probes({i: w.obs[i] for i in w.usable}).items()}
    passes.update({f"probe:arg:{k}": data.draw(subsets) for k in range(data.draw(st.integers(0, 3)))})
    assert selection.choose_tests(w, kills, set(), passes, cfg) == (None, selection.R_TRIVIAL_PASSES)


SOURCE = '''
def f(a, b=2, *rest, key=None, **opts):
    """Gather the arguments."""
    return [a, b, rest, key, opts]
'''

# literal calls: ordered and unordered containers, items that do not sort or hash, floats the encoder spells
# specially, *rest and **opts filled, defaults left; and calls that are not literal
EXPRS = ["f([3, 1, 2])", "f('cab', 5)", "f((1, 'x'))", "f([[1], [2]])", "f({'b': 1, 'a': 2})", "f(b'zy', 1, 2, 3)",
         "f(1.5, key=-0.0)", "f([1e999, -1e999, 0.1])", "f(a=[1j, 2])", "f({3, 1})", "f([1, 2], c=3, d=[4])",
         "f(len('ab'))", "f([True, 0, 2.5])", "f(a=(), b=None)", "f(frozenset({1}))"]


def test_probes_computed_on_literal_arguments_match_their_sandboxed_runs():
    """Every probe outcome computed here is the outcome the same probe gives when it runs in the sandbox, as
    (kind, literal text); inputs that are not literal calls (or not bindable here) still run."""
    b = Builder(BuilderConfig(progress=False, num_workers=1, max_tests=5, min_tests=1, min_hidden_tests=1,
                              reference_timeout=0.5))
    try:
        w = b._work(extract_module(SOURCE, path="m.py").candidates[0], "fp", [], EXPRS)
        pool = b._pool_for(w)
        assert b.screen_reference(w, pool.run(b.reference_program(w)), BuildReport()) is None
        assert len(w.usable) == len(EXPRS)
        w.probes = b.probes_for(w)
        b.second_program(w)
        known = dict(w.known_runs)
        labels = {m.operator for j, m in enumerate(w.runners) if any(jj == j for jj, _ in known)}
        assert {"probe:arg:a", "probe:arg:rest", "probe:arg:opts", "probe:sorted:a", "probe:set:a"} <= labels
        assert ("raises", "TypeError") in known.values()  # sorted((1, 'x')), set([[1], [2]])
        not_literal = {EXPRS.index("f(len('ab'))"), EXPRS.index("f(frozenset({1}))")}
        assert not any(i in not_literal for _, i in known)
        assert not any(i == EXPRS.index("f({3, 1})") and w.runners[j].operator == "probe:list:a" for j, i in known)

        real = observe.literal_outcome
        observe.literal_outcome = lambda *a: None  # every probe runs
        try:
            program = b.second_program(w)
        finally:
            observe.literal_outcome = real
        _, rm = b.split_second(w, b.pools()[0].run(program))
        ran = {pair: observe.outcome(tr) for pair, tr in zip(w.runner_pairs, rm.tests)}
        assert len(known) >= 50
        for pair, (kind, text) in known.items():  # a set's text is in its hash seed's order: compared as values
            assert ran[pair][0] == kind, (pair, ran[pair], kind, text)
            if kind == "value":
                a, b_ = decode_value(ran[pair][1]), decode_value(text)
                assert type(a) is type(b_) and values_equal(a, b_), (pair, ran[pair], text)
            else:
                assert ran[pair][1] == text
    finally:
        b.close()


def test_a_decorated_function_or_a_missing_argument_runs_its_probes():
    cand = extract_module('import functools\n\n@functools.lru_cache\ndef g(x):\n    """Doc."""\n    return x\n',
                          path="m.py").candidates[0]
    assert bind_literal_call(cand, "g(1)") is None
    cand = extract_module('def h(x, y):\n    """Doc."""\n    return x\n', path="m.py").candidates[0]
    assert bind_literal_call(cand, "h(1)") is None and bind_literal_call(cand, "h(1, 2, 3)") is None
    assert bind_literal_call(cand, "h(1, x=2)") is None and bind_literal_call(cand, "h(1, z=2)") is None
    assert bind_literal_call(cand, "h(1, y=[2])") == {"x": 1, "y": [2]}
    assert literal_outcome(cand, "sorted:x", {"x": [3, 1]}) == ("value", "[1, 3]")
    assert literal_outcome(cand, "arg:y", {"x": 1}) is None  # y left to a default: the program computes it
    # a parameter (or a helper, or the function) named like the built-in the probe applies: the probe calls that
    shadowing = extract_module('def k(x, sorted=None):\n    """Doc."""\n    return x\n', path="m.py").candidates[0]
    assert literal_outcome(shadowing, "sorted:x", {"x": [3, 1]}) is None
    assert literal_outcome(shadowing, "arg:x", {"x": [3, 1]}) == ("value", "[3, 1]")


@pytest.mark.parametrize("outcomes", [[1, 2, 3], [1, 1, 1]])
def test_distinct_outcomes_leave_a_suite_a_repeated_one_does_not(outcomes):
    w = _work(outcomes)
    cfg = BuilderConfig(min_tests=2, max_tests=3, min_hidden_tests=1, max_trivial_pass=0.34)
    assert selection.no_suite_possible(w, cfg) == (len(set(outcomes)) == 1)


def test_a_build_tests_and_drops_a_function_without_mutating_it_when_no_suite_holds(tmp_path):
    """A predicate that is True on nearly every input (not on 0): `return True` passes most of any suite. The build still
    reruns it (tested), skips its mutants (counted) and drops it as trivial_body_passes; the function beside it,
    whose outcomes differ, is mutated and kept."""
    (tmp_path / "m.py").write_text(
        'def not_multiple(n: int) -> bool:\n    """Whether n is no multiple of 97.\n\n    >>> not_multiple(3)\n    True\n'
        '    """\n    return n % 97 != 0\n\n\n'
        'def double(n: int) -> int:\n    """Twice n.\n\n    >>> double(2)\n    4\n    """\n    return 2 * n\n')
    ds, report = build_dataset([str(tmp_path)], BuilderConfig(progress=False, num_workers=1, static_workers=0,
                                                              min_mutation_score=0.0), return_report=True)
    assert report.tested == 2 and report.mutation_skipped_trivial == 1
    assert report.dropped[selection.R_TRIVIAL_PASSES] == 1 and [r["entry_point"] for r in ds] == ["double"]


def _outcome_probes_per_input(obs: dict, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> dict:
    """outcome_probes' definition, asked input by input (every pair of inputs compared): the reference its
    per-object grouping must reproduce."""
    from trl_unittest.data.probes import has_float
    from trl_unittest.execution.values import LiteralError, decode_shared, values_close

    groups, values = {}, {}
    for i, o in obs.items():
        if o.kind == "raises":
            groups.setdefault(f"raise:{o.text}", set()).add(i)
        else:
            try:
                values[i] = decode_shared(o.text)
            except LiteralError:
                groups.setdefault(f"const:{o.text}", set()).add(i)
    for i, v in values.items():
        if any(j < i and values_equal(w, v) for j, w in values.items()):
            continue
        groups[f"const:{obs[i].text}"] = {j for j, w in values.items()
                                         if values_equal(w, v) or (has_float(w) and values_close(w, v, rel_tol,
                                                                                                 abs_tol))}
    return groups


# outcome texts that compare across spellings (1 and 1.0 and True), that are close but not equal, that equal
# nothing, themselves included (Decimal NaN), and NaN (equal to itself here)
OUTCOME_TEXTS = ["1", "1.0", "True", "0", "False", "1.0000000001", "[1, 2]", "[1.0, 2]", "(1, 2)", "'a'",
                 "float('nan')", "Decimal('NaN')", "Decimal('1')", "{'k': 1}", "{'k': 1.0}", "None", "-0.0"]


@settings(max_examples=300, deadline=None)
@given(picks=st.lists(st.one_of(st.sampled_from(OUTCOME_TEXTS), st.sampled_from(["ValueError", "KeyError"])),
                      min_size=1, max_size=16),
       order=st.randoms(use_true_random=False))
def test_constant_probes_grouped_by_object_match_the_pairwise_definition(picks, order):
    """outcome_probes compares each distinct decoded object once; its groups are the pairwise definition's, with
    inputs in any order of their numbers."""
    numbers = list(range(len(picks)))
    order.shuffle(numbers)
    obs = {n: Observation("raises", p) if p.endswith("Error") else Observation("value", p)
           for n, p in zip(numbers, picks)}
    assert outcome_probes(obs) == _outcome_probes_per_input(obs)


def test_with_no_new_gain_left_the_input_that_kills_most_mutants_in_all_comes_next():
    """Once every mutant is dead and every line run, an input that tells many wrong bodies apart (it kills all
    three mutants) is chosen before one that only has an output of its own, whatever the lengths of the calls."""
    w = _work([10, 20, 30, 40])
    w.tests = [Test("call", e, "eq", "None") for e in ("f('token, \"quoted\"')", "f('a, \"b\"')", "f(1)", "f(2)")]
    kills = {0: {0, 1, 2}, 1: {0, 1, 2}, 2: {0}, 3: set()}
    cfg = BuilderConfig(min_tests=2, max_tests=2, min_hidden_tests=0)
    assert selection.choose_tests(w, kills, set(), {}, cfg) == ([0, 1], None)
