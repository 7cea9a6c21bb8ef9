import math

import pytest

from trl_unittest.execution import rewrite_asserts


def test_mbpp_style_asserts_become_call_tests():
    report = rewrite_asserts([
        "assert remove_Occ(\"hello\",\"l\") == \"heo\"",
        "assert set(similar_elements((3, 4), (5, 4))) == set((4,))",
        "assert math.isclose(area(2), 12.56, rel_tol=0.001)",
        "assert abs(area(1) - 3.14) < 1e-2",
        "assert is_prime(7)",
        "assert not is_prime(8)",
        "assert find(3) is None",
        "assert 5 == add(2, 3)",
    ], entry_point="remove_Occ")
    kinds = [(t.kind, t.op) for t in report.tests]
    assert kinds == [("call", "eq"), ("call", "eq"), ("call", "approx"), ("call", "approx"), ("call", "truthy"),
                     ("call", "falsy"), ("call", "is"), ("call", "eq")]
    assert report.tests[0].expr == "remove_Occ('hello', 'l')" and report.tests[0].expected == "'heo'"
    assert report.tests[1].expected == "{4}"  # stored as the sandbox encodes the value, not as written
    assert report.tests[2].rel_tol == 0.001
    # `abs(x - y) < 0.01`: strictly below 0.01, and no relative tolerance beside it
    assert report.tests[3].abs_tol == math.nextafter(0.01, 0) and report.tests[3].rel_tol == 0
    assert report.tests[7].expr == "add(2, 3)" and report.tests[7].expected == "5"
    assert report.rewritten == 8 and report.unrewritten == 0


def test_humaneval_check_function_is_rewritten_with_the_entry_point():
    code = '''
METADATA = {"author": "jt"}

def check(candidate):
    assert candidate([1.0, 2.0], 0.5) == False
    assert candidate([1.0, 2.8], 0.3) == True
    assert True, "This prints if this assert fails"
'''
    report = rewrite_asserts(code, entry_point="has_close_elements")
    assert [t.expr for t in report.tests] == ["has_close_elements([1.0, 2.0], 0.5)", "has_close_elements([1.0, 2.8], 0.3)"]
    assert report.skipped_trivial == 1 and report.setup == ""


def test_unrewritable_asserts_stay_code_and_are_counted():
    report = rewrite_asserts(["assert f(1) < 3", "assert f(1) == Point(1, 2)", "assert f(1) == 1 and f(2) == 2"],
                             entry_point="f")
    assert [t.kind for t in report.tests] == ["code"] * 3
    assert report.unrewritten == 3 and sum(report.reasons.values()) == 3


def test_check_with_loops_becomes_one_code_test():
    code = "import random\ndef check(candidate):\n    for x in range(3):\n        assert candidate(x) == x\n"
    report = rewrite_asserts(code, entry_point="ident")
    assert len(report.tests) == 1 and report.tests[0].kind == "code"
    assert report.tests[0].code.endswith("check(ident)")
    assert report.setup == "import random"


def test_bad_test_code_names_the_problem():
    with pytest.raises(ValueError, match="does not parse"):
        rewrite_asserts("assert f(1 ==", entry_point="f")


def test_expected_literals_are_stored_in_the_sandbox_encoding():
    report = rewrite_asserts(["assert f(1) == [1,2 , (3,)]", "assert f(2) == float('nan')", "assert f(3) == -0.0",
                              "assert f(4) == {'a':1}", "assert f(5) == 1+2j", "assert f(6) == nan"])
    assert [t.expected for t in report.tests] == ["[1, 2, (3,)]", "float('nan')", "-0.0", "{'a': 1}", "(1+2j)",
                                                  "float('nan')"]
    assert report.rewritten == 6


def test_checks_outside_check_are_counted_tests_not_set_up():
    """A loop of asserts (or a call to a helper that asserts) becomes a code test (run by the proxy harness): as set-up
    it ran before the tests and counted nothing."""
    report = rewrite_asserts("import math\nLIMIT = 5\ndef verify():\n    assert sq(3) == 9\n"
                             "assert sq(2) == 4\nfor i in range(LIMIT):\n    assert sq(i) == i * i\nverify()\n",
                             entry_point="sq")
    assert [t.kind for t in report.tests] == ["call", "code", "code"]
    assert report.setup == "import math\nLIMIT = 5\ndef verify():\n    assert sq(3) == 9"
    assert report.unrewritten == 2 and report.reasons["check code outside check()"] == 2


def test_the_harness_call_to_check_is_dropped():
    report = rewrite_asserts("def check(candidate):\n    assert candidate(3) == 9\n\ncheck(sq)\n", entry_point="sq")
    assert [(t.kind, t.expr) for t in report.tests] == [("call", "sq(3)")] and report.setup == ""


@pytest.mark.parametrize("assertion, value, python_says", [
    ("abs(f() - 1e12) < 1e-3", 1e12 + 500, False),        # no relative tolerance slips in
    ("abs(f() - 1) < 0.5", 1.5, False),                    # strictly below
    ("abs(f() - 1) <= 0.5", 1.5, True),
    ("math.isclose(f(), 1e6, rel_tol=0, abs_tol=1e-6)", 1e6 + 0.0005, False),  # an explicit rel_tol=0 stays 0
    ("math.isclose(f(), 1e6)", 1e6 + 0.0005, True),        # isclose's own default rel_tol=1e-9
])
def test_tolerance_asserts_keep_their_meaning(assertion, value, python_says):
    from trl_unittest.execution.results import grade_test
    from trl_unittest.execution.worker import encode_value

    (test,) = rewrite_asserts([f"assert {assertion}"], entry_point="f").tests
    assert test.op == "approx"
    verdict = grade_test(test, {"outcome": "ok", "value": encode_value(value), "t": 0.0})
    assert (verdict.outcome == "passed") == python_says
