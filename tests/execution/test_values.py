import collections
import decimal
import fractions
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_unittest.execution.values import LiteralError, decode_value, values_close, values_equal
from trl_unittest.execution.results import grade_test
from trl_unittest.execution.worker import MatchResult, Unencodable, encode_value
from trl_unittest.tasks import Test

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(), st.binary(),
                    st.complex_numbers(allow_nan=False, allow_infinity=False))
# NaN is never equal to itself, so sets and dict keys holding it cannot round-trip by equality
hashable_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary())
hashables = st.recursive(hashable_scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8)
values = st.recursive(
    scalars | hashables,
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner) | st.dictionaries(hashables, inner, max_size=3)
    | st.sets(hashables, max_size=3),
    max_leaves=20,
)


@given(values)
@settings(max_examples=300, deadline=None)
def test_encode_then_decode_round_trips(value):
    decoded = decode_value(encode_value(value))
    assert values_equal(value, decoded)
    assert type(decoded) is type(value)


@pytest.mark.parametrize("value", [True, 1, 1.0])
def test_types_are_kept_exactly(value):
    assert type(decode_value(encode_value(value))) is type(value)


def test_special_floats_and_containers():
    assert math.isnan(decode_value(encode_value(float("nan"))))
    assert decode_value(encode_value(float("-inf"))) == float("-inf")
    assert decode_value(encode_value(frozenset())) == frozenset()
    assert decode_value(encode_value(set())) == set()
    assert decode_value(encode_value((1,))) == (1,)
    assert decode_value(encode_value(bytearray(b"ab"))) == bytearray(b"ab")


class Evil(int):
    def __eq__(self, other):
        return True

    def __repr__(self):
        return "5"


@pytest.mark.parametrize("value", [Evil(3), object(), [1, Evil(2)], {"k": object()}, iter([1]), type, print])
def test_non_plain_values_are_refused(value):
    with pytest.raises(Unencodable):
        encode_value(value)


def test_self_containing_value_is_refused():
    a = []
    a.append(a)
    with pytest.raises(Unencodable):
        encode_value(a)


def test_huge_value_is_refused():
    with pytest.raises(Unencodable):
        encode_value("x" * (2 << 20))


@pytest.mark.parametrize("text", ["__import__('os')", "f(1)", "x", "[1, y]", "{**a}", "1 + 2", "lambda: 1", "...",
                                  "(" * 500 + ")" * 500, "float('1.5')", "set(1)", "{[1]: 2}"])
def test_decoder_accepts_only_literals(text):
    with pytest.raises(LiteralError):
        decode_value(text)


def test_comparisons():
    assert values_equal(float("nan"), float("nan"))
    assert not values_equal([1, 2], (1, 2))
    assert values_equal(1, 1.0)  # Python semantics for numbers
    assert values_close(0.1 + 0.2, 0.3, 1e-9, 0.0)
    assert values_close([1.0, 2.0000001], (1.0, 2.0), 1e-6, 0.0)
    assert not values_close(1.0, 1.1, 1e-6, 0.0)


@pytest.mark.parametrize("text", ["3", "nan", "[nan, 1.5]", "{'a': (1, None)}", "frozenset({1, 2})", "-0.0"])
def test_grading_identical_literal_text_passes(text):
    from trl_unittest.execution.results import grade_test
    from trl_unittest.tasks import Test

    result = grade_test(Test(expr="f()", expected=text), {"outcome": "ok", "value": text, "t": 0.0})
    assert result.outcome == "passed"


@pytest.mark.parametrize("expected, observed, outcome", [
    ("3", "4", "failed"), ("3", "3.0", "passed"), ("-0.0", "0.0", "passed"), ("[1, 2]", "(1, 2)", "failed"),
    ("__import__('os')", "__import__('os')", "error"),  # same text, but not a literal: never a pass
])
def test_grading_decodes_when_text_differs_or_is_not_a_literal(expected, observed, outcome):
    from trl_unittest.execution.results import grade_test
    from trl_unittest.tasks import Test

    result = grade_test(Test(expr="f()", expected=expected), {"outcome": "ok", "value": observed, "t": 0.0})
    assert result.outcome == outcome


def test_values_far_longer_than_expected_are_judged_without_decoding():
    from trl_unittest.execution.results import grade_test
    from trl_unittest.tasks import Test

    huge = "[" + ", ".join(["1"] * 300_000) + "]"
    far = grade_test(Test(expr="f()", expected="1"), {"outcome": "ok", "value": huge})
    assert far.outcome == "failed" and far.observed == huge  # the observation itself is kept (the builder reads it)
    assert grade_test(Test(expr="f()", op="ne", expected="1"), {"outcome": "ok", "value": huge}).outcome == "passed"
    # equal values whose texts differ in length (1 == 1.0 == True) are still decoded and compared
    assert grade_test(Test(expr="f()", expected="[1, 1]"), {"outcome": "ok", "value": "[True, 1.0]"}).outcome == "passed"


def test_huge_ints_are_not_close_to_floats_and_do_not_raise():
    from trl_unittest.execution.values import values_close

    assert values_close(1.0, 10 ** 400, 1e-6, 0.0) is False
    assert values_close(10 ** 400, 10 ** 400, 1e-6, 0.0) is True


@pytest.mark.parametrize("inner", [-1, -1.5, frozenset({1}), complex(1, -2), bytearray(b"x"), (1,)])
def test_everything_the_encoder_accepts_decodes_at_the_depth_limit(inner):
    """The decoder counts nesting as the encoder does: a sign, a complex sum or a call's argument (frozenset(...),
    bytearray(...)) is not one more level, so the deepest value the sandbox sends is still compared."""
    value = inner
    while True:
        try:
            encode_value([value])
        except Unencodable:
            break
        value = [value]
    assert decode_value(encode_value(value)) == value


# ------------------------------------------------------------------------------------------ tagged encodings
def _grade(value, expected, op="eq"):
    try:
        raw = {"outcome": "ok", "value": encode_value(value), "t": 0.0}
    except Unencodable as e:
        raw = {"outcome": "unencodable", "error": [str(e)], "t": 0.0}
    return grade_test(Test(expr="f()", op=op, expected=expected), raw).outcome


@pytest.mark.parametrize("value, expected, op, outcome", [
    (decimal.Decimal("1.50"), "1.5", "eq", "passed"),  # Decimal('1.50') == 1.5 in Python
    (decimal.Decimal("0.1"), "0.1", "eq", "failed"),  # Decimal('0.1') != 0.1 (the float is not exactly 0.1)
    (fractions.Fraction(1, 2), "0.5", "eq", "passed"),
    (fractions.Fraction(1, 3), "0.3333333333333333", "eq", "failed"),
    (collections.deque([1, 2]), "deque([1, 2], None)", "eq", "passed"),
    (collections.deque([1, 2]), "[1, 2]", "eq", "failed"),  # a deque never equals a list, as in Python
    ({1: "a", 2: "b"}.keys(), "{1, 2}", "eq", "passed"),  # keys views are set-like
    ({1: "a"}.values(), "['a']", "eq", "failed"),  # values views compare by identity
    ({1: "a"}.items(), "{(1, 'a')}", "eq", "passed"),
    (type("Name", (str,), {})("ab"), "'ab'", "eq", "passed"),
    (re.match("a", "abc"), "", "truthy", "passed"),
    (re.match("a", "abc"), "None", "is", "failed"),
    (re.match("a", "abc"), "'a'", "eq", "failed"),
])
def test_tagged_values_compare_as_python_does(value, expected, op, outcome):
    assert _grade(value, expected, op) == outcome


class LyingStr(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class LyingDecimal(decimal.Decimal):
    def __eq__(self, other):
        return True


class ReprStr(str):
    def __repr__(self):
        return "'expected'"


class Meta(type):
    def __getattribute__(cls, name):
        return getattr(str, name)


@pytest.mark.parametrize("liar", [LyingStr("x"), LyingDecimal("2"), ReprStr("x"), Meta("M", (str,), {})("x"),
                                  collections.deque([LyingStr("x")]), {LyingStr("x"): 1}.keys()])
def test_lying_subclasses_stay_unencodable(liar):
    with pytest.raises(Unencodable):
        encode_value(liar)
    assert _grade(liar, "'expected'") == "failed"


@pytest.mark.parametrize("text", ["Decimal('abc')", "Decimal(1)", "Fraction(1, 0)", "Fraction(1.5, 2)",
                                  "deque([1, 2], 1)", "deque([1])", "dict_keys([1, 1])", "dict_items([1])",
                                  "Match((0,), 'a')", "Match((0, 1), 2)", "ndarray([1], 'O')", "numpy([1])",
                                  "Decimal(__import__('os'))", "Counter({1: 2})"])
def test_forged_tagged_texts_are_refused(text):
    with pytest.raises(LiteralError):
        decode_value(text)


def test_tagged_values_decode_to_standard_types_only():
    assert type(decode_value("Decimal('1.5')")) is decimal.Decimal
    assert type(decode_value("Fraction(2, 4)")) is fractions.Fraction and decode_value("Fraction(2, 4)") == 0.5
    assert type(decode_value("deque([1], 3)")) is collections.deque and decode_value("deque([1], 3)").maxlen == 3
    match = decode_value("Match((1, 2), 'b')")
    assert type(match) is MatchResult and match and match != decode_value("Match((1, 2), 'b')")


def test_numpy_values_compare_as_python_does():
    np = pytest.importorskip("numpy")
    assert encode_value(np.int64(3)) == "numpy(3)" and _grade(np.int64(3), "3") == "passed"
    assert _grade(np.float32(0.1), "0.1") == "failed"  # float32(0.1) != 0.1 in Python too
    assert _grade(np.bool_(True), "True", op="is") == "failed"  # `np.True_ is True` is false
    assert _grade(np.bool_(True), "", op="truthy") == "passed"
    assert _grade(np.array([[1, 2], [3, 4]]), "[[1, 2], [3, 4]]") == "failed"  # an array's == is ambiguous
    assert _grade(np.array([7]), "[7]") == "passed"  # bool(array([True])) is True, as in Python
    with pytest.raises(Unencodable):
        encode_value(np.array([object()]))


def test_tagged_values_returned_from_the_sandbox(pool):
    from trl_unittest.execution import Program

    src = ("import collections, decimal, fractions, re\n"
           "class Name(str):\n    pass\n"
           "def f(i):\n"
           "    return [decimal.Decimal('2.50'), fractions.Fraction(3, 4), collections.deque([1], 2),\n"
           "            {'a': 1}.keys(), Name('x'), re.match('a', 'a')][i]\n")
    tests = [Test(expr="f(0)", expected="2.5"), Test(expr="f(1)", expected="0.75"),
             Test(expr="f(2)", expected="deque([1], 2)"), Test(expr="f(3)", expected="{'a'}"),
             Test(expr="f(4)", expected="'x'"), Test(expr="f(5)", op="truthy")]
    result = pool.run(Program(src, tests))
    assert [t.outcome for t in result.tests] == ["passed"] * 6, result.tests


def _parsed(text):
    """decode_value's answer by the parse alone (the fast path bypassed)."""
    from trl_unittest.code import parse
    from trl_unittest.execution import values

    try:
        return "ok", values._build(parse(text.strip(), mode="eval").body, 0)
    except (LiteralError, SyntaxError, ValueError) as e:
        return "error", type(e).__name__


@pytest.mark.parametrize("text", ["None", "True", "False", "0", "-0", "00", "-5", "12345678901234567890",
                                  "1.5", "-0.0", "1e+20", "1.5e-07", "1.5e+999", "''", "'a b'", "'é'", "' x'",
                                  "'\u2028'", "'\x0c'", "'\\n'", " 1", "1 ", "1_000", "True ", "b''", "b'ab c'",
                                  "b'\\x01'", "[]", "()", "{}", "set()", "frozenset()", "(1,)", "(1)",
                                  "[1, 'a', None]", "(1, -2.5, b'x')", "{1, True, 1.0}", "['a, b']", "['a', 'b']",
                                  "[1,2]", "{'a': 1}", "[[1, 2], [3]]", "[(), ()]", "[[], [1, 2]]", "{'a:', 'b'}"])
def test_fast_decoding_gives_what_the_parse_gives(text):
    got = decode_value(text)
    kind, want = _parsed(text)
    assert kind == "ok"
    assert type(got) is type(want) and (got == want or got != got) and str(got) == str(want)


@pytest.mark.parametrize("text", ["007", "'abc", "'a\\'", "'a'b'", "1e", "\x00", "b'\u00e9'", "(,)", "[1, ,]", "[1",
                                  "{[1]}", "[1, 2,, 3]"])
def test_fast_decoding_rejects_what_the_parse_rejects(text):
    with pytest.raises(LiteralError):
        decode_value(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
                 st.binary(max_size=6), st.lists(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
                 st.tuples(st.integers(), st.binary(max_size=3)), st.sets(st.integers(), max_size=3)))
def test_fast_decoding_agrees_with_the_parse_on_encoded_values(v):
    text = encode_value(v)
    got = decode_value(text)
    assert ("ok", got) == _parsed(text) and type(got) is type(v)
