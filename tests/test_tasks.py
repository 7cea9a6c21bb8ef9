"""The task schema (`trl_unittest.tasks`): validation names the bad field, rendered asserts check what the
structured test checks, and datasets round trips (including an empty one)."""

import math

import pytest

from trl_unittest.tasks import Task, TaskValidationError, Test, from_dataset, parse_tests, to_dataset


@pytest.mark.parametrize("fields, message", [
    (dict(kind="io", expected=4), "`expected` must be a string, got int"),
    (dict(expr=3, expected="3"), "`expr` must be a string"),
    (dict(op="approx", expr="f()", expected="1.0", rel_tol=-1.0), "`rel_tol` must be a finite number >= 0"),
    (dict(op="approx", expr="f()", expected="1.0", abs_tol=math.nan), "`abs_tol` must be a finite number >= 0"),
    (dict(op="approx", expr="f()", expected="1.0", rel_tol="x"), "`rel_tol` must be a finite number >= 0"),
    (dict(op="approx", expr="f()", expected="1.0", rel_tol=True), "`rel_tol` must be a finite number >= 0"),
])
def test_bad_test_fields_are_named(fields, message):
    with pytest.raises(TaskValidationError, match=message):
        Test(**fields).validate()


def test_good_tolerances_pass():
    Test(op="approx", expr="f()", expected="1.0", rel_tol=1e-6, abs_tol=0).validate()


@pytest.mark.parametrize("expr, op, expected, x, should_pass", [
    ("f(0) or f(2)", "eq", "5", {0: 0, 2: 5}, True),     # without parentheses: `f(0) or (f(2) == 5)`
    ("f(0) or f(2)", "eq", "5", {0: 1, 2: 5}, False),    # ... which would pass here
    ("f(0) < f(2)", "eq", "False", {0: 1, 2: 5}, False),  # without: a chained comparison
    ("f(0), f(2)", "eq", "(1, 5)", {0: 1, 2: 5}, True),   # without: assert with a message
    ("f(0) or f(2)", "falsy", "", {0: 0, 2: 5}, False),  # without: `(not f(0)) or f(2)`
    ("not f(0)", "ne", "True", {0: 0, 2: 5}, False),
])
def test_rendered_asserts_check_what_the_test_checks(expr, op, expected, x, should_pass):
    code = Test(expr=expr, op=op, expected=expected).validate().render()
    namespace = {"f": x.__getitem__}  # our own fixture: a dict lookup, no untrusted code
    try:
        exec(compile(code, "<render>", "exec"), namespace)
        passed = True
    except AssertionError:
        passed = False
    assert passed == should_pass, code


@pytest.mark.parametrize("expected, actual, should_pass", [
    ("[1.5]", [1.5000000001], True),  # funcy's ltree_nodes(1.5): math.isclose of a list raised TypeError
    ("[1.5]", [1.6], False),
    ("[1.5]", [1.5, 2.0], False),
    ("[1.5, (2.0, 'x'), [float('nan')]]", [1.5, [2.0, "x"], (float("nan"),)], True),  # as values_close judges
    ("[1.5, (2.0, 'x')]", [1.5, (2.0, "y")], False),
    ("[float('-inf'), 3]", (float("-inf"), 3.0), True),
    ("float('nan')", float("nan"), True),
    ("2.5", 2.5000001, True),
    ("2.5", 2.6, False),
    # an FFT (algorithms.math.fft): the reward compared complex numbers exactly and the rendered assert raised
    ("[(3+0j), (-6.123233995736766e-17+1j)]", [3, 1j], True),
    ("[(3+0j), (-6.123233995736766e-17+1j)]", [3, 1.1j], False),
    ("(1+2j)", 1.0000000001 + 2j, True),
    ("(1+2j)", 1 - 2j, False),
    # a dict of floats (what has_float makes an approx test): each value within tolerance, the same keys
    ("{'a': 0.30000000000000004, 'b': [1.5]}", {"a": 0.3, "b": [1.5]}, True),
    ("{'a': 0.3}", {"a": 0.31}, False),
    ("{'a': 0.3}", {"a": 0.3, "b": 1.0}, False),
    ("{'a': 0.3}", {"b": 0.3}, False),
])
def test_rendered_approx_asserts_judge_containers_as_the_reward_does(expected, actual, should_pass):
    from trl_unittest.execution.values import decode_value, values_close

    test = Test(expr="f()", op="approx", expected=expected, rel_tol=1e-6, abs_tol=1e-9).validate()
    assert values_close(decode_value(expected), actual, 1e-6, 1e-9) == should_pass  # the reward's verdict
    namespace = {"f": lambda: actual, "math": math}  # our own fixture, no untrusted code
    try:
        exec(compile(test.render(), "<render>", "exec"), namespace)
        passed = True
    except AssertionError:
        passed = False
    assert passed == should_pass, test.render()


@pytest.mark.parametrize("exception, raised, should_pass", [
    ("xml.parsers.expat.ExpatError", "expat", True),  # xmltodict's parse: the name was unbound under plain pytest
    ("xml.parsers.expat.ExpatError", "value", False),
    ("json.decoder.JSONDecodeError", "json", True),
    ("ValueError", "value", True),
    ("ValueError", None, False),
])
def test_rendered_raises_tests_name_a_module_exception_without_the_task_importing_it(exception, raised, should_pass):
    """A ``raises`` test of a module's exception renders so that its ``except`` clause resolves in a namespace that
    has not imported the module's package (the task's context may import it otherwise, `from xml.parsers import
    expat`, or not at all)."""
    import json as _json
    from xml.parsers import expat as _expat

    def f():  # our own fixture, no untrusted code
        if raised == "expat":
            _expat.ParserCreate().Parse("<a", True)
        if raised == "json":
            _json.loads("{")
        if raised == "value":
            raise ValueError("no")

    code = Test(expr="f()", op="raises", exception=exception).validate().render()
    try:
        exec(compile(code, "<render>", "exec"), {"f": f})
        passed = True
    except (AssertionError, ValueError):
        passed = False
    assert passed == should_pass, code


def test_empty_and_round_trip_datasets():
    empty = to_dataset([])
    assert len(empty) == 0 and "tests" in empty.column_names and from_dataset(empty) == []
    task = Task("t/0", "def f(x):\n", "f", [Test(expr="f(1)", expected="1")], provenance={"source": "t"})
    assert from_dataset(to_dataset([task])) == [task]


def test_column_wise_tests_must_line_up():
    ok = parse_tests({"kind": ["call", "call"], "expr": ["f(1)", "f(2)"], "expected": ["1", "2"]})
    assert [t.expr for t in ok] == ["f(1)", "f(2)"]
    with pytest.raises(TaskValidationError, match="same length"):
        parse_tests({"kind": ["call", "call"], "expr": ["f(1)", "f(2)"], "expected": ["1"]})
