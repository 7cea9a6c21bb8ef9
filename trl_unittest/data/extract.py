"""Candidate extraction: public, documented, self-contained module-level functions (and static methods) and the
closure of module-level names they need (imports, constants, helpers), carried along as the task's context.

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


class ModuleIndex:
    """Top-level bindings of a module and the closure of names a function needs."""

    def __init__(self, tree: ast.Module, text: str, max_context_lines: int = 200):
        self.tree, self.text = tree, text
        self.lines = source_lines(text)
        self.max_context_lines = max_context_lines
        self.bindings: dict[str, list[_Binding]] = {}
        self.star_import = False
        self._refs_cache: dict[int, tuple[set[str], set[str]]] = {}
        for i, stmt in enumerate(tree.body):
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
        start, end = self.stmt_span(self.tree.body[index])
        return "".join(self.lines[start - 1:end])

    def stmt_refs(self, index: int) -> tuple[set[str], set[str]]:
        if index not in self._refs_cache:
            self._refs_cache[index] = _refs_of(self.stmt_source(index))
        return self._refs_cache[index]

    def closure(self, refs: set[str], exclude: int | None = None, own_name: str | None = None
                ) -> tuple[str, dict[str, str], str, str]:
        """Carry what ``refs`` needs. Returns (context, imports, reason, detail); reason is "" on success."""
        imports: dict[str, str] = {}
        import_aliases: dict[int, list[ast.alias]] = {}
        stmts: set[int] = set()
        work = sorted(refs)
        done: set[str] = set()
        while work:
            name = work.pop()
            if name in done:
                continue
            done.add(name)
            bs = self.bindings.get(name)
            if not bs:
                if name == own_name or name in BUILTIN_NAMES:
                    continue
                return "", {}, R_UNRESOLVABLE, name + (" (star import)" if self.star_import else "")
            if any(b.kind == "conditional" for b in bs):
                return "", {}, R_CONDITIONAL, name
            for b in bs:
                if b.index == exclude:
                    continue
                stmt = self.tree.body[b.index]
                if b.kind == "import":
                    if isinstance(stmt, ast.ImportFrom):
                        if stmt.level:
                            return "", {}, R_NON_STDLIB, "." * stmt.level + (stmt.module or "")
                        origin = f"{stmt.module}.{b.alias.name}"
                    else:
                        origin = b.alias.name if b.alias.asname else b.alias.name.split(".")[0]
                    if not _is_stdlib(origin):
                        return "", {}, R_NON_STDLIB, origin
                    imports[name] = origin
                    lst = import_aliases.setdefault(b.index, [])
                    if b.alias not in lst:
                        lst.append(b.alias)
                else:
                    if b.index in stmts:
                        continue
                    stmts.add(b.index)
                    foreign = _foreign_import(self.tree.body[b.index], self.stmt_source(b.index))
                    if foreign is not None:
                        return "", {}, R_NON_STDLIB, foreign
                    try:
                        srefs, declared = self.stmt_refs(b.index)
                    except (SyntaxError, ValueError, RecursionError) as e:
                        return "", {}, R_SYNTAX, f"{name}: {e}"
                    if declared:
                        return "", {}, R_GLOBAL, sorted(declared)[0]
                    work.extend(sorted(srefs - done))
        parts: list[str] = []
        for i in sorted(import_aliases):
            stmt = self.tree.body[i]
            aliases = [a for a in stmt.names if a in import_aliases[i]]
            if isinstance(stmt, ast.ImportFrom):
                node = ast.ImportFrom(module=stmt.module, names=aliases, level=0)
            else:
                node = ast.Import(names=aliases)
            parts.append(ast.unparse(node))
        context = "\n".join(parts)
        others = [self.stmt_source(i).rstrip("\n") for i in sorted(stmts)]
        if others:
            context = (context + "\n\n\n" if context else "") + "\n\n\n".join(others)
        if context.count("\n") + 1 > self.max_context_lines:
            return "", {}, R_CONTEXT_SIZE, f"{context.count(chr(10)) + 1} lines"
        return context, imports, "", ""


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
                   license: str | None = None, max_context_lines: int = 200) -> ModuleResult:
    """Candidates and rejections of one module's source text."""
    with warnings.catch_warnings():  # mined code: invalid escapes etc. are not our warnings
        warnings.simplefilter("ignore")
        return _extract_module(text, source=source, path=path, module=module, license=license,
                               max_context_lines=max_context_lines)


def _extract_module(text, *, source, path, module, license, max_context_lines) -> ModuleResult:
    res = ModuleResult()
    try:
        # errors that only the compiler's symbol table sees (a duplicate argument, `global` after use) are
        # found per function and per carried statement by `_refs_of`: they reject what contains them, not the
        # whole module (checking whole modules was 12% of extraction time)
        tree = parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        res.syntax_error = True
        return res
    if module is None:
        module = module_name(path)
    index = ModuleIndex(tree, text, max_context_lines)
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
                                                        own_name=node.name)
        if reason:
            return reject(reason, detail)
        res.candidates.append(Candidate(
            source=source, path=path, module=module, qualname=qualname, entry_point=node.name, line=line,
            license=license, func_src=func_src, header=header, body=body, docstring=doc, context=context,
            imports=imports, params=_params(fnode, func_src)))

    for i, stmt in enumerate(tree.body):
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
