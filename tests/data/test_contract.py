"""Generated inputs stay inside a function's contract: kinds from the body's uses and the docstring's prose."""

import ast

from trl_unittest.data.contract import NUMERIC, prose_types, sorted_params, usage_kinds
from trl_unittest.data.extract import extract_module
from trl_unittest.data.inputs import generate_inputs
from trl_unittest.execution.values import decode_value

# the standard library's pure-Python bisect_left, whose generated tests were `bisect_left('abc', 'abc')`, a
# dictionary for `a`, unsorted lists and strings for `hi` before
BISECT = '''
def bisect_left(a, x, lo=0, hi=None, *, key=None):
    """Return the index where to insert item x in list a, assuming a is sorted.

    Optional args lo (default 0) and hi (default len(a)) bound the
    slice of a to be searched.
    """
    if lo < 0:
        raise ValueError('lo must be non-negative')
    if hi is None:
        hi = len(a)
    if key is None:
        while lo < hi:
            mid = (lo + hi) // 2
            if a[mid] < x:
                lo = mid + 1
            else:
                hi = mid
    else:
        while lo < hi:
            mid = (lo + hi) // 2
            if key(a[mid]) < x:
                lo = mid + 1
            else:
                hi = mid
    return lo
'''


def _arguments(expr):
    call = ast.parse(expr, mode="eval").body
    names = ["a", "x", "lo", "hi"]
    out = {names[i]: decode_value(ast.unparse(v)) for i, v in enumerate(call.args)}
    out.update({k.arg: decode_value(ast.unparse(k.value)) for k in call.keywords})
    return out


def test_bisect_gets_sorted_lists_and_numbers_only():
    c = extract_module(BISECT, path="bisect.py").candidates[0]
    exprs = generate_inputs(c)
    assert len(exprs) >= 12
    for e in exprs:
        args = _arguments(e)
        assert type(args["a"]) is list and args["a"] == sorted(args["a"]), e
        assert type(args["x"]) in (int, float), e
        assert type(args.get("lo", 0)) is int and type(args.get("hi")) in (int, type(None)), e
        assert args.get("key") is None, e  # called in the body: no literal is a valid key
    assert any(len(_arguments(e)["a"]) >= 2 for e in exprs)  # not only empty lists


def test_usage_beats_a_name_hint_and_leaves_polymorphic_or_silent_parameters_open():
    src = '''
def middle(a, n):
    """The middle item of a, or n when a is shorter than n."""
    if len(a) < n:
        return n
    return a[len(a) // 2]


def describe(a):
    """Describe any value."""
    if isinstance(a, int):
        return a + 1
    return len(a)


def twice(a):
    """Twice a value."""
    return a * 2
'''
    cands = {c.entry_point: c for c in extract_module(src, path="m.py").candidates}
    kinds = usage_kinds(cands["middle"].func_src)
    assert "int" not in kinds["a"] and "list" in kinds["a"]  # the name hint says `a` is an int; len(a) says not
    assert kinds["n"] == NUMERIC
    for e in generate_inputs(cands["middle"]):
        a = decode_value(ast.unparse(ast.parse(e, mode="eval").body.args[0]))
        assert type(a) in (str, bytes, list, tuple, dict), e
    assert "a" not in usage_kinds(cands["describe"].func_src)  # checks its own type: every kind stays
    for name in ("describe", "twice"):  # no evidence from the body: other kinds are still probed
        firsts = {type(decode_value(ast.unparse(ast.parse(e, mode="eval").body.args[0])))
                  for e in generate_inputs(cands[name])}
        assert {int, str, list} <= firsts, name


def test_prose_and_sorted_preconditions():
    doc = "Insert item x in list a, assuming a is sorted. The string s names it."
    assert prose_types(doc, ["a", "x", "s"]) == {"a": "list[int]", "s": "str"}
    assert sorted_params(doc, ["a", "x", "s"]) == {"a"}
    assert sorted_params("Merge the sorted lists.", ["a"]) == set()
    # an argument list's entries (Google and Sphinx-like styles)
    args = "Find a letter.\n\nArgs:\n    letters: Sorted list of lowercase letters.\n    target: The letter.\n"
    assert sorted_params(args, ["letters", "target"]) == {"letters"}
    assert sorted_params("Args:\n  a (list[int]): the already sorted values.\n  b: unsorted\n", ["a", "b"]) == {"a"}
    assert sorted_params("Args:\n  a: The values, sorted by the caller.\n", ["a"]) == set()  # not at the start
    assert prose_types("Return a list of words.", ["a", "words"]) == {}  # "a list": an article, not parameter a


def test_benchmark_sets_aside_mutmut_mutants_that_change_only_a_docstring():
    """mutmut mutates one-line docstrings; such a mutant is equivalent (no test can kill it) and must not count
    against the builder's tests in the independent measure."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "builder.py"
    spec = importlib.util.spec_from_file_location("builder_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    mutated = '''
def x_rshift__mutmut_orig(a, b):
    "Same as a >> b."
    return a >> b
def x_rshift__mutmut_1(a, b):
    "XXSame as a >> b.XX"
    return a >> b
def x_rshift__mutmut_2(a, b):
    "Same as a >> b."
    return a << b
def x_rshift__mutmut_3(a, c):
    "Same as a >> b."
    return a >> b
'''
    assert bench._docstring_only_mutants(mutated) == ["x_rshift__mutmut_1"]
    # the second figure also sets aside a mutant that changes only an exception's message, not one that changes
    # the exception raised or the condition
    mutated = '''
def x_pos__mutmut_orig(n):
    if n < 0:
        raise ValueError("negative")
    return n
def x_pos__mutmut_1(n):
    if n < 0:
        raise ValueError("XXnegativeXX")
    return n
def x_pos__mutmut_2(n):
    if n < 0:
        raise TypeError("negative")
    return n
def x_pos__mutmut_3(n):
    if n <= 0:
        raise ValueError("negative")
    return n
'''
    assert bench._docstring_only_mutants(mutated) == []
    assert bench._docstring_only_mutants(mutated, messages=True) == ["x_pos__mutmut_1"]


# --- the precompiled prose patterns against the per-name ones they replace (kept here as the oracle) ---

def _oracle_prose_types(doc, names):
    import re

    from trl_unittest.data.contract import _PROSE_KINDS

    out = {}
    low = doc.lower()
    for name in names:
        n = re.escape(name.lower())
        for word, ann in _PROSE_KINDS:
            if re.search(rf"\b{word}\s+[`*']*{n}[`*']*(?![\w(=])", low) or \
                    re.search(rf"(?<![\w.]){n}[`*']*\s+(?:is|must be|should be)\s+an?\s+(?:\w+\s+)?{word}\b", low):
                out[name] = ann
                break
    return out


def _oracle_sorted_params(doc, names):
    import re

    out = set()
    low = doc.lower()
    for name in names:
        n = re.escape(name.lower())
        if re.search(rf"(?<![\w.]){n}[`*']*\s+(?:is|must be|should be|are)\s+(?:already\s+)?sorted\b", low) or \
                re.search(rf"\bsorted\s+(?:\w+\s+)?[`*']*{n}[`*']*(?![\w(=])", low) or \
                re.search(rf"^\s*[`*']*{n}[`*']*\s*(?:\([^)\n]*\))?\s*:\s*(?:an?\s+|the\s+)?(?:already\s+)?sorted\b",
                          low, re.M):
            out.add(name)
    return out


def _agree(doc, names):
    assert prose_types(doc, names) == _oracle_prose_types(doc, names), (doc, names)
    assert sorted_params(doc, names) == _oracle_sorted_params(doc, names), (doc, names)


def test_prose_patterns_agree_with_per_name_patterns_on_hand_cases():
    cases = [
        ("x is a list y is a list", ["x", "y", "list"]),  # overlapping statements: "list is a list" too
        ("x is an list is a list", ["x", "list", "an"]),
        ("list `a`( and list b= and list c. and list d", ["a", "b", "c", "d"]),
        ("list a`( then list ab", ["a", "ab"]),
        ("the sorted sorted x, sorted list y, sorted `z`, sorted(w)", ["x", "y", "z", "w", "list"]),
        ("a.b is sorted; c is already sorted; d are sorted", ["b", "c", "d", "a"]),
        ("dictionary d, dict e, string s, str t, integer i, int j", ["d", "e", "s", "t", "i", "j"]),
        ("the list \u0130 and list i", ["\u0130", "i", "I"]),  # lower() adds a combining mark: per-name patterns
        ("", ["a"]),
        ("list A must be a sorted list", ["A", "a"]),
    ]
    for doc, names in cases:
        _agree(doc, names)


def test_prose_patterns_agree_with_per_name_patterns_on_generated_text():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    words = ["list", "sequence", "array", "string", "str", "integer", "int", "float", "dict", "dictionary", "mapping",
             "tuple", "set", "bytes", "sorted", "already", "is", "are", "must", "be", "should", "a", "an", "x", "y",
             "xs", "x_1", "the", "of", "of.", "(", "=", ".", ",", "`", "*", "'", " ", "  ", "\n", "X", "Y"]
    names = st.lists(st.sampled_from(["a", "x", "y", "xs", "x_1", "list", "is", "sorted", "X", "Y", "s"]),
                     max_size=4)

    @settings(max_examples=3000, deadline=None, derandomize=True)
    @given(st.lists(st.sampled_from(words), max_size=25).map(lambda ws: "".join(
        w if w in "(=.,`*' \n" else " " + w for w in ws)), names)
    def check(doc, ns):
        _agree(doc, ns)

    check()


def test_prose_patterns_agree_with_per_name_patterns_on_stdlib_docstrings():
    """Every documented function of some standard-library modules, with its parameters' names."""
    import inspect
    from pathlib import Path

    n = 0
    for mod in ("bisect", "heapq", "textwrap", "statistics", "fractions", "difflib", "random", "shlex"):
        tree = ast.parse(Path(inspect.getfile(__import__(mod))).read_text())
        for f in ast.walk(tree):
            if isinstance(f, ast.FunctionDef) and ast.get_docstring(f):
                a = f.args
                _agree(ast.get_docstring(f), [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs])
                n += 1
    assert n > 100


def test_cross_implementations_benchmark_pairs_rewrites_of_one_function_only():
    """benchmarks/cross_implementations.py runs a task's tests against the other implementations of the same
    function in its package: pairs need the same name once variant suffixes go, the same parameters and docstrings
    that say the same; rotate(s, k) on strings is not a rewrite of rotate_v1(array, k)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "cross_implementations.py"
    spec = importlib.util.spec_from_file_location("cross_implementations", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.base_name("rotate_v2") == bench.base_name("rotate") == "rotate"
    assert bench.base_name("climb_stairs_optimized") == "climb_stairs"
    assert bench.base_name("longest_increasing_subsequence_optimized2") == "longest_increasing_subsequence"

    def row(name, params, doc, source="local:algorithms"):
        return {"task_id": f"{source}/m.{name}", "entry_point": name,
                "reference": f"def {name}({params}):\n    \"\"\"{doc}\n\n    >>> 1\n    \"\"\"\n    return 0\n"}

    rows = [row("rotate_v1", "array, k", "Rotate array to the right by k steps using repeated shifts."),
            row("rotate_v2", "array, k", "Rotate array to the right by k steps using three reversals."),
            row("rotate", "s, k", "Rotate array to the right by k steps using repeated shifts."),
            row("rotate_v3", "array, k", "Return the number of bits set in the word."),
            row("rotate_v4", "array, k", "Rotate array to the right by k steps using repeated shifts.", "local:other")]
    pairs = {(a["entry_point"], b["entry_point"]) for a, b, _ in bench.sibling_pairs(rows, 0.6)}
    assert pairs == {("rotate_v1", "rotate_v2"), ("rotate_v2", "rotate_v1")}
