"""Candidate inputs for observe-and-record: call expressions ``f(<literal args>)`` for a candidate function.

The docstring's own calls of the function with literal arguments, outside doctest prompts (a ``code-block``, a
literal in prose: ``parse_list_header('token, "quoted value"')``), come first: they are inside the contract by
definition, and the structure they show (a list, a quoted item) is what random strings rarely hit.

Sources of values for each parameter, in order: the arguments of its doctest calls and of those docstring calls, the
literals its description gives (``:param scheme: ... like ``"https"```), its literal default,
constants of the function body with boundary mutations (Pynguin-style constant seeding), values drawn from its
type hint with Hypothesis strategies, and hints from the parameter name and the docstring (``:type x: int``,
``x (int): ...``, ``x : int``). Values are then combined one factor at a time around a base call, and by a
seeded random choice, into at most ``max_inputs`` distinct calls.

Hypothesis gives the type-directed generation (``st.from_type`` for what our small table does not cover); draws
are deterministic (``derandomize=True``, no example database) and cached per type. Leaf strategies are kept small
and readable (short ASCII strings, small ints) since the tests are read by people and models. Only values whose
``repr`` is a strict literal (:mod:`trl_unittest.execution.values`) are used, so a test is plain source text.
"""

from __future__ import annotations

import ast
import contextlib

from trl_unittest.data.extract import parse as _parse  # noqa: E402
import functools
import math
import random
import re
import string
import threading
import zlib
from typing import Any

from trl_unittest.cache import cache_root, write_json_atomic
from trl_unittest.data.contract import annotation_for, annotation_kind, prose_types, sorted_params, usage_kinds
from trl_unittest.data.extract import Candidate, Param
from trl_unittest.execution.values import LiteralError, decode_value

MAX_REPR = 120

# ------------------------------------------------------------------------------------------ literal source text


def to_source(v: Any) -> str | None:
    """Literal source text for a plain built-in value, or None when it has none (objects, huge values)."""
    t = type(v)
    if v is None or t in (bool, int, str, bytes):
        s = repr(v)
    elif t is float:
        s = "float('nan')" if math.isnan(v) else ("float('inf')" if v > 0 else "float('-inf')") if math.isinf(v) \
            else repr(v)
    elif t is complex:
        s = repr(v) if all(math.isfinite(x) for x in (v.real, v.imag)) else None
    elif t in (list, tuple):
        items = [to_source(x) for x in v]
        if any(i is None for i in items):
            return None
        s = "[" + ", ".join(items) + "]" if t is list else \
            "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    elif t in (set, frozenset):
        items = sorted((to_source(x) for x in v), key=lambda z: (z is None, z or ""))
        if any(i is None for i in items):
            return None
        s = ("{" + ", ".join(items) + "}" if items else "set()") if t is set else \
            "frozenset({" + ", ".join(items) + "})" if items else "frozenset()"
    elif t is dict:
        parts = []
        for k, x in v.items():
            ks, xs = to_source(k), to_source(x)
            if ks is None or xs is None:
                return None
            parts.append(f"{ks}: {xs}")
        s = "{" + ", ".join(parts) + "}"
    else:
        return None
    if s is None or len(s) > MAX_REPR:
        return None
    return s


def _literal_value(node: ast.expr) -> tuple[bool, Any]:
    try:
        src = ast.unparse(node)
        return True, decode_value(src)
    except (LiteralError, ValueError, TypeError, RecursionError):
        return False, None


# ------------------------------------------------------------------------------------------ type-directed values

_SAFE_TYPE_NAMES = {
    "int": int, "float": float, "str": str, "bytes": bytes, "bool": bool, "list": list, "dict": dict, "set": set,
    "frozenset": frozenset, "tuple": tuple, "complex": complex, "None": None, "object": object,
}


def _typing_namespace() -> dict[str, Any]:
    import collections.abc as cabc
    import typing

    ns: dict[str, Any] = dict(_SAFE_TYPE_NAMES)
    for n in ("List", "Dict", "Set", "FrozenSet", "Tuple", "Optional", "Union", "Any", "Sequence", "Iterable",
              "Mapping", "MutableMapping", "MutableSequence", "Collection", "AbstractSet", "Literal", "AnyStr",
              "Text", "Hashable", "Sized", "Container", "Reversible", "Iterator"):
        if hasattr(typing, n):
            ns[n] = getattr(typing, n)
    ns["typing"] = typing
    ns["t"] = typing
    ns["collections"] = type("collections_ns", (), {"abc": cabc})
    return ns


_ALLOWED_ANN_NODES = (ast.Expression, ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List, ast.Load,
                      ast.Constant, ast.BinOp, ast.BitOr)


def resolve_annotation(text: str | None) -> Any:
    """The type an annotation denotes, evaluated only over builtins and ``typing`` names (no calls, no mined
    names); None when it is anything else."""
    if not text:
        return None
    try:
        tree = _parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    if isinstance(tree.body, ast.Constant) and isinstance(tree.body.value, str):
        return resolve_annotation(tree.body.value)
    for n in ast.walk(tree):
        if not isinstance(n, _ALLOWED_ANN_NODES):
            return None
        if isinstance(n, ast.Constant) and n.value is not None and not isinstance(n.value, (str, int)):
            return None
    ns = _typing_namespace()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id not in ns:
            return None
    for _ in range(50):  # compile() of an AST object may hit gh-106905's spurious SystemError: retry it
        try:
            return eval(compile(tree, "<annotation>", "eval"), {"__builtins__": {}}, ns)  # noqa: S307 - vetted
        except SystemError:
            continue
        except Exception:  # noqa: BLE001
            return None
    return None


_ALPHABET = string.ascii_letters + string.digits + " _-.,"


def strategy_for(tp: Any, depth: int = 0):
    """A Hypothesis strategy for a type, with small readable leaves; ``st.from_type`` for the rest."""
    import typing

    from hypothesis import strategies as st

    if depth > 3:
        return st.none()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    rec = functools.partial(strategy_for, depth=depth + 1)
    if tp is None or tp is type(None):
        return st.none()
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-10, 100)
    if tp is float:
        return st.floats(-100, 100, allow_nan=False).map(lambda x: round(x, 2))
    if tp is str or tp is typing.AnyStr:
        return st.text(_ALPHABET, max_size=10)
    if tp is bytes:
        return st.binary(max_size=8)
    if tp is complex:
        return st.complex_numbers(max_magnitude=10, allow_nan=False, allow_infinity=False)
    if tp in (list, typing.List) and not args:
        return st.lists(st.integers(-10, 100), max_size=5)
    if tp in (dict, typing.Dict) and not args:
        return st.dictionaries(st.text(string.ascii_lowercase, max_size=4), st.integers(-10, 100), max_size=4)
    if tp in (tuple, typing.Tuple) and not args:
        return st.tuples(st.integers(-10, 100), st.integers(-10, 100))
    if tp in (set, typing.Set) and not args:
        return st.sets(st.integers(-10, 100), max_size=5)
    if tp is typing.Any or tp is object:
        return st.one_of(st.integers(-10, 100), st.text(_ALPHABET, max_size=6), st.lists(st.integers(-5, 20),
                                                                                         max_size=4))
    if origin is typing.Union:
        return st.one_of(*[rec(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    import collections.abc as cabc

    if origin in (list, cabc.Sequence, cabc.MutableSequence, cabc.Iterable, cabc.Collection, cabc.Iterator,
                  cabc.Reversible):
        return st.lists(rec(args[0]) if args else st.integers(-10, 100), max_size=5)
    if origin in (set, cabc.Set, cabc.MutableSet):
        return st.sets(rec(args[0]) if args else st.integers(-10, 100), max_size=5)
    if origin is frozenset:
        return st.frozensets(rec(args[0]) if args else st.integers(-10, 100), max_size=5)
    if origin in (dict, cabc.Mapping, cabc.MutableMapping):
        k, v = (args + (int, int))[:2] if args else (str, int)
        return st.dictionaries(rec(k), rec(v), max_size=4)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(rec(args[0]), max_size=4).map(tuple)
        return st.tuples(*[rec(a) for a in args])
    try:
        return st.from_type(tp)
    except Exception:  # noqa: BLE001
        return None


_DRAW_CACHE: dict[str, list[str]] | None = None


def _draw_cache_path():
    from pathlib import Path

    import hypothesis

    root = cache_root()
    code = zlib.crc32(Path(__file__).read_bytes())  # the strategies are in this file: a change invalidates
    return root / f"draws-v2-hypothesis-{hypothesis.__version__}-{code:08x}.json"


@functools.lru_cache(maxsize=4096)
def draw_examples(annotation: str, n: int = 10) -> tuple[str, ...]:
    """Up to ``n`` distinct literal source texts drawn for an annotation (deterministic; cached in memory and
    on disk per Hypothesis version: a derandomized draw costs ~40 ms of Hypothesis engine per type)."""
    import json

    global _DRAW_CACHE
    path = _draw_cache_path()
    if _DRAW_CACHE is None:
        try:
            _DRAW_CACHE = dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            _DRAW_CACHE = {}
    key = f"{n}:{annotation}"
    if key in _DRAW_CACHE:
        return tuple(_DRAW_CACHE[key])
    out = _draw_examples(annotation, n)
    _DRAW_CACHE[key] = list(out)
    write_json_atomic(path, _DRAW_CACHE)
    return out


@contextlib.contextmanager
def _no_local_constants():
    """Hypothesis (>= 6.131) draws 5% of its choices from the literals of the "local" modules loaded in the process
    (any module outside site-packages and the standard library: an editable install of this library, the user's
    script, a notebook's modules), so the same function got different generated inputs on different machines, and
    our own sandbox flags (``'own_pid_ns'``) as test inputs. The draws use Hypothesis' built-in constants only.
    Private API: where it is absent (another Hypothesis version), there is nothing to switch off."""
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        yield
        return
    get, empty = getattr(providers, "_get_local_constants", None), getattr(providers, "Constants", None)
    if get is None or empty is None:
        yield
        return
    with _CONSTANTS_LOCK:
        providers._get_local_constants = lambda: empty()
        _clear(providers)  # pools already computed with the local constants
        try:
            yield
        finally:
            providers._get_local_constants = get
            _clear(providers)


_CONSTANTS_LOCK = threading.Lock()


def _clear(providers) -> None:
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None and hasattr(getattr(cache, "cache", None), "clear"):
        cache.cache.clear()


def _draw_examples(annotation: str, n: int) -> tuple[str, ...]:
    tp = resolve_annotation(annotation)
    if tp is None and annotation.strip() not in ("None",):
        return ()
    strategy = strategy_for(tp)
    if strategy is None:
        return ()
    from hypothesis import HealthCheck, Phase, given, settings

    drawn: list[Any] = []

    @settings(database=None, derandomize=True, max_examples=max(n * 2, 10), phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None, print_blob=False)
    @given(strategy)
    def collect(x):
        drawn.append(x)

    try:
        with _no_local_constants():
            collect()
    except Exception:  # noqa: BLE001 - a strategy that cannot generate
        return ()
    out: list[str] = []
    for v in drawn:
        s = to_source(v)
        if s is not None and s not in out:
            out.append(s)
        if len(out) >= n:
            break
    return tuple(out)


# ------------------------------------------------------------------------------------------ hints

_NAME_HINTS = [
    (r"(n|i|j|k|m|num|number|count|size|length|len|width|height|index|idx|start|stop|end|pos|offset|depth|level|"
     r"limit|year|month|day|hour|step|bits|indent|tabsize|maxsplit|times|columns|cols|rows|lo|hi|low|high|"
     r"n_\w+|num_\w+|\w+_count|\w+_size|\w+_index|max\w*|min\w*)", "int"),
    (r"(s|string|text|txt|name|word|line|prefix|suffix|sep|delimiter|delim|char|c|ch|pattern|fmt|format|title|"
     r"label|encoding|msg|message|url|host|sentence|chars|\w+_str|\w+_name|\w+_text)", "str"),
    (r"(words|lines|names|strings|parts|tokens|\w+_names)", "list[str]"),
    (r"(nums|numbers|values|arr|array|lst|list|seq|sequence|items|xs|elements|iterable|data|l|a_list|ints|"
     r"\w+_list)", "list[int]"),
    (r"(flag|strict|reverse|verbose|is_\w+|has_\w+|allow_\w+|use_\w+|ignore_\w+|keep\w*|quiet)", "bool"),
    (r"(d|dct|mapping|dict|table|counts|\w+_dict|\w+_map)", "dict[str, int]"),
    (r"(ratio|rate|prob|p|alpha|weight|scale|factor|tol|eps|f|fraction|percent|temperature|\w+_ratio)", "float"),
    (r"(b|buf|buffer|raw|payload|byte_string)", "bytes"),
    (r"(x|y|z|a|b|v|val|value|num1|num2|n1|n2|lhs|rhs|left|right|other)", "int"),
]

_HINT_WORDS = [
    (r"\b(list|sequence|iterable|array) of (int|integer|number)s?\b", "list[int]"),
    (r"\b(list|sequence|iterable|array) of (str|string)s?\b", "list[str]"),
    (r"\b(list|sequence|iterable|array) of (float)s?\b", "list[float]"),
    (r"\b(int|integer|long)\b", "int"),
    (r"\b(float|double|real)\b", "float"),
    (r"\b(str|string|unicode|text)\b", "str"),
    (r"\b(bool|boolean)\b", "bool"),
    (r"\b(bytes|bytearray)\b", "bytes"),
    (r"\b(list|sequence|iterable|array)\b", "list[int]"),
    (r"\b(dict|dictionary|mapping)\b", "dict[str, int]"),
    (r"\b(tuple)\b", "tuple[int, int]"),
    (r"\b(set)\b", "set[int]"),
]


def _hint_from_text(text: str) -> str | None:
    t = text.lower()
    for pat, ann in _HINT_WORDS:
        if re.search(pat, t):
            return ann
    return None


def docstring_types(doc: str) -> dict[str, str]:
    """Parameter types stated in a docstring (reST ``:type x:``/``:param int x:``, Google, numpy styles)."""
    out: dict[str, str] = {}
    for m in re.finditer(r":type\s+(\w+)\s*:\s*([^\n]+)", doc):
        out.setdefault(m.group(1), m.group(2))
    for m in re.finditer(r":param\s+([\w\[\], ]+?)\s+(\w+)\s*:", doc):
        out.setdefault(m.group(2), m.group(1))
    for m in re.finditer(r"^\s*(\w+)\s*\(([^)\n]+)\)\s*:", doc, re.M):
        out.setdefault(m.group(1), m.group(2))
    for m in re.finditer(r"^\s*(\w+)\s+:\s+([^\n]+)$", doc, re.M):
        out.setdefault(m.group(1), m.group(2))
    hinted = {}
    for k, v in out.items():
        h = resolve_annotation(v) is not None and v.strip() or _hint_from_text(v)
        if h:
            hinted[k] = h
    return hinted


def name_hint(name: str) -> str | None:
    for pat, ann in _NAME_HINTS:
        if re.fullmatch(pat, name.lower()):
            return ann
    return None


# ------------------------------------------------------------------------------------------ seeding and mutation

def _kind(v: Any) -> str:
    return type(v).__name__


def mutate_value(v: Any) -> list[Any]:
    """Small mutations of a value: boundaries for numbers, edits for strings and containers."""
    t = type(v)
    if t is bool:
        return [not v]
    if t is int:
        return [v - 1, v + 1, -v, 0]
    if t is float:
        return [v + 1.0, -v, 0.0, v / 2]
    if t is str:
        return ["", v[:-1], v + v[:1], v.upper(), v[::-1]] if v else ["a", " "]
    if t is bytes:
        return [b"", v[:-1], v + v[:1]] if v else [b"a"]
    if t in (list, tuple):
        out = [t(), t(v[:-1]), t(reversed(v)), t(list(v) + list(v[:1]))] if v else []
        return out
    if t is dict:
        return [{}] + ([dict(list(v.items())[:-1])] if v else [])
    if t in (set, frozenset):
        return [t()]
    return []


def body_constants(func_src: str) -> list[Any]:
    """Literal constants in the function body (docstring excluded), in order of appearance."""
    try:
        func = _parse(func_src).body[0]
    except (SyntaxError, ValueError, IndexError):
        return []
    body = func.body[1:] if func.body and isinstance(func.body[0], ast.Expr) else func.body
    out: list[Any] = []
    for stmt in body:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Constant) and type(n.value) in (int, float, str, bytes) and \
                    not isinstance(n.value, bool):
                v = n.value
                if isinstance(v, (str, bytes)) and len(v) > 40:
                    continue
                if v not in out:
                    out.append(v)
    return out


# ------------------------------------------------------------------------------------------ combination

def _call(entry: str, params: list[Param], values: dict[str, str]) -> str:
    args = []
    kw_mode = False
    for p in params:
        if p.kind in ("vararg", "kwarg"):
            if p.kind == "vararg":
                kw_mode = True  # after *args, keywords only
            continue
        if p.name not in values:
            kw_mode = kw_mode or p.kind != "posonly"
            continue
        if p.kind == "kwonly" or (kw_mode and p.kind == "pos"):
            args.append(f"{p.name}={values[p.name]}")
        else:
            args.append(values[p.name])
    return f"{entry}({', '.join(args)})"


def _doctest_args(cand: Candidate, doctest_exprs: list[str]) -> dict[str, list[Any]]:
    """Literal argument values of the entry point's calls in doctests, by parameter name."""
    positional = [p for p in cand.params if p.kind in ("posonly", "pos")]
    out: dict[str, list[Any]] = {}
    for expr in doctest_exprs:
        try:
            tree = _parse(expr, mode="eval")
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == cand.entry_point):
                continue
            for i, a in enumerate(node.args):
                if i < len(positional) and not isinstance(a, ast.Starred):
                    ok, v = _literal_value(a)
                    if ok:
                        out.setdefault(positional[i].name, []).append(v)
            for k in node.keywords:
                if k.arg:
                    ok, v = _literal_value(k.value)
                    if ok:
                        out.setdefault(k.arg, []).append(v)
    return out


MAX_SHOWN_CALLS = 6  # docstring calls used as inputs
_CALL_SPAN = 400  # longest docstring call text looked at


def docstring_calls(doc: str, entry_point: str, skip: set[str] = frozenset()) -> list[str]:
    """The docstring's calls of ``entry_point`` whose arguments are all literals (unparsed, so that the text is
    canonical), doctest prompts or not, but for those in ``skip``; at most ``MAX_SHOWN_CALLS``."""
    out: list[str] = []
    if entry_point + "(" not in doc:
        return out
    skip = {_canonical(e) for e in skip}  # a doctest's call written otherwise is the same input
    for m in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\(", doc):
        start = m.start()
        for close in (j for j in range(m.end(), min(len(doc), start + _CALL_SPAN)) if doc[j] == ")"):
            text = doc[start:close + 1]
            try:
                node = _parse(text, mode="eval").body
            except (SyntaxError, ValueError, RecursionError):
                continue
            if isinstance(node, ast.Call) and all(not isinstance(a, ast.Starred) and _literal_value(a)[0]
                                                  for a in node.args) and \
                    all(k.arg is not None and _literal_value(k.value)[0] for k in node.keywords):
                expr = ast.unparse(node)
                if expr not in skip and expr not in out and len(expr) <= MAX_REPR * 2:
                    out.append(expr)
            break  # the first closing parenthesis that parses ends the call, literal or not
        if len(out) >= MAX_SHOWN_CALLS:
            break
    return out


def _canonical(expr: str) -> str:
    try:
        return ast.unparse(_parse(expr, mode="eval"))
    except (SyntaxError, ValueError, RecursionError):
        return expr


_PARAM_FIELD = re.compile(r"^[ \t]*(?::param\s+(?:[^:\n]*\s)?(\w+)\s*:|(\w+)\s*(?:\([^)\n]*\))?\s*:(?!:))(.*)$", re.M)
_BACKTICKED = re.compile(r"``([^`\n]{1,80})``")


def described_values(doc: str, names: list[str]) -> dict[str, list[Any]]:
    """Literal values a parameter's description gives in double backticks (reST ``:param scheme: ... like
    ``"https"```, Google ``scheme (str): ...``): the field's line and its more indented continuation lines."""
    out: dict[str, list[Any]] = {}
    if "``" not in doc:
        return out
    wanted = set(names)
    lines = doc.splitlines()
    for m in _PARAM_FIELD.finditer(doc):
        name = m.group(1) or m.group(2)
        if name not in wanted:
            continue
        k = doc.count("\n", 0, m.start())
        indent = len(lines[k]) - len(lines[k].lstrip())
        text = [m.group(3)]
        for line in lines[k + 1:]:
            if not line.strip() or len(line) - len(line.lstrip()) <= indent:
                break
            text.append(line)
        for lit in _BACKTICKED.findall("\n".join(text)):
            try:
                v = decode_value(lit)
            except (LiteralError, ValueError, TypeError, RecursionError):
                continue
            if v is not None and v not in out.setdefault(name, []):
                out[name].append(v)
    return out


_PROBES = ["abc", b"abc", [3, 1, 2], 2, "a/b.c", 1.5, {"a": 1}]
# several untyped parameters of one kind with *different* values: the probes above give every parameter the same
# value, which makes a comparison such as ``ge(a, b)`` constant (measured on the standard library: about half the
# functions dropped for "no usable tests" were constant on their inputs)
_KIND_VARIANTS = [[2, 5, -1, 0], ["abc", "b", "a b", ""], [[3, 1, 2], [1], [], [2, 2]]]
_GENERIC = [0, 1, -1, 2, 10, "abc", "", [1, 2, 3], [], 3.5, True, None, "a b", (1, 2), {"a": 1}]


def generate_inputs(cand: Candidate, doctest_exprs: list[str] = (), max_inputs: int = 24, seed: int = 0,
                    draws_per_type: int = 8) -> list[str]:
    """Distinct call expressions for observe-and-record (doctest calls themselves are not repeated here)."""
    params = [p for p in cand.params if p.kind not in ("vararg", "kwarg")]
    rng = random.Random(zlib.crc32(f"{seed}:{cand.task_id}".encode()))
    shown = docstring_calls(cand.docstring, cand.entry_point, set(doctest_exprs))
    from_doctests = _doctest_args(cand, list(doctest_exprs) + shown)
    for name, vals in described_values(cand.docstring, [p.name for p in params]).items():
        from_doctests.setdefault(name, []).extend(vals)
    doc_types = docstring_types(cand.docstring)
    names = [p.name for p in params]
    prose = prose_types(cand.docstring, names)
    stated = {p.name: (p.annotation if resolve_annotation(p.annotation) is not None else None)
              or doc_types.get(p.name) or prose.get(p.name) for p in params}
    uses = usage_kinds(cand.func_src, {k: v for k, v in stated.items() if v})
    must_sort = sorted_params(cand.docstring, names)
    consts = body_constants(cand.func_src)
    pools: dict[str, list[str]] = {}
    admitted: dict[str, Any] = {}  # per parameter: does a value's kind fit the body's uses
    weak: set[str] = set()  # parameters whose type is only guessed (name hint or nothing)
    for p in params:
        values: list[Any] = []
        seeds = list(from_doctests.get(p.name, []))
        default_ok, default = (False, None)
        if p.default is not None:
            try:
                default_ok, default = _literal_value(_parse(p.default, mode="eval").body)
            except (SyntaxError, ValueError):
                pass
        if default_ok:
            seeds.append(default)
        ann = p.annotation if resolve_annotation(p.annotation) is not None else None
        ann = ann or doc_types.get(p.name) or prose.get(p.name)
        if ann is None and seeds:
            kinds = {_kind(v) for v in seeds if v is not None}
            if len(kinds) == 1:
                ann = {"int": "int", "float": "float", "str": "str", "bytes": "bytes", "bool": "bool",
                       "list": "list[int]", "dict": "dict[str, int]", "tuple": "tuple[int, int]"}.get(kinds.pop())
        allowed = uses.get(p.name) if ann is None else None  # the kinds the body's uses admit
        if ann is None:
            weak.add(p.name)
            hint = name_hint(p.name)
            if allowed is not None and (hint is None or annotation_kind(hint) not in allowed):
                hint = annotation_for(allowed)  # a name is weaker evidence than what the body does with it
            ann = hint
        fits = (lambda v, ok=allowed: _kind(v) in ok) if allowed is not None else (lambda v: True)
        admitted[p.name] = fits
        drawn_src = list(draw_examples(ann, draws_per_type)) if ann else []
        tp = resolve_annotation(ann) if ann else None
        kinds = {_kind(v) for v in seeds} | {_kind(decode_value(s)) for s in drawn_src[:3]}
        seeded = [c for c in consts if (_kind(c) in kinds or not kinds) and fits(c)]
        values.extend(seeds)
        for c in seeded[:4]:
            values.append(c)
            if type(c) in (int, float):  # boundaries around the constants the body compares against
                values.extend(mutate_value(c)[:2])
        mutations = [m for v in (seeds + seeded[:4]) for m in mutate_value(v)]
        srcs: list[str] = []

        def add(v):
            if p.name in must_sort and type(v) in (list, tuple):
                try:
                    v = type(v)(sorted(v))
                except TypeError:
                    return
            s = to_source(v)
            if s is not None and s not in srcs:
                srcs.append(s)

        for v in values:
            add(v)
        # interleave drawn values and mutations so that both appear among the first few
        for a, b in zip_longest_(drawn_src, mutations):
            if a is not None and p.name in must_sort:
                add(decode_value(a))
            elif a is not None and a not in srcs:
                srcs.append(a)
            if b is not _MISSING:
                add(b)
        if not srcs and tp is None:
            for v in _GENERIC:
                if fits(v):
                    add(v)
        if p.name in weak:  # probe other kinds too: a wrong guess must not leave the function untested
            for k, probe in enumerate(p_ for p_ in _PROBES if fits(p_)):
                if p.name in must_sort and type(probe) is list:
                    probe = sorted(probe)
                s_ = to_source(probe)
                if s_ not in srcs:
                    srcs.insert(min(len(srcs), 3 + k), s_)
        pools[p.name] = srcs[:14]
    required = [p for p in params if p.default is None]
    if any(not pools[p.name] for p in required):
        return []
    base = {p.name: pools[p.name][0] for p in required}
    exprs: list[str] = list(shown)

    def push(values):
        e = _call(cand.entry_point, cand.params, values)
        if e not in exprs:
            exprs.append(e)

    push(base)
    weak_required = [p for p in required if p.name in weak]
    if weak_required:
        for probe in _PROBES:  # every guessed parameter of one kind at once (where the body's uses admit it)
            push({**base, **{p.name: to_source(probe) for p in weak_required if admitted[p.name](probe)}})
    if len(weak_required) >= 2:
        for variants in _KIND_VARIANTS:
            for shift in (1, 2):
                push({**base, **{p.name: to_source(variants[(j + shift) % len(variants)])
                                 for j, p in enumerate(weak_required)
                                 if admitted[p.name](variants[(j + shift) % len(variants)])}})
    # one factor at a time, round-robin over parameters so that every parameter varies early
    depth = max((len(v) for v in pools.values()), default=0)
    for k in range(depth):
        for p in params:
            pool = pools[p.name]
            if k < len(pool):
                push({**base, p.name: pool[k]})
            if len(exprs) >= max_inputs * 2 // 3:
                break
        if len(exprs) >= max_inputs * 2 // 3:
            break
    tries = 0
    while len(exprs) < max_inputs and tries < max_inputs * 4 and params:
        tries += 1
        values = {}
        for p in params:
            pool = pools[p.name]
            if not pool:
                continue
            if p.default is not None and rng.random() < 0.5:
                continue
            values[p.name] = rng.choice(pool)
        if all(p.name in values for p in required):
            push(values)
    return exprs[:max_inputs]


_MISSING = object()


def zip_longest_(a: list, b: list):
    for i in range(max(len(a), len(b))):
        yield (a[i] if i < len(a) else None), (b[i] if i < len(b) else _MISSING)
