"""AST mutants of a reference function, for the adequacy (mutation score) of its generated tests.

Operators, one change per mutant: arithmetic operator replacement (``aor``), comparison replacement including
boundary shifts ``<`` <-> ``<=`` (``ror``), boolean operator swap (``lcr``), negation removal (``uoi``), constant
replacement and off-by-one (numbers +-1, booleans flipped, strings emptied, a short string (a separator, a
character the code looks for) made one that no input holds; bytes likewise: ``crp``), index and slice-bound
off-by-one (``ofb``), ``return x`` -> ``return None`` (``rvr``), ``return x`` -> ``return <first argument>``
(``rid``), augmented-assignment operator replacement (``aug``), ``break`` <-> ``continue`` (``bcr``), condition
negation (``cond``), branch removal (an ``if``'s test made ``True`` or ``False``: ``brm``), statement deletion
(``sdl``), swap of a call's first two arguments (``arg``), a call's argument (positional or keyword) replaced by
``None`` (``nul``), a parameter read as another parameter (``var``), a conditional expression's test negated or made
``True`` or ``False`` (``cond``, ``brm``, as an ``if``'s), and a string method swapped for its mirror image
(``lstrip`` <-> ``rstrip``, ``find`` <-> ``rfind``, ``lower`` <-> ``upper``...: ``msw``; mutmut's operators, whose
survivors on packages never tuned on showed the gap).

Expressions that only make up a message (a ``raise``'s exception, an ``assert``'s message, the arguments of a
``warnings.warn`` or logging call) are not mutated: a test checks the exception type, not its text, so such
mutants are equivalent.

Mutants are plain source text (that of ``ast.unparse``), renamed so that many can live in one program next to the
reference; recursive calls are renamed along, so a recursive mutant stays itself.

Hand-written because mutation tools (mutmut, cosmic-ray) mutate files on disk and run test suites; we need
source-level mutants of one function to run inside our sandbox, batched with the reference's tests.
"""

from __future__ import annotations

import ast

from trl_unittest.data.extract import parse as _parse  # noqa: E402
import zlib
from dataclasses import dataclass

_AOR = {ast.Add: [ast.Sub], ast.Sub: [ast.Add], ast.Mult: [ast.FloorDiv, ast.Add], ast.Div: [ast.Mult],
        ast.FloorDiv: [ast.Mult, ast.Div], ast.Mod: [ast.FloorDiv], ast.Pow: [ast.Mult], ast.BitAnd: [ast.BitOr],
        ast.BitOr: [ast.BitAnd], ast.BitXor: [ast.BitOr], ast.LShift: [ast.RShift], ast.RShift: [ast.LShift]}
_ROR = {ast.Lt: [ast.LtE, ast.Gt], ast.LtE: [ast.Lt, ast.GtE], ast.Gt: [ast.GtE, ast.Lt], ast.GtE: [ast.Gt, ast.LtE],
        ast.Eq: [ast.NotEq], ast.NotEq: [ast.Eq], ast.In: [ast.NotIn], ast.NotIn: [ast.In], ast.Is: [ast.IsNot],
        ast.IsNot: [ast.Is]}


@dataclass
class Mutant:
    operator: str
    line: int  # line in the function source (1-based)
    source: str  # the mutated function, renamed to `name`
    name: str
    # its change acts only when its line runs: a call that never reaches the line runs as the reference does, so it
    # needs no run there (the builder skips it). Not a deleted statement (a `yield`, an assignment or a `global`
    # decides the whole function's kind or scopes) nor a renamed variable (scopes again), nor a change on the
    # signature's lines (defaults are evaluated at definition)
    local: bool = False


NONLOCAL_OPERATORS = ("sdl", "var")  # see Mutant.local

# string methods and their mirror images (msw)
_MIRRORS = {"lower": "upper", "upper": "lower", "lstrip": "rstrip", "rstrip": "lstrip", "find": "rfind",
            "rfind": "find", "index": "rindex", "rindex": "index", "ljust": "rjust", "rjust": "ljust",
            "partition": "rpartition", "rpartition": "partition", "split": "rsplit", "rsplit": "split",
            "removeprefix": "removesuffix", "removesuffix": "removeprefix", "startswith": "endswith",
            "endswith": "startswith"}
_MESSAGE_CALLS = {"warn", "debug", "info", "warning", "error", "critical", "exception", "log"}
_SIMPLE_STMTS = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Raise, ast.Assert,
                 ast.Delete)


def _message_nodes(body: list[ast.stmt]) -> set[int]:
    """ids of the nodes that only make up a message: a raise's exception, an assert's message, the arguments of
    a ``warnings.warn`` or logging call."""
    out: set[int] = set()
    for stmt in body:
        for node in ast.walk(stmt):
            parts: list[ast.AST] = []
            if isinstance(node, ast.Raise) and node.exc is not None:
                parts = [node.exc]
            elif isinstance(node, ast.Assert) and node.msg is not None:
                parts = [node.msg]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in _MESSAGE_CALLS:
                parts = list(node.args)
            for part in parts:
                out.update(id(n) for n in ast.walk(part))
    return out


def _sites(func: ast.FunctionDef) -> list[tuple[str, ast.AST, object]]:
    """(operator, node, replacement) for every applicable mutation; docstring, messages and nested defs' names
    excluded."""
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
            isinstance(body[0].value.value, str):
        body = body[1:]
    messages = _message_nodes(body)
    params = [a.arg for a in func.args.posonlyargs + func.args.args + func.args.kwonlyargs
              if a.arg not in ("self", "cls")]
    sites: list[tuple[str, ast.AST, object]] = []
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, _SIMPLE_STMTS) and not isinstance(node, ast.Raise):
                sites.append(("sdl", node, None))
            if id(node) in messages:
                continue
            if isinstance(node, ast.Call):
                for i, a in enumerate(node.args):
                    if not isinstance(a, ast.Starred) and not (isinstance(a, ast.Constant) and a.value is None):
                        sites.append(("nul", node, i))
                for kw in node.keywords:
                    if kw.arg is not None and not (isinstance(kw.value, ast.Constant) and kw.value.value is None):
                        sites.append(("nul", kw, "value"))
                if isinstance(node.func, ast.Attribute) and node.func.attr in _MIRRORS:
                    sites.append(("msw", node.func, _MIRRORS[node.func.attr]))
            if isinstance(node, (ast.BinOp, ast.AugAssign)):
                for rep in _AOR.get(type(node.op), []):
                    sites.append(("aor" if isinstance(node, ast.BinOp) else "aug", node, rep))
            elif isinstance(node, ast.Compare):
                for i, op in enumerate(node.ops):
                    for rep in _ROR.get(type(op), []):
                        sites.append(("ror", node, (i, rep)))
            elif isinstance(node, ast.BoolOp):
                sites.append(("lcr", node, ast.Or if isinstance(node.op, ast.And) else ast.And))
            elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub, ast.Invert)):
                sites.append(("uoi", node, None))
            elif isinstance(node, ast.Constant) and not isinstance(node, ast.JoinedStr):
                v = node.value
                if isinstance(v, bool):
                    sites.append(("crp", node, not v))
                elif isinstance(v, int):
                    sites.append(("crp", node, v + 1))
                    sites.append(("crp", node, v - 1 if v != 1 else 0))
                elif isinstance(v, float):
                    sites.append(("crp", node, v + 1.0))
                elif isinstance(v, str) and v:
                    sites.append(("crp", node, ""))
                    if len(v) <= 3:  # a character the code looks for, made one no input holds (mutmut's XX)
                        sites.append(("crp", node, "XX" + v + "XX"))
                elif isinstance(v, str):
                    sites.append(("crp", node, "x"))
                elif isinstance(v, bytes):
                    sites.append(("crp", node, b"" if v else b"x"))
                    if 0 < len(v) <= 3:
                        sites.append(("crp", node, b"XX" + v + b"XX"))
            elif isinstance(node, ast.Return) and node.value is not None and \
                    not (isinstance(node.value, ast.Constant) and node.value.value is None):
                sites.append(("rvr", node, None))
                if params and not (isinstance(node.value, ast.Name) and node.value.id == params[0]):
                    sites.append(("rid", node, params[0]))
            elif isinstance(node, (ast.Break, ast.Continue)):
                sites.append(("bcr", node, None))
            elif isinstance(node, (ast.If, ast.IfExp)):
                sites.append(("cond", node, None))
                sites.append(("brm", node, True))
                sites.append(("brm", node, False))
            elif isinstance(node, ast.Call) and len(node.args) >= 2 and \
                    not any(isinstance(a, ast.Starred) for a in node.args[:2]):
                sites.append(("arg", node, None))
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                sl = node.slice
                if isinstance(sl, ast.Slice):
                    for part in ("lower", "upper"):
                        if getattr(sl, part) is not None:
                            sites.append(("ofb", sl, part))
                elif not isinstance(sl, (ast.Constant, ast.Tuple)):
                    sites.append(("ofb", node, "slice"))
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in params and \
                    len(params) > 1:
                other = next(p for p in params if p != node.id)
                sites.append(("var", node, other))
    return sites


class _Spans(getattr(ast, "_Unparser", object)):
    """``ast.unparse`` that also notes, for each node it writes, where its text lies and the state it was written
    in (precedence, indentation, ``except*``): a mutant's text is then the reference's with one node's text
    rewritten, the same text a full ``ast.unparse`` of the mutated tree gives (each node's text depends on its own
    subtree and that state only; the parents that look at a child's type are handled in ``_anchor``).

    ``ast._Unparser`` is CPython's private unparser; without it (``_SPANS`` false) every mutant is unparsed whole."""

    def __init__(self, **kwargs):  # an f-string's expressions are written by another instance, with kwargs
        super().__init__(**kwargs)
        self.spans: dict[int, tuple[int, int, object, int, bool]] = {}
        self._root: list = []

    def visit(self, node):
        self._source = self._root = []
        self.traverse(node)
        return "".join(self._source)

    def traverse(self, node):
        if isinstance(node, list) or self._source is not self._root:
            return super().traverse(node)
        start, prec = len(self._source), self._precedences.get(node, _TEST)
        indent, star = self._indent, self._in_try_star
        super().traverse(node)
        self.spans[id(node)] = (start, len(self._source), prec, indent, star)


_TEST = getattr(getattr(ast, "_Precedence", None), "TEST", None)
_SPANS = all(hasattr(ast, a) for a in ("_Unparser", "_Precedence")) and \
    all(hasattr(ast._Unparser(), a) for a in ("_source", "_precedences", "_indent", "_in_try_star", "traverse"))
# parents whose text depends on the type of a child, not only on its text: ``1 .real``, ``a[1, 2]``, a docstring
_TYPE_READING_PARENTS = (ast.Attribute, ast.Subscript, ast.Expr)


def _binds(func: ast.FunctionDef, name: str) -> bool:
    """Whether anything in ``func`` binds ``name`` (a parameter, an assignment, an import, a nested definition,
    ``except ... as``, a match capture, ``nonlocal``). Then ``name`` is not (only) the function itself in there:
    ``def digits(n, b=10, digits=None)`` reads its argument as ``digits``, and a mutant whose every ``digits``
    was renamed read itself instead and died of that on every input, whatever its mutation. Such a function keeps
    its name unrenamed: a recursive call (rare beside a shadowing binding) then calls the reference."""
    for n in ast.walk(func):
        if isinstance(n, ast.arg) and n.arg == name or \
                isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load) or \
                isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not func and \
                n.name == name or \
                isinstance(n, ast.alias) and (n.asname or n.name.split(".")[0]) == name or \
                isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name == name or \
                isinstance(n, ast.MatchMapping) and n.rest == name or \
                isinstance(n, ast.Nonlocal) and name in n.names:
            return True
    return False


def generate_mutants(func_src: str, entry_point: str, max_mutants: int = 16, seed: int = 0) -> list[Mutant]:
    """Up to ``max_mutants`` distinct mutants, chosen deterministically and spread over operators and lines.

    Each mutation is applied to the one parsed tree and undone (no tree copies); the mutant's text is the
    reference's with the mutated node's text written again (see ``_Spans``), the text ``ast.unparse`` of the
    whole mutated tree gives at a fraction of the cost."""
    try:
        tree = _parse(func_src)
    except (SyntaxError, ValueError, RecursionError):
        return []
    func = tree.body[0]
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return []
    body = func.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        func.body = body[1:]  # mutants need no docstring; unparsing it (escaped char by char) cost the most
    sites = _sites(func)
    if not sites:
        return []
    body_lines = {n.lineno for stmt in func.body for n in ast.walk(stmt) if isinstance(n, ast.stmt)}
    placeholder = "__trl_unittest_mutant__"
    func.name = placeholder
    if not _binds(func, entry_point):  # its recursive calls call the mutant; a name it binds is no such call
        for n in ast.walk(func):
            if isinstance(n, ast.Name) and n.id == entry_point:
                n.id = placeholder
    parents: dict[int, tuple[ast.AST, str, int | None]] = {}
    for parent in ast.walk(tree):
        for fname, value in ast.iter_fields(parent):
            if isinstance(value, ast.AST):
                parents[id(value)] = (parent, fname, None)
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    if isinstance(v, ast.AST):
                        parents[id(v)] = (parent, fname, i)

    def put(old: ast.AST, new: ast.AST) -> None:
        parent, fname, i = parents[id(old)]
        if i is None:
            setattr(parent, fname, new)
        else:
            getattr(parent, fname)[i] = new

    try:
        if _SPANS:
            unparser = _Spans()
            original = unparser.visit(tree)
            offsets = [0]
            for piece in unparser._root:
                offsets.append(offsets[-1] + len(piece))
        else:
            original = ast.unparse(tree)
    except Exception:  # noqa: BLE001
        return []

    def anchor(old: ast.AST, new: ast.AST) -> tuple[ast.AST, tuple] | None:
        """The node to write again in place of ``old``'s text (``new``, or an ancestor), and ``old``'s span;
        None: the whole function."""
        span = unparser.spans.get(id(old))
        node = new
        if old is not new and id(old) in parents and isinstance(parents[id(old)][0], _TYPE_READING_PARENTS):
            span = None  # e.g. ``(-1).real`` -> ``1 .real``: the parent writes itself again
            if isinstance(parents[id(old)][0], ast.Expr):  # a statement that may have become a docstring
                old = parents[id(old)][0]
        while span is None:  # not written on its own (inside an f-string, a docstring): its nearest ancestor
            if id(old) not in parents:
                return None
            old = node = parents[id(old)][0]
            if node is tree or node is func:
                return None
            span = unparser.spans.get(id(old))
        return node, span

    def mutant_text(old: ast.AST, new: ast.AST) -> str:
        """The source of the mutated tree: ``old``'s text replaced by that of ``new`` (now in its place)."""
        found = anchor(old, new) if _SPANS else None
        if found is None:
            return ast.unparse(tree)
        node, (start, end, prec, indent, star) = found
        u = ast._Unparser()
        u._source = [""]  # not at the start of the text: a statement begins with its newline
        u._indent, u._in_try_star, u._type_ignores = indent, star, unparser._type_ignores
        u._precedences[node] = prec
        u.traverse(node)
        return original[:offsets[start]] + "".join(u._source) + original[offsets[end]:]
    # spread the choice: order by a seeded hash within each operator, then round-robin over operators
    by_op: dict[str, list[int]] = {}
    for i, (op, _, _) in enumerate(sites):
        by_op.setdefault(op, []).append(i)
    for op, idx in by_op.items():
        idx.sort(key=lambda i: zlib.crc32(f"{seed}:{i}:{op}".encode()))
    order: list[int] = []
    queues = [list(v) for _, v in sorted(by_op.items())]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    out: list[Mutant] = []
    seen: set[str] = {original}
    for i in order:
        if len(out) >= max_mutants:
            break
        op, node, rep = sites[i]
        undo = None
        was = now = node  # the node whose text changes, and the node in its place once mutated
        if op in ("aor", "aug", "lcr"):
            old = node.op
            node.op = rep()
            undo = lambda n=node, o=old: setattr(n, "op", o)  # noqa: E731
        elif op == "ror":
            k, cls = rep
            old = node.ops[k]
            node.ops[k] = cls()
            undo = lambda n=node, k=k, o=old: n.ops.__setitem__(k, o)  # noqa: E731
        elif op == "crp":
            old = node.value
            node.value = rep
            undo = lambda n=node, o=old: setattr(n, "value", o)  # noqa: E731
        elif op == "uoi":
            put(node, node.operand)  # the operand takes the node's place; its parent entry follows
            now = node.operand
            saved = parents[id(node.operand)]
            parents[id(node.operand)] = parents[id(node)]
            undo = (lambda n=node, s=saved: (put(n.operand, n), parents.__setitem__(id(n.operand), s)))
        elif op == "rvr":
            old = node.value
            node.value = ast.Constant(None)
            was, now = old, node.value
            undo = lambda n=node, o=old: setattr(n, "value", o)  # noqa: E731
        elif op == "bcr":
            new = ast.copy_location(ast.Continue() if isinstance(node, ast.Break) else ast.Break(), node)
            put(node, new)
            parents[id(new)] = parents[id(node)]
            now = new
            undo = lambda n=node, m=new: put(m, n)  # noqa: E731
        elif op == "cond":
            old = node.test
            node.test = ast.UnaryOp(ast.Not(), old)
            was, now = old, node.test
            undo = lambda n=node, o=old: setattr(n, "test", o)  # noqa: E731
        elif op == "brm":
            old = node.test
            node.test = ast.Constant(rep)
            was, now = old, node.test
            undo = lambda n=node, o=old: setattr(n, "test", o)  # noqa: E731
        elif op == "rid":
            old = node.value
            node.value = ast.Name(rep, ast.Load())
            was, now = old, node.value
            undo = lambda n=node, o=old: setattr(n, "value", o)  # noqa: E731
        elif op == "sdl":
            new = ast.copy_location(ast.Pass(), node)
            put(node, new)
            parents[id(new)] = parents[id(node)]
            now = new
            undo = lambda n=node, m=new: put(m, n)  # noqa: E731
        elif op == "arg":
            a0, a1 = node.args[0], node.args[1]
            node.args[0], node.args[1] = a1, a0
            undo = lambda n=node, a0=a0, a1=a1: (n.args.__setitem__(0, a0), n.args.__setitem__(1, a1))  # noqa
        elif op == "ofb":
            old = getattr(node, rep)
            setattr(node, rep, ast.BinOp(old, ast.Add(), ast.Constant(1)))
            was, now = old, getattr(node, rep)
            undo = lambda n=node, f=rep, o=old: setattr(n, f, o)  # noqa: E731
        elif op == "nul" and rep == "value":  # a keyword argument's value
            old = node.value
            node.value = ast.Constant(None)
            was, now = old, node.value
            undo = lambda n=node, o=old: setattr(n, "value", o)  # noqa: E731
        elif op == "nul":
            old = node.args[rep]
            node.args[rep] = ast.Constant(None)
            was, now = old, node.args[rep]
            undo = lambda n=node, i=rep, o=old: n.args.__setitem__(i, o)  # noqa: E731
        elif op == "msw":
            old = node.attr
            node.attr = rep
            undo = lambda n=node, o=old: setattr(n, "attr", o)  # noqa: E731
        elif op == "var":
            old = node.id
            node.id = rep
            undo = lambda n=node, o=old: setattr(n, "id", o)  # noqa: E731
        try:
            src = mutant_text(was, now)
        except Exception:  # noqa: BLE001
            src = None
        finally:
            undo()
        if src is None or src in seen:
            continue
        seen.add(src)
        name = f"{entry_point}__mutant_{len(out)}"
        src = src.replace(placeholder, name)
        try:
            compile(src, "<mutant>", "exec")
        except Exception:  # noqa: BLE001 - e.g. `continue` outside a loop
            continue
        line = getattr(node, "lineno", 0)
        out.append(Mutant(operator=op, line=line, source=src + "\n", name=name,
                          local=op not in NONLOCAL_OPERATORS and line in body_lines))
    return out
