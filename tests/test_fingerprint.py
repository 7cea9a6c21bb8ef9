"""AST fingerprints (trl_unittest.code): what they identify, and that they do not depend on the Python version."""

import ast

from trl_unittest.code import _stable_dump, ast_fingerprint

SRC = 'def total(xs, k):\n    """Sum plus k."""\n    acc = 0\n    for x in xs:\n        acc += x\n    return acc + k\n'


def test_names_docstrings_and_formatting_do_not_count_but_code_does():
    renamed = "def total(items, n):\n    s = 0\n    for i in items:  # comment\n        s += i\n    return s + n\n"
    assert ast_fingerprint(SRC) == ast_fingerprint(renamed)
    assert ast_fingerprint(SRC) != ast_fingerprint(SRC.replace("acc + k", "acc - k"))
    assert ast_fingerprint(SRC) != ast_fingerprint(SRC.replace("xs, k", "xs, k=1"))  # defaults count
    assert ast_fingerprint("def f(:") == ast_fingerprint("def f(:  \n")  # unparsable: by stripped text


def test_a_field_a_newer_python_adds_empty_does_not_change_the_dump(monkeypatch):
    """3.12 added FunctionDef.type_params (empty for ordinary functions): the splits and leakage filters hash
    fingerprints, so a model trained on one Python and data built on another must agree."""
    tree = ast.parse(SRC)
    before = _stable_dump(tree)
    monkeypatch.setattr(ast.FunctionDef, "_fields", ast.FunctionDef._fields + ("added_in_a_new_python",))
    monkeypatch.setattr(ast.Name, "_fields", ast.Name._fields + ("another_one",))
    for node in ast.walk(tree):  # as a newer parser fills them: empty list, None
        if isinstance(node, ast.FunctionDef):
            node.added_in_a_new_python = []
        if isinstance(node, ast.Name):
            node.another_one = None
    assert ast.dump(tree, annotate_fields=False) != ast.dump(ast.parse(SRC), annotate_fields=False)  # plain dump
    assert _stable_dump(tree) == before
    assert "total" in before and "Add()" in before  # and it is a dump of the code


# functions whose tree could round-trip through ast.unparse differently: u-prefixed and implicitly joined
# strings, f-strings with conversions and nested specs, a docstring, decorators, walrus, match, lambdas, large
# and special constants, star expressions, recursion through the function's own name
ROUND_TRIP = [
    'def g(x):\n    """Doc."""\n    return u"a" "b" + f"{x!r:>{x}}" + f"{{}}{x=}"\n',
    '@dec(1)\ndef g(*a, k=1e999, **kw):\n    return g(*a[::-1], k=-0.0, **{**kw, "z": (y := 2)}), y\n',
    'def g(v):\n    match v:\n        case [1, *rest] if rest: return rest\n        case {"k": x}: return x\n'
    '        case _: return (lambda q=1: q)()\n',
    'async def g(xs):\n    async for x in xs:\n        yield x if x else not x\n',
    'def g(a, /, b, *, c):\n    global Z\n    return [i for i in range(a) if i % b] or {c: ...}\n',
]


def test_a_function_fingerprint_is_the_fingerprint_of_its_unparsed_renamed_tree():
    """Deduplicator fingerprints the renamed tree directly: the same key as unparsing it and fingerprinting the
    text, which is what deduplication and the exercise split were keyed on (a change would move tasks between
    splits). Checked on the snippets above and every function of a few standard-library modules."""
    import ast
    import inspect
    import json
    import textwrap

    from trl_unittest.data.filters import Deduplicator

    def by_unparse(src):
        tree = ast.parse(src)
        name = tree.body[0].name
        tree.body[0].name = "_f"
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and n.id == name:
                n.id = "_f"
        return ast_fingerprint(ast.unparse(tree))

    sources = list(ROUND_TRIP)
    for module in (json.decoder, textwrap, inspect):
        text = inspect.getsource(module)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sources.append(textwrap.dedent(" " * node.col_offset + ast.get_source_segment(text, node)))
    assert len(sources) > 150
    for src in sources:
        assert Deduplicator._function_fingerprint(src) == by_unparse(src), src
