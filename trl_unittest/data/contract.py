"""What a function's own text says about the values a parameter may take: how the body uses it, what the
docstring's prose calls it, and a stated ``sorted`` precondition.

Used by :mod:`trl_unittest.data.inputs` to keep generated calls inside the function's contract when a parameter has
no type hint, no literal default and no doctest argument: a parameter the body passes to ``len`` or indexes with a
slice is not probed with an int, one it compares with ``< 0`` or passes to ``range`` is not probed with a string
(mutmut's survivors on standard-library tasks were of this kind: ``bisect_left('abc', 'abc')``, a dictionary where
a sorted list is meant). A parameter the body checks with ``isinstance``/``type``/``hasattr`` handles several types
on purpose and is left unconstrained; contradicting uses (a value reassigned to another type) also leave it so.

Hand-written on :mod:`ast`: type inferencers (mypy, pytype) infer from annotations and call sites, not from how an
unannotated parameter is used inside one function, and need the whole module importable.
"""

from __future__ import annotations

import ast
import re

from trl_unittest.data.extract import parse as _parse

NUMERIC = frozenset({"int", "float", "bool"})
INTEGRAL = frozenset({"int", "bool"})
SEQUENCE = frozenset({"str", "bytes", "list", "tuple"})
ITERABLE = SEQUENCE | {"dict", "set", "frozenset"}
SUBSCRIPTABLE = SEQUENCE | {"dict"}
TEXT = frozenset({"str", "bytes"})
LITERAL_KINDS = ITERABLE | NUMERIC | {"complex", "NoneType"}

_STR_ONLY = {"encode", "format", "format_map", "casefold", "isidentifier", "isnumeric", "isdecimal"}
_TEXT_METHODS = {"lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                 "endswith", "replace", "find", "rfind", "rindex", "join", "isdigit", "isalpha", "isalnum", "isspace",
                 "isupper", "islower", "title", "capitalize", "partition", "rpartition", "zfill", "center", "ljust",
                 "rjust", "expandtabs", "translate", "swapcase", "removeprefix", "removesuffix", "istitle"}
_METHOD_KINDS: dict[str, frozenset[str]] = {
    **{m: frozenset({"str"}) for m in _STR_ONLY}, **{m: TEXT for m in _TEXT_METHODS},
    "decode": frozenset({"bytes"}), "hex": frozenset({"bytes", "float"}),
    "index": SEQUENCE, "count": SEQUENCE,
    **{m: frozenset({"list"}) for m in ("append", "extend", "insert", "remove", "sort", "reverse")},
    "pop": frozenset({"list", "dict", "set"}), "clear": frozenset({"list", "dict", "set"}),
    "copy": frozenset({"list", "dict", "set", "frozenset"}),
    **{m: frozenset({"dict"}) for m in ("items", "keys", "values", "get", "setdefault", "popitem")},
    "update": frozenset({"dict", "set"}),
    **{m: frozenset({"set", "frozenset"}) for m in ("add", "discard", "union", "intersection", "difference",
                                                     "issubset", "issuperset", "symmetric_difference",
                                                     "isdisjoint")},
    "bit_length": INTEGRAL, "to_bytes": INTEGRAL, "is_integer": frozenset({"float", "int"}),
}
_ITERATING_CALLS = {"sorted", "list", "tuple", "set", "frozenset", "sum", "enumerate", "reversed", "iter", "any",
                    "all", "zip", "map", "filter", "dict"}
_NUMERIC_CALLS = {"abs", "round", "divmod", "pow"}
_POLYMORPHIC_CALLS = {"isinstance", "type", "hasattr", "callable", "getattr", "issubclass", "id"}
# what a docstring's prose calls a value, e.g. "insert item x in list a"
_PROSE_KINDS = [
    ("list", "list[int]"), ("sequence", "list[int]"), ("array", "list[int]"), ("string", "str"), ("str", "str"),
    ("integer", "int"), ("int", "int"), ("float", "float"), ("dict", "dict[str, int]"),
    ("dictionary", "dict[str, int]"), ("mapping", "dict[str, int]"), ("tuple", "tuple[int, int]"),
    ("set", "set[int]"), ("bytes", "bytes"),
]


def _is_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "len":
        return True
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def kinds_of(annotation: str | None, element: bool = False) -> frozenset[str] | None:
    """The kinds an annotation text (or, with ``element``, its items: ``list[int]`` -> int) admits."""
    if not annotation:
        return None
    text = annotation.strip().lower()
    if element:
        m = re.fullmatch(r"\w+\[(\w+)(?:,.*)?\]", text)
        if not m or annotation_kind(text) not in ("list", "tuple", "set", "frozenset", "sequence"):
            return None
        text = m.group(1)
    kind = annotation_kind(text)
    return NUMERIC if kind in ("int", "float") else frozenset({kind}) if kind in LITERAL_KINDS else None


def _peer_kinds(side: ast.expr, known: dict[str, str]) -> frozenset[str] | None:
    """What an ordering comparison's other side says: a number, or a parameter (or its item) of known type."""
    if _is_number(side):
        return NUMERIC
    if isinstance(side, ast.Name):
        return kinds_of(known.get(side.id))
    if isinstance(side, ast.Subscript) and isinstance(side.value, ast.Name) and not isinstance(side.slice, ast.Slice):
        return kinds_of(known.get(side.value.id), element=True)
    return None


def _use_kinds(node: ast.Name, parent: ast.AST, grand: ast.AST | None,
               known: dict[str, str]) -> frozenset[str] | None:
    """The kinds one use of a parameter admits (None: this use says nothing)."""
    if isinstance(parent, ast.Call):
        if parent.func is node:
            return frozenset()  # called: no literal is a callable
        if isinstance(parent.func, ast.Name) and node in parent.args:
            fn = parent.func.id
            if fn == "len":
                return ITERABLE
            if fn == "range":
                return INTEGRAL
            if fn in _NUMERIC_CALLS:
                return NUMERIC
            if fn in _ITERATING_CALLS and (fn == "zip" or parent.args[0] is node):
                return ITERABLE
            if fn in ("min", "max") and len(parent.args) == 1:
                return ITERABLE
        return None
    if isinstance(parent, ast.Subscript) and parent.value is node:
        sl = parent.slice
        if isinstance(sl, ast.Slice):
            return SEQUENCE
        if isinstance(sl, ast.Constant) and isinstance(sl.value, str):
            return frozenset({"dict"})
        return SUBSCRIPTABLE
    if isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is node:
        return ITERABLE
    if isinstance(parent, ast.Compare):
        for op, right in zip(parent.ops, parent.comparators):
            if right is node and isinstance(op, (ast.In, ast.NotIn)):
                return ITERABLE
        if any(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in parent.ops):
            for side in [parent.left] + parent.comparators:
                peer = _peer_kinds(side, known) if side is not node else None
                if peer:
                    return peer
        return None
    if isinstance(parent, ast.BinOp):
        other = parent.right if parent.left is node else parent.left
        if isinstance(parent.op, (ast.FloorDiv, ast.Div, ast.Pow)):
            return NUMERIC
        if isinstance(parent.op, (ast.LShift, ast.RShift)):
            return INTEGRAL
        if isinstance(parent.op, (ast.Add, ast.Sub)) and _is_number(other):
            return NUMERIC
        if isinstance(parent.op, ast.Add) and isinstance(other, ast.Constant) and isinstance(other.value, str):
            return frozenset({"str"})
        return None
    if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, (ast.USub, ast.Invert)):
        return NUMERIC
    if isinstance(parent, ast.Attribute) and parent.value is node and isinstance(grand, ast.Call) and \
            grand.func is parent:
        return _METHOD_KINDS.get(parent.attr)
    return None


def usage_kinds(func_src: str, known: dict[str, str] | None = None) -> dict[str, frozenset[str]]:
    """Per parameter, the literal kinds (``type(v).__name__``) its uses in the body admit; a parameter whose uses
    say nothing, contradict each other, or test its type is absent. An empty set: no literal fits (it is called).
    ``known``: annotations already known for some parameters (an ordering comparison with one, or with one's item,
    says the other is of the same kind: ``a[mid] < x`` with ``a: list[int]``); parameters found numeric here join
    them for one more pass (``lo < hi`` once ``lo`` is known)."""
    try:
        func = _parse(func_src).body[0]
    except (SyntaxError, ValueError, IndexError, RecursionError):
        return {}
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return {}
    parents: dict[ast.AST, ast.AST] = {}
    nodes = list(ast.walk(func))  # walked once: both passes go over the same nodes in the same order
    for n in nodes:
        for c in ast.iter_child_nodes(n):
            parents[c] = n
    known = dict(known or {})
    allowed: dict[str, frozenset[str]] = {}
    for _ in range(2):
        allowed = _usage_pass(func, nodes, parents, known)
        known.update({k: "int" for k, v in allowed.items() if v and v <= NUMERIC and k not in known})
    return allowed


def _usage_pass(func: ast.FunctionDef, nodes: list[ast.AST], parents: dict, known: dict[str, str]
                ) -> dict[str, frozenset[str]]:
    a = func.args
    names = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
    allowed: dict[str, frozenset[str]] = {}
    free: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) and \
                n.targets[0].id in names and _is_number(n.value):  # ``hi = len(a)`` when hi is None
            allowed[n.targets[0].id] = allowed.get(n.targets[0].id, NUMERIC) & NUMERIC
        if not (isinstance(n, ast.Name) and n.id in names and isinstance(n.ctx, ast.Load)):
            continue
        parent = parents.get(n)
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and \
                parent.func.id in _POLYMORPHIC_CALLS:
            free.add(n.id)
            continue
        kinds = _use_kinds(n, parent, parents.get(parent), known)
        if kinds is None:
            continue
        if n.id in allowed:
            both = allowed[n.id] & kinds
            if not both and kinds:
                free.add(n.id)  # contradicting uses: a reassigned or polymorphic parameter
            allowed[n.id] = both
        else:
            allowed[n.id] = kinds
    return {k: v for k, v in allowed.items() if k not in free}


# The prose patterns, compiled once per kind word rather than once per (word, parameter name): the names vary per
# function, which overflowed ``re``'s pattern cache (26k compilations on the full builder set). A name is then
# checked at the places where the per-name pattern could match; ``tests/data/test_contract.py`` keeps the per-name
# formulation as the oracle.
_QUOTES = "[`*']*"
_NAME_END = re.compile(r"[\w(=]")  # what may not follow a name ("list a" but not "list append(")
_WORD_NAME = re.compile(r"\w+")
# "list a": where the name starts after the kind word
_BEFORE_NAME = {word: re.compile(rf"\b{word}\s+{_QUOTES}") for word, _ in _PROSE_KINDS}
# "a is a list": a name is a whole word, not after a dot; a lookahead so that overlapping statements all count
_NAME_IS = {word: re.compile(rf"(?=(?<![\w.])(\w+){_QUOTES}\s+(?:is|must be|should be)\s+an?\s+(?:\w+\s+)?{word}\b)")
            for word, _ in _PROSE_KINDS}
_NAME_SORTED = re.compile(rf"(?=(?<![\w.])(\w+){_QUOTES}\s+(?:is|must be|should be|are)\s+(?:already\s+)?sorted\b)")
# an argument list's entry ("letters: Sorted list of letters.", "a (list): the sorted values")
_ARG_SORTED = re.compile(rf"^\s*{_QUOTES}(\w+){_QUOTES}\s*(?:\([^)\n]*\))?\s*:\s*(?:an?\s+|the\s+)?(?:already\s+)?sorted\b",
                         re.M)
_SORTED = re.compile(r"\bsorted\s+")
_SORTED_WORD = re.compile(rf"\w+\s+{_QUOTES}")
_QUOTES_RE = re.compile(_QUOTES)


def _named_at(low: str, starts: set[int], names: list[str]) -> set[str]:
    """The (lowercased) names that start at one of ``starts`` and end before a character that is no part of a
    name or a call (``[\\w(=]``)."""
    out = set()
    for n in names:
        for p in starts:
            if low.startswith(n, p):
                end = p + len(n)
                if not _NAME_END.match(low, end):
                    out.add(n)
                    break
    return out


def _plain(name: str) -> bool:
    """A name made of word characters only: the precompiled patterns find it wherever the per-name ones would
    (a name with other characters, e.g. a combining mark left by ``lower()``, takes the per-name patterns)."""
    return _WORD_NAME.fullmatch(name) is not None


def prose_types(doc: str, names: list[str]) -> dict[str, str]:
    """Types the docstring's prose gives a parameter: "in list a", "the string s" ("item x" says nothing)."""
    out: dict[str, str] = {}
    low = doc.lower()
    lowered = {name.lower() for name in names if _plain(name.lower())}
    said: dict[str, set[str]] = {}  # per kind word, the lowered names the prose gives that kind
    for word, _ in _PROSE_KINDS:
        if word not in low:
            said[word] = set()
            continue
        starts = {m.end() for m in _BEFORE_NAME[word].finditer(low)}
        found = _named_at(low, starts, lowered) if starts else set()
        found.update(m.group(1) for m in _NAME_IS[word].finditer(low) if m.group(1) in lowered)
        said[word] = found
    for name in names:
        n = name.lower()
        for word, ann in _PROSE_KINDS:
            if n in said[word] if n in lowered else _prose_says(low, re.escape(n), word):
                out[name] = ann
                break
    return out


def _prose_says(low: str, n: str, word: str) -> bool:
    """The per-name patterns (for names that are not plain words)."""
    return bool(re.search(rf"\b{word}\s+[`*']*{n}[`*']*(?![\w(=])", low) or
                re.search(rf"(?<![\w.]){n}[`*']*\s+(?:is|must be|should be)\s+an?\s+(?:\w+\s+)?{word}\b", low))


def sorted_params(doc: str, names: list[str]) -> set[str]:
    """Parameters the docstring says are sorted ("assuming a is sorted", "sorted list a")."""
    low = doc.lower()
    if "sorted" not in low:
        return set()
    lowered = {name.lower() for name in names if _plain(name.lower())}
    found = {m.group(1) for m in _NAME_SORTED.finditer(low) if m.group(1) in lowered}
    found |= {m.group(1) for m in _ARG_SORTED.finditer(low) if m.group(1) in lowered}
    # "sorted a", "sorted list a": the name starts after "sorted" or after the word that follows it
    starts = set()
    for m in _SORTED.finditer(low):
        starts.add(_QUOTES_RE.match(low, m.end()).end())
        w = _SORTED_WORD.match(low, m.end())
        if w:
            starts.add(w.end())
    found |= _named_at(low, starts, lowered)
    out = set()
    for name in names:
        n = name.lower()
        if n in found if n in lowered else _sorted_says(low, re.escape(n)):
            out.add(name)
    return out


def _sorted_says(low: str, n: str) -> bool:
    """The per-name patterns (for names that are not plain words)."""
    return bool(re.search(rf"(?<![\w.]){n}[`*']*\s+(?:is|must be|should be|are)\s+(?:already\s+)?sorted\b", low) or
                re.search(rf"\bsorted\s+(?:\w+\s+)?[`*']*{n}[`*']*(?![\w(=])", low) or
                re.search(rf"^\s*[`*']*{n}[`*']*\s*(?:\([^)\n]*\))?\s*:\s*(?:an?\s+|the\s+)?(?:already\s+)?sorted\b", low,
                          re.M))


def annotation_kind(annotation: str) -> str:
    """The kind of the values an annotation text draws: ``list[int]`` -> ``list``."""
    return annotation.split("[", 1)[0].strip().lower()


def annotation_for(kinds: frozenset[str]) -> str | None:
    """A type to draw values of when only the admitted kinds are known."""
    for kind, ann in (("int", "int"), ("float", "float"), ("list", "list[int]"), ("str", "str"),
                      ("dict", "dict[str, int]"), ("set", "set[int]"), ("tuple", "tuple[int, int]"),
                      ("bytes", "bytes")):
        if kind in kinds:
            return ann
    return None
