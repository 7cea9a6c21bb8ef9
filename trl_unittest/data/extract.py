"""Candidate extraction: public, documented, self-contained module-level functions (and static methods) and the
closure of module-level names they need (imports, constants, helpers), carried along as the task's context;
with the source's other modules at hand (:mod:`trl_unittest.data.siblings`), the definitions they import from
sibling modules of the same source too, when those need nothing but the standard library.

Hand-written on the standard library's ``ast`` and ``symtable``: scoping is taken from ``symtable`` (the
compiler's own analysis: comprehensions, lambdas, nested functions and class bodies are resolved exactly), and
``ast`` gives the statements that bind each module-level name. Nothing here imports or runs the mined code.

Every function looked at ends up either as a :class:`Candidate` or as a :class:`Rejection` with one reason.
"""

from __future__ import annotations

import ast
import builtins
import symtable
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass, field

from trl_unittest.code import parse as locked_parse
from trl_unittest.code import source_lines

BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__doc__", "__builtins__"}
STDLIB_MODULES = frozenset(sys.stdlib_module_names)

# rejection reasons (extraction stage)
R_SYNTAX = "syntax_error"
R_PRIVATE = "private"
R_NO_DOC = "no_docstring"
R_INSTANCE = "needs_instance"
R_ASYNC = "async"
R_GENERATOR = "generator"
R_UNRESOLVABLE = "unresolvable_name"
R_NON_STDLIB = "non_stdlib_import"
R_CONDITIONAL = "conditional_definition"
R_GLOBAL = "global_state"
R_CONTEXT_SIZE = "context_too_large"
R_UNSPLITTABLE = "unsplittable_source"
R_REDEFINED = "redefined"
R_SIBLING_FOREIGN = "sibling_non_stdlib_import"  # a sibling module's carried code needs a non-stdlib import
R_SIBLING_CLASH = "sibling_name_clash"  # a carried sibling name is bound to something else in the module
R_SIBLING_DEPTH = "sibling_too_deep"  # the names lead more sibling modules away than the builder follows


@dataclass
class Param:
    name: str
    kind: str  # "posonly" | "pos" | "vararg" | "kwonly" | "kwarg"
    default: str | None = None  # source text of the default, if any
    annotation: str | None = None  # source text of the annotation, if any


@dataclass
class Candidate:
    source: str
    path: str
    module: str
    qualname: str
    entry_point: str
    line: int
    license: str | None
    func_src: str  # the function alone, dedented, decorators kept (but @staticmethod), ends with a newline
    header: str  # func_src up to and including the docstring: what the model sees
    body: str  # the rest of func_src: header + body == func_src
    docstring: str
    context: str  # carried imports, constants, helpers (may be "")
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted origin, for context + function
    params: list[Param] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return (self.context + "\n\n" if self.context else "") + self.header

    @property
    def reference(self) -> str:
        return (self.context + "\n\n" if self.context else "") + self.func_src

    @property
    def task_id(self) -> str:
        return f"{self.source}/{self.module}.{self.qualname}" if self.module else f"{self.source}/{self.qualname}"


@dataclass
class Rejection:
    reason: str
    qualname: str
    line: int
    detail: str = ""


@dataclass
class ModuleResult:
    candidates: list[Candidate] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    syntax_error: bool = False

    @property
    def seen(self) -> int:
        return len(self.candidates) + len(self.rejections)


PARSE_RETRIES = 50
parse_retries = 0  # spurious SystemErrors retried in this process (gh-106905), for diagnostics


def parse(source: str, mode: str = "exec") -> ast.AST:
    """``ast.parse`` that survives CPython 3.11's spurious "AST constructor recursion depth mismatch"
    SystemError (gh-106905).

    The error is transient: it comes from another thread (the execution pool grades results with ``ast.parse``
    on its own threads) converting an AST at the same moment; the tree itself is never wrong. So the parse is
    retried (``PARSE_RETRIES`` times, yielding the GIL in between); only then is it a SyntaxError."""
    global parse_retries
    for _ in range(PARSE_RETRIES):
        try:
            return locked_parse(source, mode=mode)  # serialised with the pool's grading parses
        except SystemError:
            parse_retries += 1
            time.sleep(0)
    try:
        return locked_parse(source, mode=mode)
    except SystemError as e:
        raise SyntaxError(f"parser failure: {e}") from None


def module_name(path: str) -> str:
    """``pkg/sub/mod.py`` -> ``pkg.sub.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    p = path.replace("\\", "/")
    if p.endswith(".py"):
        p = p[:-3]
    parts = [x for x in p.split("/") if x and x != "."]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_stdlib(dotted: str) -> bool:
    return dotted.split(".")[0] in STDLIB_MODULES


class _Binding:
    __slots__ = ("index", "kind", "alias")

    def __init__(self, index: int, kind: str, alias: ast.alias | None = None):
        self.index, self.kind, self.alias = index, kind, alias


def _stored_names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names:
                out.add(a.asname or a.name.split(".")[0])
    return out


def _refs_of(src: str) -> tuple[set[str], set[str]]:
    """Module-level names referenced by a snippet of module-level code, and names declared ``global`` in it."""
    top = symtable.symtable(src, "<snippet>", "exec")
    refs: set[str] = set()
    declared: set[str] = set()
    for sym in top.get_symbols():
        if sym.is_referenced():
            refs.add(sym.get_name())
    stack = list(top.get_children())
    while stack:
        t = stack.pop()
        stack.extend(t.get_children())
        for sym in t.get_symbols():
            if sym.is_declared_global():
                declared.add(sym.get_name())
                refs.add(sym.get_name())
            elif sym.is_global() and sym.is_referenced():
                refs.add(sym.get_name())
    return refs, declared


def _foreign_import(node: ast.stmt, source: str) -> str | None:
    """The first module imported anywhere inside ``node`` (a function-local ``import``, say) that is neither in
    the standard library nor absolute: such a function needs its package installed wherever the task runs.
    ``source`` is the statement's text; imports are statements, so only statement lists are walked."""
    if "import" not in source:
        return None
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Import):
            for a in n.names:
                if not _is_stdlib(a.name):
                    return a.name
        elif isinstance(n, ast.ImportFrom):
            if n.level or not _is_stdlib(n.module or ""):
                return "." * n.level + (n.module or "")
        else:
            for name in ("body", "orelse", "finalbody", "handlers", "cases"):
                sub = getattr(n, name, None)
                if isinstance(sub, list):
                    stack.extend(sub)
    return None


def _top_names(stmt: ast.stmt) -> set[str]:
    """The module-level names a carried definition or assignment binds."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", stmt)]
    return set().union(*(_stored_names(t) for t in targets))


def _attributes_read(trees: list[ast.AST], name: str) -> set[str] | None:
    """The attributes read of ``name`` (``name.attr``) in ``trees``; None when ``name`` is used otherwise."""
    attrs: set[str] = set()
    for tree in trees:
        as_base = set()
        uses = []  # the uses of `name`, walked once: each must be the base of an attribute read
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == name:
                if not isinstance(n.ctx, ast.Load):
                    return None
                attrs.add(n.attr)
                as_base.add(id(n.value))
            elif isinstance(n, ast.Name) and n.id == name:
                uses.append(n)
        if any(id(n) not in as_base for n in uses):
            return None
    return attrs


def _own_yield(func: ast.AST, lines: list[str]) -> bool:
    """Whether ``func`` itself (not a nested function) yields; ``lines`` is the module's text, looked at first."""
    if not any("yield" in line for line in lines[func.lineno - 1:func.end_lineno]):
        return False
    stack = list(ast.iter_child_nodes(func))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(n))
    return False


def _params(func: ast.FunctionDef, src: str) -> list[Param]:
    a = func.args
    seg = lambda n: ast.get_source_segment(src, n) if n is not None else None  # noqa: E731
    out: list[Param] = []
    positional = list(a.posonlyargs) + list(a.args)
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, d) in enumerate(zip(positional, defaults)):
        out.append(Param(arg.arg, "posonly" if i < len(a.posonlyargs) else "pos", seg(d), seg(arg.annotation)))
    if a.vararg:
        out.append(Param(a.vararg.arg, "vararg", None, seg(a.vararg.annotation)))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append(Param(arg.arg, "kwonly", seg(d), seg(arg.annotation)))
    if a.kwarg:
        out.append(Param(a.kwarg.arg, "kwarg", None, seg(a.kwarg.annotation)))
    return out


def _is_type_checking_block(stmt: ast.stmt) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) without an ``else``: statements only a type checker runs."""
    if not isinstance(stmt, ast.If) or stmt.orelse:
        return False
    test = stmt.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING" and isinstance(test.value, ast.Name))


class ModuleIndex:
    """Top-level bindings of a module and the closure of names a function needs."""

    def __init__(self, tree: ast.Module, text: str, max_context_lines: int = 200):
        self.tree, self.text = tree, text
        self.lines = source_lines(text)
        self.max_context_lines = max_context_lines
        self.bindings: dict[str, list[_Binding]] = {}
        self.star_import = False
        self._refs_cache: dict[int, tuple[set[str], set[str]]] = {}
        self._foreign_cache: dict[int, str | None] = {}
        # the module's statements, with those of an `if TYPE_CHECKING:` block in its place: names imported there
        # only for annotations (`from typing import Any`) are carried like any other, so that the annotations of
        # the task's signature evaluate when its program defines the function
        self.body: list[ast.stmt] = []
        for stmt in tree.body:
            self.body.extend(stmt.body if _is_type_checking_block(stmt) else [stmt])
        for i, stmt in enumerate(self.body):
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    self._bind(a.asname or a.name.split(".")[0], _Binding(i, "import", a))
            elif isinstance(stmt, ast.ImportFrom):
                if stmt.module == "__future__":
                    continue
                for a in stmt.names:
                    if a.name == "*":
                        self.star_import = True
                    else:
                        self._bind(a.asname or a.name, _Binding(i, "import", a))
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self._bind(stmt.name, _Binding(i, "def"))
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
                    continue
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = set()
                for t in targets:
                    names |= _stored_names(t)
                    if not all(isinstance(n, (ast.Name, ast.Tuple, ast.List, ast.Store, ast.Starred))
                               for n in ast.walk(t)):
                        names = set()  # subscript/attribute targets: not a plain binding, not carried
                        break
                for n in names:
                    self._bind(n, _Binding(i, "assign"))
            elif isinstance(stmt, (ast.If, ast.Try, ast.With, ast.For, ast.While, ast.AsyncWith, ast.AsyncFor)) or \
                    type(stmt).__name__ in ("Match", "TryStar"):
                for n in _stored_names(stmt):
                    self._bind(n, _Binding(i, "conditional"))

    def _bind(self, name: str, b: _Binding) -> None:
        self.bindings.setdefault(name, []).append(b)

    def stmt_span(self, node: ast.stmt) -> tuple[int, int]:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        return start, node.end_lineno

    def stmt_source(self, index: int) -> str:
        stmt = self.body[index]
        start, end = self.stmt_span(stmt)
        text = "".join(self.lines[start - 1:end])
        return textwrap.dedent(text) if stmt.col_offset else text  # (a statement of a TYPE_CHECKING block)

    def stmt_foreign(self, index: int) -> str | None:
        """``_foreign_import`` of a top-level statement (kept: each function's closure asks again)."""
        if index not in self._foreign_cache:
            self._foreign_cache[index] = _foreign_import(self.body[index], self.stmt_source(index))
        return self._foreign_cache[index]

    def stmt_refs(self, index: int) -> tuple[set[str], set[str]]:
        if index not in self._refs_cache:
            self._refs_cache[index] = _refs_of(self.stmt_source(index))
        return self._refs_cache[index]

    def closure(self, refs: set[str], exclude: int | None = None, own_name: str | None = None,
                siblings=None, path: str = "", func_tree: ast.AST | None = None
                ) -> tuple[str, dict[str, str], str, str]:
        """Carry what ``refs`` needs. Returns (context, imports, reason, detail); reason is "" on success.

        With ``siblings`` (a :class:`~trl_unittest.data.siblings.Siblings`: the other modules of the source;
        ``path`` is this module's key among them, ``func_tree`` the function whose ``refs`` these are), names
        imported from sibling modules are followed into them, up to ``siblings.max_depth`` modules away, and
        their definitions carried with their own needs: stdlib imports first, then module by module (the
        modules names come from before the modules that use them; this one last) ``h = helper`` for its renamed
        imports, ``u = types.SimpleNamespace(...)`` for its imported modules, and its carried statements in
        source order. A carried sibling name that this module binds to something else is a clash: refused,
        not overwritten."""
        mods: dict[str, ModuleIndex] = {path: self}
        depth = {path: 0}
        deps: dict[str, set[str]] = {path: set()}  # module -> the sibling modules it takes names from
        stmts: dict[str, set[int]] = {path: set()}
        imports: dict[str, str] = {}
        import_aliases: dict[tuple[str, int], list[ast.alias]] = {}
        renames: dict[tuple[str, str], tuple[str, str]] = {}  # (module, name) -> (module, name) it stands for
        spaces: dict[tuple[str, str], str] = {}  # (module, name) -> the sibling module file it stands for
        space_attrs: dict[tuple[str, str], set[str]] = {}
        sibling_imports: dict[str, set[str]] = {}  # stdlib imports of sibling modules: name -> origins
        passed: set[str] = set()  # names this module imports from a sibling under the same name
        work = [(path, r) for r in sorted(refs)]
        done: set[tuple[str, str]] = set()

        def fail(reason: str, detail: str, key: str):
            if key != path:
                reason = R_SIBLING_FOREIGN if reason == R_NON_STDLIB else reason
                detail = f"{key}: {detail}"
            return "", {}, reason, detail

        while work:
            while work:
                key, name = work.pop()
                if (key, name) in done:
                    continue
                done.add((key, name))
                m = mods[key]
                bs = m.bindings.get(name)
                if not bs:
                    if (key == path and name == own_name) or name in BUILTIN_NAMES:
                        continue
                    return fail(R_UNRESOLVABLE, name + (" (star import)" if m.star_import else ""), key)
                if any(b.kind == "conditional" for b in bs):
                    return fail(R_CONDITIONAL, name, key)
                for b in bs:
                    if key == path and b.index == exclude:
                        continue
                    stmt = m.body[b.index]
                    if b.kind == "import":
                        if isinstance(stmt, ast.ImportFrom):
                            origin = None if stmt.level else f"{stmt.module}.{b.alias.name}"
                            target = (stmt.module, stmt.level, b.alias.name)
                            shown = origin or "." * stmt.level + (stmt.module or "")
                        else:
                            origin = b.alias.name if b.alias.asname else b.alias.name.split(".")[0]
                            target = (b.alias.name, 0, None) if b.alias.asname else None
                            shown = origin
                        if origin is not None and _is_stdlib(origin):
                            imports[name] = origin
                            if key != path:
                                sibling_imports.setdefault(name, set()).add(origin)
                            lst = import_aliases.setdefault((key, b.index), [])
                            if b.alias not in lst:
                                lst.append(b.alias)
                            continue
                        found = siblings.resolve(key, *target) if siblings is not None and target else None
                        if found is None:
                            return fail(R_NON_STDLIB, shown, key)
                        skey, sname = found
                        if skey not in mods:
                            if depth[key] + 1 > siblings.max_depth:
                                return "", {}, R_SIBLING_DEPTH, skey
                            idx = siblings.index(skey)
                            if idx is None:
                                return fail(R_NON_STDLIB, f"{shown} ({skey} does not parse)", key)
                            mods[skey], depth[skey], deps[skey], stmts[skey] = idx, depth[key] + 1, set(), set()
                        deps[key].add(skey)
                        if sname is None:
                            spaces[(key, name)] = skey
                            space_attrs.setdefault((key, name), set())
                        else:
                            work.append((skey, sname))
                            if sname != name:
                                renames[(key, name)] = (skey, sname)
                            elif key == path:
                                passed.add(name)
                    else:
                        if b.index in stmts[key]:
                            continue
                        stmts[key].add(b.index)
                        foreign = m.stmt_foreign(b.index)
                        if foreign is not None:
                            return fail(R_NON_STDLIB, foreign, key)
                        try:
                            srefs, declared = m.stmt_refs(b.index)
                        except (SyntaxError, ValueError, RecursionError) as e:
                            return fail(R_SYNTAX, f"{name}: {e}", key)
                        if declared:
                            return fail(R_GLOBAL, sorted(declared)[0], key)
                        work.extend((key, n) for n in sorted(srefs) if (key, n) not in done)
            # an imported module carries the attributes that the carried code reads of it
            for (key, name), skey in spaces.items():
                trees = [mods[key].body[i] for i in sorted(stmts[key])]
                if key == path and func_tree is not None:
                    trees.append(func_tree)
                attrs = _attributes_read(trees, name)
                if attrs is None:
                    return fail(R_NON_STDLIB, f"{name} (module {skey} used other than as {name}.attribute)", key)
                for a in sorted(attrs - space_attrs[(key, name)]):
                    space_attrs[(key, name)].add(a)
                    work.append((skey, a))

        if len(mods) == 1 and not renames and not spaces:
            context = self._context(path, [path], import_aliases, mods, stmts)  # as without siblings
        else:
            clash = self._sibling_clash(siblings, path, own_name, mods, stmts, sibling_imports, renames, spaces, passed)
            if clash:
                return "", {}, R_SIBLING_CLASH, clash
            order: list[str] = []

            def visit(k: str) -> None:  # the modules a module takes names from first (cycles: broken anywhere)
                if k in order or k in visiting:
                    return
                visiting.add(k)
                for d in sorted(deps[k]):
                    visit(d)
                order.append(k)

            visiting: set[str] = set()
            visit(path)
            # `h = helper`, `u = types.SimpleNamespace(...)` just before the statements of the module that
            # imports so (they may use them when defined), or at the end when they name a definition of a module
            # that comes later (a cycle)
            order = [k for k in order if k != path] + [path]
            before: dict[str, list[str]] = {k: [] for k in order}
            last: list[str] = []
            for (key, name), (skey, target) in sorted(renames.items()):
                ok = order.index(skey) < order.index(key)
                (before[key] if ok else last).append(f"{name} = {target}")
            for (key, name), attrs in sorted(space_attrs.items()):
                ok = order.index(spaces[(key, name)]) < order.index(key)
                (before[key] if ok else last).append(
                    f"{name} = types.SimpleNamespace({', '.join(f'{a}={a}' for a in sorted(attrs))})")
            if spaces:
                imports["types"] = "types"
            context = self._context(path, order, import_aliases, mods, stmts, before, last,
                                    "import types" if spaces else None)
        if context.count("\n") + 1 > self.max_context_lines:
            return "", {}, R_CONTEXT_SIZE, f"{context.count(chr(10)) + 1} lines"
        return context, imports, "", ""

    def _context(self, path: str, order: list[str], import_aliases: dict, mods: dict, stmts: dict,
                 before: dict[str, list[str]] | None = None, last: list[str] = (), extra_import: str | None = None
                 ) -> str:
        """The carried text: imports (this module's, then the others' in ``order``, each module's in source
        order, repeats once), then per module of ``order`` its ``before`` bindings and its statements (in source
        order), then the ``last`` bindings."""
        parts: list[str] = []
        for k in [path] + [k for k in order if k != path]:
            for key, i in sorted(x for x in import_aliases if x[0] == k):
                stmt = mods[key].body[i]
                aliases = [a for a in stmt.names if a in import_aliases[(key, i)]]
                if isinstance(stmt, ast.ImportFrom):
                    node = ast.ImportFrom(module=stmt.module, names=aliases, level=0)
                else:
                    node = ast.Import(names=aliases)
                text = ast.unparse(node)
                if text not in parts:
                    parts.append(text)
        if extra_import and extra_import not in parts:
            parts.append(extra_import)
        context = "\n".join(parts)
        others: list[str] = []
        for k in order:
            if before and before[k]:
                others.append("\n".join(before[k]))
            others += [mods[k].stmt_source(i).rstrip("\n") for i in sorted(stmts[k])]
        if last:
            others.append("\n".join(last))
        if others:
            context = (context + "\n\n\n" if context else "") + "\n\n\n".join(others)
        return context

    def _defined_at(self, siblings, path: str, stmt: ast.stmt, alias: ast.alias, hops: int = 8):
        """("stmt", module, index) of the definition a sibling import of this module leads to (through
        re-exports), None when it leads elsewhere."""
        key, index = path, self
        for _ in range(hops):
            if not isinstance(stmt, ast.ImportFrom):
                return None
            found = siblings.resolve(key, stmt.module, stmt.level, alias.name)
            if found is None or found[1] is None:
                return None
            key, name = found
            index = self if key == path else siblings.index(key)
            bs = index.bindings.get(name, []) if index is not None else []
            if len(bs) != 1:
                return None
            if bs[0].kind in ("def", "assign"):
                return ("stmt", key, bs[0].index)
            if bs[0].kind != "import":
                return None
            stmt, alias = index.body[bs[0].index], bs[0].alias
        return None

    def _sibling_clash(self, siblings, path, own_name, mods, stmts, sibling_imports, renames, spaces, passed
                       ) -> str:
        """The first name that carried sibling code binds while this module (or another sibling) binds it to
        something else; "" when there is none. A stdlib import of the same origin is the same thing."""
        owners: dict[str, set] = {}
        for name, origins in sibling_imports.items():
            owners.setdefault(name, set()).update(("import", o) for o in origins)
        for key in mods:
            if key == path:
                continue
            for i in stmts[key]:
                for name in _top_names(mods[key].body[i]):
                    owners.setdefault(name, set()).add(("stmt", key, i))
        for key, name in list(renames) + list(spaces):
            if key != path:
                owners.setdefault(name, set()).add(("import", key, name))
        if spaces:
            owners.setdefault("types", set()).add(("import", "types"))
        for name in sorted(owners):
            mine = set(owners[name])
            if name == own_name:
                return f"{name} (the function's own name)"
            for b in self.bindings.get(name, []):
                stmt = self.body[b.index]
                if b.kind != "import":
                    mine.add(("stmt", path, b.index))
                elif isinstance(stmt, ast.ImportFrom) and not stmt.level and _is_stdlib(stmt.module or ""):
                    mine.add(("import", f"{stmt.module}.{b.alias.name}"))
                elif isinstance(stmt, ast.Import) and _is_stdlib(b.alias.name):
                    mine.add(("import", b.alias.name if b.alias.asname else b.alias.name.split(".")[0]))
                elif name not in passed:
                    mine.add(self._defined_at(siblings, path, stmt, b.alias) or ("import", path, name))
            if len(mine) > 1:
                return name
        return ""


def _split_source(text_lines: list[str], node: ast.FunctionDef, col: int, drop_lines: set[int]
                  ) -> tuple[str, str] | None:
    """(header, body) of a function's source: header up to the docstring's last line. None if not splittable."""
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    doc_end = node.body[0].end_lineno
    if len(node.body) < 2 or node.body[1].lineno <= doc_end:
        return None
    out_head, out_body = [], []
    for ln in range(start, node.end_lineno + 1):
        if ln in drop_lines:
            continue
        line = text_lines[ln - 1]
        if col:
            if line.strip() and not line[:col].isspace():
                return None  # text at a smaller indentation (e.g. inside a string): cannot dedent safely
            line = line[col:] if line.strip() else line.lstrip(" \t")
        (out_head if ln <= doc_end else out_body).append(line)
    head, body = "".join(out_head), "".join(out_body)
    if not head.endswith("\n"):
        head += "\n"
    if not body.endswith("\n"):
        body += "\n"
    return head, body


def extract_module(text: str, *, source: str = "local", path: str = "<string>", module: str | None = None,
                   license: str | None = None, max_context_lines: int = 200, siblings=None) -> ModuleResult:
    """Candidates and rejections of one module's source text. ``siblings`` (a
    :class:`~trl_unittest.data.siblings.Siblings`, with ``path`` this module's key among them) lets functions
    carry definitions imported from the other modules of their source."""
    with warnings.catch_warnings():  # mined code: invalid escapes etc. are not our warnings
        warnings.simplefilter("ignore")
        return _extract_module(text, source=source, path=path, module=module, license=license,
                               max_context_lines=max_context_lines, siblings=siblings)


def _extract_module(text, *, source, path, module, license, max_context_lines, siblings) -> ModuleResult:
    res = ModuleResult()
    try:
        # errors that only the compiler's symbol table sees (a duplicate argument, `global` after use) are
        # found per function and per carried statement by `_refs_of`: they reject what contains them, not the
        # whole module (checking whole modules was 12% of extraction time)
        index = siblings.cached(path, text) if siblings is not None and \
            siblings.max_context_lines == max_context_lines else None
        if index is None:
            index = ModuleIndex(parse(text), text, max_context_lines)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        res.syntax_error = True
        return res
    if module is None:
        module = module_name(path)
    lines = index.lines

    def consider(node, qualname: str, stmt_index: int, static: bool):
        line = min([node.lineno] + [d.lineno for d in node.decorator_list])

        def reject(reason, detail=""):
            res.rejections.append(Rejection(reason, qualname, line, detail))

        if any(part.startswith("_") for part in qualname.split(".")):
            return reject(R_PRIVATE)
        if isinstance(node, ast.AsyncFunctionDef):
            return reject(R_ASYNC)
        doc = ast.get_docstring(node, clean=True)
        if not doc or not doc.strip():
            return reject(R_NO_DOC)
        if _own_yield(node, lines):
            return reject(R_GENERATOR)
        drop = set()
        if static:
            for d in node.decorator_list:
                if isinstance(d, ast.Name) and d.id == "staticmethod":
                    if any(x.lineno == d.lineno for x in node.decorator_list if x is not d) or d.lineno == node.lineno:
                        return reject(R_UNSPLITTABLE, "decorator line")
                    drop |= set(range(d.lineno, d.end_lineno + 1))
        split = _split_source(lines, node, node.col_offset, drop)
        if split is None:
            return reject(R_UNSPLITTABLE)
        header, body = split
        func_src = header + body
        try:
            fnode = parse(func_src).body[0]
        except (SyntaxError, ValueError, RecursionError, IndexError):
            return reject(R_UNSPLITTABLE, "dedented source does not parse")
        try:
            refs, declared = _refs_of(func_src)
        except (SyntaxError, ValueError, RecursionError) as e:
            return reject(R_SYNTAX, str(e))
        if declared:
            return reject(R_GLOBAL, sorted(declared)[0])
        foreign = _foreign_import(fnode, func_src)
        if foreign is not None:
            return reject(R_NON_STDLIB, foreign)
        refs.discard(node.name) if not static else None
        if static and qualname.split(".")[0] in refs:  # lifting it would carry its class, this method included
            return reject(R_UNRESOLVABLE, f"{qualname.split('.')[0]} (its own class)")
        context, imports, reason, detail = index.closure(refs, exclude=None if static else stmt_index,
                                                        own_name=node.name, siblings=siblings, path=path,
                                                        func_tree=fnode)
        if reason:
            return reject(reason, detail)
        res.candidates.append(Candidate(
            source=source, path=path, module=module, qualname=qualname, entry_point=node.name, line=line,
            license=license, func_src=func_src, header=header, body=body, docstring=doc, context=context,
            imports=imports, params=_params(fnode, func_src)))

    for i, stmt in enumerate(index.body):  # (numbered as the index numbers them)
        if stmt.col_offset:  # a TYPE_CHECKING block's: never defined when the module runs
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                not stmt.name.startswith("_") and \
                any(b.index > i and b.kind == "def" for b in index.bindings.get(stmt.name, [])):
            # defined again further down: this definition is dead code, and both would get the same task id. (A
            # later `f = wrap(f)` or a pure-Python fallback that `try: from _accel import f` may replace stays:
            # the task is this function's own source, and a good one.)
            res.rejections.append(Rejection(R_REDEFINED, stmt.name, stmt.lineno))
            continue
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            consider(stmt, stmt.name, i, static=False)
        elif isinstance(stmt, ast.ClassDef):
            for sub in stmt.body:
                if not isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                qual = f"{stmt.name}.{sub.name}"
                is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in sub.decorator_list)
                if not is_static:
                    line = min([sub.lineno] + [d.lineno for d in sub.decorator_list])
                    if any(part.startswith("_") for part in qual.split(".")):
                        res.rejections.append(Rejection(R_PRIVATE, qual, line))
                    else:
                        res.rejections.append(Rejection(R_INSTANCE, qual, line))
                    continue
                if any(b.kind == "def" and b.index != i for b in index.bindings.get(sub.name, [])) or \
                        sub.name in index.bindings and sub.name != stmt.name:
                    res.rejections.append(Rejection(R_UNRESOLVABLE, qual, sub.lineno, "name clash when lifted"))
                    continue
                consider(sub, qual, i, static=True)
    return res
