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
