"""The worker that runs inside the sandbox: a warm interpreter that forks one child per program.

This file runs as a standalone script inside bubblewrap (the package itself is not visible there), so it uses
the standard library only. The trusted side (``pool.py``) talks to it over stdin/stdout with length-prefixed
JSON frames. For each request the worker forks a fresh child, which

* starts a new session, closes every inherited file descriptor but its result pipe, sends stdout/stderr to
  size-limited files in a private scratch directory, sets hard rlimits, and drops to an unprivileged uid;
* compiles and executes the program, then evaluates each test and sends back *data only*: the returned value
  encoded strictly (:func:`encode_value`) or the exception's type names. Expected values never enter the
  sandbox, so a program can forge nothing but its own output.

``code`` tests (check code that could not become structured tests, and so holds its expected values) never run
in a program child: the proxy harness (below) runs them in a test process of their own that reaches the
program only through literal-encoded calls, and only that process reports their verdicts. Its literal decoder
(:func:`decode_literal`) repeats ``values.decode_value`` in the standard library only, because the package is
not importable inside the sandbox.

The worker enforces per-test wall-clock budgets: when a test overruns, the child (and everything it spawned) is
killed, the test is recorded as a timeout and a fresh child resumes at the next test. Why hand-written: no
library offers fork-per-program execution with strict result framing inside an existing sandbox;
``multiprocessing`` pickles results (unsafe to unpickle) and starts processes much more slowly.
"""

import builtins
import ctypes
import fcntl
import hashlib
import json
import os
import resource
import select
import signal
import struct
import sys
import time

HEADER = struct.Struct(">I")
CALLEE = "__trl_unittest_callee__"  # the name a call test with a "callee" reaches its function by
MAX_VALUE_CHARS = 1 << 20
MAX_DEPTH = 100
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


# ----------------------------------------------------------------------------------------------- value encoding
class Unencodable(Exception):
    pass


import collections as _collections
import decimal as _decimal
import fractions as _fractions
import re as _re

# standard-library dict subclasses that compare with plain dicts like dicts do; captured by identity before any
# program runs, so a program rebinding these names or subclassing them gains nothing
_DICT_LIKE = (_collections.Counter, _collections.OrderedDict, _collections.defaultdict)
# Tagged encodings: values of these exact standard-library types are written as a call of the tag on literals
# (``Decimal('1.5')``, ``deque([1, 2], None)``) and rebuilt on the trusted side as the same type, so that they
# compare as Python compares them (``Decimal('1.5') == 1.5``, ``deque([1]) != [1]``). Their data is read with the
# types' own unbound methods, captured here, never with anything the program could override.
_DICT_VIEWS = {type({}.keys()): "dict_keys", type({}.values()): "dict_values", type({}.items()): "dict_items"}
_TAGGED = (_decimal.Decimal, _fractions.Fraction, _collections.deque, _re.Match)
# a str subclass is encoded as its str data only when it overrides nothing that decides comparison or display
_STR_SLOTS = ("__eq__", "__ne__", "__hash__", "__repr__", "__str__", "__bool__", "__len__", "__lt__", "__le__",
              "__gt__", "__ge__", "__contains__", "__getattribute__", "__format__")
_STR_SLOT_VALUES = tuple(getattr(str, name, None) for name in _STR_SLOTS)
_NUMPY_DTYPE_KINDS = "biufcU"  # bool, ints, floats, complex, str: what ndarray.tolist() gives as plain values


def _plain_str_subclass(t, _getattr=getattr, _type=type):
    if _type(t) is not type:  # a metaclass could answer attribute lookups on the class itself
        return False
    return all(_getattr(t, name, None) is value for name, value in zip(_STR_SLOTS, _STR_SLOT_VALUES))


def encode_value(value, _type=type, _len=len, _repr_int=int.__repr__, _repr_float=float.__repr__,
                 _repr_str=str.__repr__, _repr_bytes=bytes.__repr__, _repr_complex=complex.__repr__,
                 _dict_like=_DICT_LIKE, _tuple_eq=tuple.__eq__, _tuple_ne=tuple.__ne__, _issubclass=issubclass,
                 _getattr=getattr, _views=_DICT_VIEWS, _tagged=_TAGGED, _decimal_str=_decimal.Decimal.__str__,
                 _frac_num=_fractions.Fraction.numerator.fget, _frac_den=_fractions.Fraction.denominator.fget,
                 _deque_iter=_collections.deque.__iter__, _deque_maxlen=_collections.deque.maxlen.__get__,
                 _match_span=_re.Match.span, _match_group=_re.Match.group, _modules=sys.modules,
                 _plain_str=_plain_str_subclass):
    """Python literal text for plain built-in values of exact types; anything else raises Unencodable.

    Exact-type checks and the unbound ``__repr__`` of each built-in type mean that a subclass or an object with
    a custom ``__repr__``/``__eq__`` can never be encoded as if it were a plain value. A few standard types that
    compare with plain values (``Decimal``, ``Fraction``, ``deque``, dict views, ``re.Match``, numpy scalars and
    arrays, a str subclass that overrides nothing) get tagged encodings, rebuilt by :func:`make_tagged`.

    The encoder runs in the program's process, so it protects nothing by itself (a program can send any text it
    likes): it exists so that an honest program's value arrives as Python would compare it. The safety is on the
    reading side, which rebuilds only plain and standard-library values."""
    # the commonest results, written as enc() below writes them, without its set-up (a third of a short test's
    # cost in the child when the builder runs every mutant on every input)
    if value is None or value is True or value is False:
        return "None" if value is None else ("True" if value else "False")
    t = _type(value)
    if t is int or t is str:
        try:
            s = _repr_int(value) if t is int else _repr_str(value)
        except ValueError:  # more digits than int->str conversion allows
            raise Unencodable("ValueTooLarge") from None
        if _len(s) > MAX_VALUE_CHARS:
            raise Unencodable("ValueTooLarge")
        return s
    out = []
    size = [0]

    def emit(s):
        size[0] += _len(s)
        if size[0] > MAX_VALUE_CHARS:
            raise Unencodable("ValueTooLarge")
        out.append(s)

    def seq(items, depth, open_, close):
        emit(open_)
        for i, item in enumerate(items):
            if i:
                emit(", ")
            enc(item, depth + 1)
        emit(close)

    def enc(v, depth):
        if depth > MAX_DEPTH:
            raise Unencodable("ValueTooDeep")
        t = _type(v)
        if v is None or v is True or v is False:
            emit("None" if v is None else ("True" if v else "False"))
        elif t is int:
            try:
                emit(_repr_int(v))
            except ValueError:  # more digits than int->str conversion allows
                raise Unencodable("ValueTooLarge") from None
        elif t is float:
            if v != v:
                emit("float('nan')")
            elif v in (float("inf"), float("-inf")):
                emit("float('inf')" if v > 0 else "float('-inf')")
            else:
                emit(_repr_float(v))
        elif t is complex:
            if v != v or v.real in (float("inf"), float("-inf")) or v.imag in (float("inf"), float("-inf")):
                raise Unencodable("complex")
            emit(_repr_complex(v))
        elif t is str:
            emit(_repr_str(v))
        elif t is bytes:
            emit(_repr_bytes(v))
        elif t is bytearray:
            emit("bytearray(" + _repr_bytes(bytes(v)) + ")")
        elif t is list or t is tuple or (_issubclass(t, tuple) and _getattr(t, "__eq__", None) is _tuple_eq
                                          and _getattr(t, "__ne__", None) is _tuple_ne):
            # namedtuples compare as tuples; their items are read from the tuple storage itself
            t = list if t is list else tuple
            items = list.__iter__(v) if t is list else tuple.__iter__(v)
            emit("[" if t is list else "(")
            n = 0
            for item in items:
                if n:
                    emit(", ")
                enc(item, depth + 1)
                n += 1
            emit("]" if t is list else ("," if n == 1 else "") + ")")
        elif t is set or t is frozenset:
            items = list(set.__iter__(v) if t is set else frozenset.__iter__(v))
            if not items:
                emit("set()" if t is set else "frozenset()")
                return
            emit("{" if t is set else "frozenset({")
            for i, item in enumerate(items):
                if i:
                    emit(", ")
                enc(item, depth + 1)
            emit("}" if t is set else "})")
        elif t is dict or any(t is d for d in _dict_like):
            emit("{")
            for i, (k, item) in enumerate(dict.items(v)):
                if i:
                    emit(", ")
                enc(k, depth + 1)
                emit(": ")
                enc(item, depth + 1)
            emit("}")
        elif t in _views:
            seq(list(v), depth, _views[t] + "([", "])")  # exact view types: iteration reads the dict's storage
        elif any(t is k for k in _tagged):
            if t is _tagged[0]:
                emit("Decimal(" + _repr_str(_decimal_str(v)) + ")")
            elif t is _tagged[1]:
                emit("Fraction(")
                enc(_frac_num(v), depth)
                emit(", ")
                enc(_frac_den(v), depth)
                emit(")")
            elif t is _tagged[2]:
                seq(_deque_iter(v), depth, "deque([", "], ")
                enc(_deque_maxlen(v), depth)
                emit(")")
            else:
                emit("Match(")
                enc(_match_span(v), depth)
                emit(", ")
                enc(_match_group(v, 0), depth)
                emit(")")
        elif _issubclass(t, str) and _plain_str(t):
            emit(_repr_str(v))
        else:
            np = _modules.get("numpy")
            if np is not None and _type(np) is _type(sys) and _getattr(t, "__module__", None) == "numpy":
                if t is _getattr(np, "ndarray", None) and _getattr(v.dtype, "kind", None) in _NUMPY_DTYPE_KINDS:
                    emit("ndarray(")
                    enc(v.tolist(), depth)
                    emit(", " + _repr_str(str(v.dtype.str)) + ")")
                    return
                if _issubclass(t, np.generic) and _getattr(v.dtype, "kind", None) in _NUMPY_DTYPE_KINDS:
                    emit("numpy(")
                    enc(v.item(), depth)
                    emit(")")
                    return
            raise Unencodable(t.__name__ if _type(getattr(t, "__name__", None)) is str else "object")

    enc(value, 0)
    return "".join(out)


# ---------------------------------------------------------------------------------------------- value decoding
class LiteralError(ValueError):
    """Text that is not a value in the strict literal format."""


class MatchResult:
    """What a returned ``re.Match`` becomes on the trusted side: truthy, equal only to itself (as a Match is),
    with its span and matched text for people reading results."""

    __slots__ = ("span", "group")

    def __init__(self, span, group):
        self.span, self.group = span, group

    def __repr__(self):
        return f"<re.Match object; span={self.span!r}, match={self.group!r}>"


_NUMPY_DTYPE = _re.compile(r"[<>|=]?[biufcU][0-9]{1,2}")


def make_tagged(name, args):
    """The value a tagged encoding stands for, built from already decoded plain arguments; LiteralError when
    the arguments are not what the encoder writes."""
    n = len(args)

    def arg_type(i, *types):
        if type(args[i]) not in types:
            raise LiteralError(f"{name}() argument {i + 1} is a {type(args[i]).__name__}")
        return args[i]

    if name == "Decimal" and n == 1:
        try:
            return _decimal.Decimal(arg_type(0, str))
        except _decimal.InvalidOperation:
            raise LiteralError(f"Decimal({args[0][:40]!r}) is not a number") from None
    if name == "Fraction" and n == 2:
        num, den = arg_type(0, int), arg_type(1, int)
        if den <= 0:
            raise LiteralError("Fraction() with a denominator <= 0")
        return _fractions.Fraction(num, den)
    if name == "deque" and n == 2:
        maxlen = arg_type(1, int, type(None))
        if maxlen is not None and (maxlen < 0 or maxlen < len(arg_type(0, list))):
            raise LiteralError("deque() with more items than its maxlen")
        return _collections.deque(arg_type(0, list), maxlen)
    if name in ("dict_keys", "dict_values", "dict_items") and n == 1:
        items = arg_type(0, list)
        try:
            if name == "dict_keys":
                built = dict.fromkeys(items)
                if len(built) != len(items):
                    raise LiteralError("dict_keys() with repeated keys")
                return built.keys()
            if name == "dict_values":
                return dict(enumerate(items)).values()
            if not all(type(i) is tuple and len(i) == 2 for i in items):
                raise LiteralError("dict_items() takes (key, value) pairs")
            built = dict(items)
            if len(built) != len(items):
                raise LiteralError("dict_items() with repeated keys")
            return built.items()
        except TypeError:
            raise LiteralError(f"unhashable key in {name}()") from None
    if name == "Match" and n == 2:
        span, group = arg_type(0, tuple), arg_type(1, str, bytes)
        if len(span) != 2 or not all(type(x) is int for x in span):
            raise LiteralError("Match() span is not two ints")
        return MatchResult(span, group)
    if name == "numpy" and n == 1:
        return arg_type(0, bool, int, float, complex, str)
    if name == "ndarray" and n == 2:
        data, dtype = args[0], arg_type(1, str)
        if not _NUMPY_DTYPE.fullmatch(dtype):
            raise LiteralError(f"ndarray() dtype {dtype[:20]!r} is not a plain one")
        try:
            import numpy
        except ImportError:
            raise LiteralError("ndarray() where numpy is not installed") from None
        try:
            return numpy.array(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            raise LiteralError("ndarray() data does not fit its dtype") from None
    raise LiteralError(f"call to {name}() is not a literal")


TAGS = ("Decimal", "Fraction", "deque", "dict_keys", "dict_values", "dict_items", "Match", "numpy", "ndarray")
_SPECIAL_FLOATS = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def decode_literal(text, limit=MAX_VALUE_CHARS):
    """The value of ``text`` in the strict literal format (what :func:`encode_value` writes), built only from
    literals, the calls ``float('nan'|'inf'|'-inf')``, ``set``/``frozenset``/``bytearray`` and the tags; raises
    LiteralError otherwise. Standard library only: this runs inside the sandbox (in the test process, on what
    the program's process sends it), where the package's own ``values.decode_value`` is not importable."""
    import ast

    if type(text) is not str or len(text) > limit:
        raise LiteralError("not a literal of a bounded size")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise LiteralError("cannot parse") from None

    def build(node, depth):
        if depth > MAX_DEPTH:
            raise LiteralError("nested too deeply")
        d = depth + 1
        if isinstance(node, ast.Constant):
            if node.value is Ellipsis:
                raise LiteralError("Ellipsis")
            return node.value
        if isinstance(node, (ast.Tuple, ast.List)):
            items = [build(e, d) for e in node.elts]
            return tuple(items) if isinstance(node, ast.Tuple) else items
        try:
            if isinstance(node, ast.Set):
                return {build(e, d) for e in node.elts}
            if isinstance(node, ast.Dict):
                if any(k is None for k in node.keys):
                    raise LiteralError("** in a dict")
                return {build(k, d): build(v, d) for k, v in zip(node.keys, node.values)}
        except TypeError:
            raise LiteralError("unhashable set item or dict key") from None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = build(node.operand, depth)
            if type(operand) not in (int, float, complex):
                raise LiteralError("sign of a non-number")
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            left, right = build(node.left, depth), build(node.right, depth)
            if type(left) in (int, float) and type(right) is complex and right.real == 0:
                return left + right if isinstance(node.op, ast.Add) else left - right
            raise LiteralError("+/- outside a complex literal")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            name, args = node.func.id, [build(a, depth) for a in node.args]
            if name == "float" and len(args) == 1 and args[0] in _SPECIAL_FLOATS:
                return _SPECIAL_FLOATS[args[0]]
            if name in ("set", "frozenset") and len(args) <= 1:
                try:
                    return (set if name == "set" else frozenset)(args[0] if args else ())
                except TypeError:
                    raise LiteralError("unhashable set item") from None
            if name == "bytearray" and len(args) == 1 and type(args[0]) is bytes:
                return bytearray(args[0])
            if name in TAGS:
                return make_tagged(name, args)
        raise LiteralError(f"{type(node).__name__} is not a literal")

    try:
        return build(tree.body, 0)
    except RecursionError:
        raise LiteralError("nested too deeply") from None


# ------------------------------------------------------------------------------------------------------ seccomp
# System calls no program needs and that reach past the sandbox's limits: SysV IPC objects and kernel keys outlive
# the program and its memory limit; a new user namespace gives back capabilities (to mount a tmpfs beyond the
# /tmp cap, say). A classic BPF filter refuses them with EPERM (clone3 with ENOSYS: its flags cannot be inspected,
# and the C library falls back to clone, whose flags can). Written by hand: it is a dozen instructions, and
# libseccomp's Python bindings are not on PyPI. Syscall numbers from the kernel's unistd tables.
_SECCOMP_ARCHES = {  # machine: (AUDIT_ARCH, {name: number})
    "x86_64": (0xC000003E, {"shmget": 29, "shmat": 30, "semget": 64, "msgget": 68, "mq_open": 240,
                            "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "clone": 56,
                            "clone3": 435}),
    "aarch64": (0xC00000B7, {"shmget": 194, "shmat": 196, "semget": 190, "msgget": 186, "mq_open": 180,
                             "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97, "clone": 220,
                             "clone3": 435}),
}
_CLONE_NEWUSER = 0x10000000


def seccomp_filter(machine):
    """The filter program for ``machine`` (``os.uname().machine``) as bytes, or None for another machine."""
    if machine not in _SECCOMP_ARCHES:
        return None
    arch, nr = _SECCOMP_ARCHES[machine]
    ld_w_abs, jeq_k, jset_k, jge_k, ret_k = 0x20, 0x15, 0x45, 0x35, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    denied = [nr[n] for n in ("shmget", "shmat", "semget", "msgget", "mq_open", "add_key", "request_key",
                              "keyctl", "unshare")]
    prog = [(ld_w_abs, 0, 0, 4)]  # seccomp_data.arch
    prog.append((jeq_k, 1, 0, arch))  # another ABI (i386 on x86_64, say): refused
    prog.append((ret_k, 0, 0, eperm))
    prog.append((ld_w_abs, 0, 0, 0))  # seccomp_data.nr
    prog.append((jge_k, 0, 1, 0x40000000))  # the x32 ABI: refused
    prog.append((ret_k, 0, 0, eperm))
    for n in denied:
        prog.append((jeq_k, 0, 1, n))
        prog.append((ret_k, 0, 0, eperm))
    prog.append((jeq_k, 0, 1, nr["clone3"]))
    prog.append((ret_k, 0, 0, enosys))
    prog.append((jeq_k, 0, 3, nr["clone"]))
    prog.append((ld_w_abs, 0, 0, 16))  # clone's flags: args[0], low 32 bits
    prog.append((jset_k, 0, 1, _CLONE_NEWUSER))
    prog.append((ret_k, 0, 0, eperm))
    prog.append((ret_k, 0, 0, allow))
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog), len(prog)


def install_seccomp():
    """Install the filter on this process (inherited by every child); False where it cannot be."""
    built = seccomp_filter(os.uname().machine)
    if built is None:
        return False
    code, count = built
    buf = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(count, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS (bubblewrap sets it too)
    return libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


# ----------------------------------------------------------------------------------------------------- framing
def write_frame(fd, obj, _dumps=json.dumps, _write=os.write):
    data = _dumps(obj).encode("utf-8", "surrogatepass")
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        n = _write(fd, view)
        view = view[n:]


def read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd, limit):
    head = read_exact(fd, HEADER.size)
    if head is None:
        return None
    (n,) = HEADER.unpack(head)
    if n > limit:
        raise ValueError(f"frame of {n} bytes exceeds {limit}")
    body = read_exact(fd, n)
    if body is None:
        return None
    return json.loads(body)


# ------------------------------------------------------------------------------------------------- child side
# Exception classes the program cannot have made: the built-ins and those of the modules loaded before any
# program runs, by identity (``id`` then ``is``: a metaclass cannot fake either). Filled by the worker at start.
_TRUSTED_EXCEPTIONS = {}


def trust_exception_classes(modules):
    """Record the exception classes of ``builtins`` and of ``modules`` (module objects) under their names."""
    for module in [builtins, *modules]:
        for value in list(vars(module).values()):
            if isinstance(value, type) and issubclass(value, BaseException):
                qualname, mod = getattr(value, "__qualname__", None), getattr(value, "__module__", None)
                if isinstance(qualname, str) and isinstance(mod, str):
                    _TRUSTED_EXCEPTIONS[id(value)] = (value, qualname if mod == "builtins" else f"{mod}.{qualname}")
    _TRUSTED_NAMES.update(name for _, name in _TRUSTED_EXCEPTIONS.values())


_TRUSTED_NAMES = set()


def exception_names(exc, _type=type, _id=id, _getattr=getattr, _isinstance=isinstance, _str=str):
    """Names of the exception's classes, most derived first: built-ins by name, others as module.qualname. A
    class of the program's own that claims a trusted class's name (``type("ValueError", ...)`` with
    ``__module__ = "builtins"``) is reported as ``forged:<name>``, so a test expecting ``ValueError`` needs the
    real one in the class's MRO."""
    names = []
    for cls in _type(exc).__mro__:
        trusted = _TRUSTED_EXCEPTIONS.get(_id(cls))
        if trusted is not None and trusted[0] is cls:
            names.append(trusted[1])
        else:
            module = _getattr(cls, "__module__", "")
            name = _getattr(cls, "__qualname__", "?")
            if not _isinstance(module, _str) or not _isinstance(name, _str):
                continue
            name = name if module == "builtins" else f"{module}.{name}"
            names.append("forged:" + name if (module == "builtins" or name in _TRUSTED_NAMES) else name)
        if cls is BaseException:
            break
    return names[:16]


def _exit_like(code=None):
    raise SystemExit(code)


def child_main(req, result_fd, scratch, stdin_path, start, rlimits, uid, stdio, outputs, calls_fd=None):
    """Runs in the forked child. Never returns: the process ends with os._exit.

    With ``calls_fd`` (the proxy harness, for ``code`` tests) the child runs no test itself: it serves the calls
    a test process sends on ``calls_fd`` (fd 4 once set up) and answers on ``result_fd`` (fd 3), see
    :func:`serve_calls`.

    Each page the child writes is copied from the worker, and those copies are most of a short program's cost,
    so the set-up touches few objects: plain ``os`` calls, rlimits resolved to numbers and text streams made
    once by the worker (``stdio``). ``outputs``: the write ends of the stdout and stderr pipes the worker drains
    (pipes, not files: no file-size limit applies to what a program prints, and the worker keeps what it needs)."""
    send = write_frame
    try:
        os.setsid()
        os.chdir(scratch)
        fd_in = os.open(stdin_path or os.devnull, os.O_RDONLY)
        fd_out, fd_err = outputs
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        os.dup2(result_fd, 3)
        if calls_fd is not None:
            os.dup2(fcntl.fcntl(calls_fd, fcntl.F_DUPFD, 5), 4)
            os.set_inheritable(4, False)
        os.closerange(4 if calls_fd is None else 5, 1 << 20)  # close_range(2) where the kernel has it
        result_fd = 3
        os.set_inheritable(3, False)
        for which, soft, hard in rlimits:
            resource.setrlimit(which, (soft, hard))
        if req.get("cpu_seconds"):
            cpu = int(req["cpu_seconds"])
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        os.umask(0o077)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # made by the worker on fds 0-2, which now point at this child's files
        sys.stdin, sys.stdout, sys.stderr = stdio
        sys.argv = ["program"]
        builtins.exit = builtins.quit = _exit_like
        sys.setrecursionlimit(max(1000, int(req.get("recursion_limit", 3000))))
    except BaseException as e:  # set-up failures are the sandbox's, not the program's
        try:
            send(result_fd, {"ev": "setup_error", "error": f"{type(e).__name__}: {e}"})
        finally:
            os._exit(0)
    if req.get("clock_shift"):
        shift_clock(float(req["clock_shift"]))
    if calls_fd is not None:
        serve_calls(req, result_fd, 4, send)
    else:
        run_program(req, result_fd, start, send)
    os._exit(0)


def shift_clock(seconds, _time=time):
    """Moves this process's wall clock, as the ``time`` module reports it, by ``seconds``: ``time()``,
    ``time_ns()``, and ``localtime``, ``gmtime``, ``ctime``, ``asctime``, ``strftime`` without an explicit time.
    The builder reruns each mined function under a shifted clock (``Program.clock_shift``), so that an output that
    depends on the time of day (a gzip header's mtime, a formatted date) differs between its two runs and is set
    aside as nondeterministic instead of becoming a test that fails once the second has passed. The monotonic
    clocks stay as they are (durations do not move); ``datetime``'s C clock is not reached from here (its direct
    calls are rejected statically, see ``data.filters``)."""
    real = _time.time
    real_ns = _time.time_ns
    localtime, gmtime, ctime, asctime, strftime = (_time.localtime, _time.gmtime, _time.ctime, _time.asctime,
                                                   _time.strftime)
    shift_ns = int(round(seconds * 1e9))

    def now():
        return real() + seconds

    _time.time = now
    _time.time_ns = lambda: real_ns() + shift_ns
    _time.localtime = lambda secs=None: localtime(now() if secs is None else secs)
    _time.gmtime = lambda secs=None: gmtime(now() if secs is None else secs)
    _time.ctime = lambda secs=None: ctime(now() if secs is None else secs)
    _time.asctime = lambda t=None: asctime(localtime(now()) if t is None else t)
    _time.strftime = lambda fmt, t=None: strftime(fmt, localtime(now()) if t is None else t)


def run_program(req, fd, start, send):
    perf = time.perf_counter
    tests = req["tests"]
    io_mode = bool(tests) and tests[start]["kind"] == "io"
    context, code = req.get("context", ""), req["code"]
    source = (context + "\n" + code) if context else code
    offset = context.count("\n") + 1 if context else 0
    # a registered module, so that pickle finds the program's functions by name (multiprocessing.Pool.map)
    module = type(sys)("__main__" if io_mode else "__candidate__")
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    namespace["__builtins__"] = builtins
    try:
        compiled = compile(source, "<program>", "exec")
    except BaseException as e:
        send(fd, {"ev": "compile_error", "error": exception_names(e)})
        return

    tracer = None
    lines, arcs = set(), set()
    if req.get("trace"):
        prev = [0]

        def tracer(frame, event, arg):
            # lines and arcs are numbered within `code` (context lines come out <= 0 and are dropped);
            # a negative number stands for entering/leaving the function that starts on that line
            if frame.f_code.co_filename != "<program>":
                return None
            if event == "call":
                prev[0] = -(frame.f_code.co_firstlineno - offset)
            elif event == "line":
                line = frame.f_lineno - offset
                lines.add(line)
                arcs.add((prev[0], line))
                prev[0] = line
            elif event == "return":
                arcs.add((prev[0], -(frame.f_code.co_firstlineno - offset)))
            return tracer

    if io_mode:
        send(fd, {"ev": "begin"})
        t0 = perf()
        status = {"ev": "io_done", "i": start}
        try:
            exec(compiled, namespace)
        except SystemExit as e:
            if e.code not in (None, 0):
                status = {"ev": "result", "i": start, "error": exception_names(e)}
        except BaseException as e:
            status = {"ev": "result", "i": start, "error": exception_names(e)}
        try:
            sys.stdout.flush()
        except BaseException:
            pass
        status["t"] = perf() - t0
        send(fd, status)
        return

    send(fd, {"ev": "begin"})  # from here on the program's own code runs and could write frames itself
    try:
        exec(compiled, namespace)
        if req.get("test_setup"):
            exec(compile(req["test_setup"], "<test_setup>", "exec"), namespace)
    except BaseException as e:
        send(fd, {"ev": "import_error", "error": exception_names(e)})
        return
    send(fd, {"ev": "imported"})

    expr_code = {}  # expression text -> code: tests that differ only in their callee share one text
    for i in range(start, len(tests)):
        test = tests[i]
        lines.clear()
        arcs.clear()
        msg = {"ev": "result", "i": i}
        t0 = perf()
        try:
            if test["kind"] == "code":
                body = compile(test["code"], "<test>", "exec")
                if tracer:
                    sys.settrace(tracer)
                exec(body, namespace)
                sys.settrace(None)
                msg["value"] = "None"
            else:
                callee = test.get("callee")
                if callee is not None:
                    if callee not in namespace:
                        raise NameError(f"name {callee!r} is not defined")
                    namespace[CALLEE] = namespace[callee]
                expr = expr_code.get(test["expr"])
                if expr is None:
                    expr = expr_code[test["expr"]] = compile(test["expr"], "<test>", "eval")
                if tracer:
                    sys.settrace(tracer)
                value = eval(expr, namespace)
                sys.settrace(None)
                try:
                    msg["value"] = encode_value(value)
                except Unencodable as u:
                    msg["unencodable"] = str(u)
        except BaseException as e:
            sys.settrace(None)
            msg["error"] = exception_names(e)
        msg["t"] = perf() - t0
        if tracer:
            msg["lines"] = sorted(x for x in lines if x > 0)
            msg["arcs"] = sorted(a for a in arcs if a[0] != 0 and a[1] != 0)
        send(fd, msg)


# ------------------------------------------------------------------------------------------------ proxy harness
# ``code`` tests (check code with loops, asserts that could not become structured tests) run in a test process of
# their own, forked from the clean worker under a uid of its own, undumpable, and never touched by the program:
#
#   worker ──fork──► test process (trusted)  ── call frames (strict literals) ──►  program child (untrusted)
#      ▲                  │                    ◄── value / exception names ───────       (serve_calls)
#      └── result frames ─┘
#
# The test code reaches the program only through proxies: every global name the test code reads and does not
# define is looked up in the program's namespace (a callable becomes a proxy, a plain value its decoded copy, a
# module the same module imported here), and each call crosses as literal text both ways, decoded with the
# literal-only decoder. Only the test process writes verdicts to the worker. An argument or a return value that
# cannot cross (a callable, a generator, an object) makes the test *unverifiable*, never passed. The test code
# itself reaches the worker as a blob it keeps in wipe-on-fork memory, so no program child ever holds it.
REPLY_LIMIT = MAX_VALUE_CHARS + 4096
_MADV_WIPEONFORK, _MADV_DONTFORK = 18, 10
TEST_UID_OFFSET = 1 << 24  # the test process's uid: the program's uid + this (pool uids stay below it)


def serve_calls(req, out_fd, in_fd, send):
    """The program's side of the proxy: compile and run the program, then answer lookups and calls until the
    test process closes the pipe. Nothing it sends is trusted; the test process checks every frame."""
    context, code = req.get("context", ""), req["code"]
    source = (context + "\n" + code) if context else code
    namespace = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        compiled = compile(source, "<program>", "exec")
    except BaseException as e:
        send(out_fd, {"ev": "compile_error", "error": exception_names(e)})
        return
    send(out_fd, {"ev": "compiled"})
    try:
        exec(compiled, namespace)
        if req.get("test_setup"):
            exec(compile(req["test_setup"], "<test_setup>", "exec"), namespace)
    except BaseException as e:
        send(out_fd, {"ev": "import_error", "error": exception_names(e)})
        return
    send(out_fd, {"ev": "imported"})
    module_type = type(sys)
    while True:
        msg = read_frame(in_fd, 1 << 30)
        if msg is None:
            return
        reply = {"r": msg["q"]}
        name = msg["name"]
        try:
            if msg["op"] == "lookup":
                value = namespace.get(name, _MISSING)
                if value is _MISSING:
                    reply["kind"] = "missing"
                elif type(value) is module_type:
                    reply["kind"], reply["module"] = "module", str(value.__name__)
                elif callable(value):
                    reply["kind"] = "callable"
                else:
                    reply["kind"], reply["value"] = "value", encode_value(value)
            else:
                args, kwargs = decode_literal(msg["args"], REPLY_LIMIT)
                if name not in namespace:
                    raise NameError(name)
                reply["value"] = encode_value(namespace[name](*args, **kwargs))
        except Unencodable as u:
            reply.pop("kind", None)
            reply["unencodable"] = str(u)
        except BaseException as e:
            reply.pop("kind", None)
            reply["error"] = exception_names(e)
        send(out_fd, reply)


_MISSING = object()


class Unverifiable(BaseException):
    """An argument or return value that cannot cross between the test and the program (BaseException, so that
    the test code's own ``except Exception`` does not swallow it)."""


class CandidateError(Exception):
    """The program raised, died or broke the proxy protocol during a call; ``names`` are its exception names."""

    def __init__(self, names):
        super().__init__(", ".join(names))
        self.names = names


# exceptions a program's exception is raised as in the test code, so that `except ValueError` in a check works;
# not the ones that steer control flow (a forged StopIteration ending a loop early, SystemExit, ...)
_RAISABLE = {name: cls for name, cls in vars(builtins).items()
             if isinstance(cls, type) and issubclass(cls, Exception)
             and not issubclass(cls, (StopIteration, StopAsyncIteration))}


class _ProgramConnection:
    """The test process's end of the proxy: one request, one reply, in order, each reply checked."""

    def __init__(self, out_fd, in_fd):
        self.out_fd, self.in_fd = out_fd, in_fd
        self.seq = 0
        self.begun = False  # the worker has had "begin" (after it, a set-up failure is an import error)
        self.unverifiable = None  # why the current test cannot be verified, once something failed to cross

    def receive(self):
        try:
            msg = read_frame(self.in_fd, REPLY_LIMIT)
        except (ValueError, RecursionError, MemoryError, OSError):
            raise CandidateError(["ProtocolError"]) from None
        if msg is None:
            raise CandidateError(["ProcessExit"])
        if type(msg) is not dict:
            raise CandidateError(["ProtocolError"])
        return msg

    def request(self, msg):
        self.seq += 1
        msg["q"] = self.seq
        try:
            write_frame(self.out_fd, msg)
        except OSError:
            raise CandidateError(["ProcessExit"]) from None
        reply = self.receive()
        if reply.get("r") != self.seq:
            raise CandidateError(["ProtocolError"])
        error = reply.get("error")
        if error is not None:
            names = [n[:200] for n in error[:16] if type(n) is str] if type(error) is list else []
            # the program's exception as the nearest built-in class in its MRO (a subclass of ValueError is
            # caught by `except ValueError`); a forged name ("forged:ValueError") is no built-in
            cls = next((_RAISABLE[n] for n in names if n in _RAISABLE), None)
            try:
                exc = cls("raised by the program") if cls is not None else None
            except Exception:  # a class that needs other arguments (UnicodeDecodeError, ...)
                exc = None
            raise exc if exc is not None else CandidateError(names or ["ProtocolError"])
        if reply.get("unencodable") is not None:
            self.unverifiable = "UnencodableValue:" + str(reply["unencodable"])[:100]
            raise Unverifiable(self.unverifiable)
        return reply

    def literal(self, reply):
        try:
            return decode_literal(reply.get("value"), REPLY_LIMIT)
        except LiteralError:
            raise CandidateError(["ProtocolError"]) from None

    def call(self, name, args, kwargs):
        try:
            text = encode_value((args, kwargs))
        except Unencodable as u:
            self.unverifiable = "UnencodableArgument:" + str(u)[:100]
            raise Unverifiable(self.unverifiable) from None
        return self.literal(self.request({"op": "call", "name": name, "args": text}))

    def lookup(self, name):
        reply = self.request({"op": "lookup", "name": name})
        kind = reply.get("kind")
        if kind == "missing":
            raise KeyError(name)
        if kind == "callable":
            return _Proxy(self, name)
        if kind == "value":
            return self.literal(reply)
        module = reply.get("module")
        if kind == "module" and type(module) is str:
            if name in (module, module.rpartition(".")[2]) and module != "__main__":
                try:  # the same module, imported here (`sys` is sys): the program's module objects never cross
                    __import__(module)
                    return sys.modules[module]
                except BaseException:
                    pass
            self.unverifiable = "UnencodableValue:module"  # another module under this name: a live object
            raise Unverifiable(self.unverifiable)
        raise CandidateError(["ProtocolError"])


class _Proxy:
    """A callable of the program's, as the test code sees it: calling it is a call across the boundary."""

    __slots__ = ("_connection", "_name")

    def __init__(self, connection, name):
        self._connection, self._name = connection, name

    def __call__(self, *args, **kwargs):
        return self._connection.call(self._name, args, kwargs)

    def __getattr__(self, attr):  # anything but a call would need the program's object itself
        self._connection.unverifiable = f"UnencodableValue:attribute {attr}"
        raise Unverifiable(self._connection.unverifiable)

    def __repr__(self):
        return f"<program function {self._name}>"


class _TestNamespace(dict):
    """The test code's globals: its own names first, then built-ins, then the program's names through the proxy
    (looked up once each)."""

    def __init__(self, connection):
        super().__init__(__builtins__=builtins, __name__="__test__")
        self.connection = connection

    def __missing__(self, name):
        if name in builtins.__dict__:
            raise KeyError(name)
        value = self.connection.lookup(name)
        self[name] = value
        return value


def _arrange_fds(fds):
    """Put ``fds`` on 3, 4, ... in order (whatever numbers they have now) and close every other fd above 2."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 64 + len(fds)) for fd in fds]
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)
        os.set_inheritable(3 + i, False)
    os.closerange(3 + len(fds), 1 << 20)


def test_main(req, result_fd, call_fd, reply_fd, code_fd, start, rlimits, uid, workdir):
    """The test process. Never returns. Reads the code tests from ``code_fd``, waits for the program child to
    load, runs the tests from ``start`` on and sends one result frame each to the worker."""
    send = write_frame
    try:
        os.setsid()
        _arrange_fds([result_fd, call_fd, reply_fd, code_fd])
        result_fd, conn = 3, _ProgramConnection(4, 5)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        os.chdir(workdir)
        for which, soft, hard in rlimits:
            resource.setrlimit(which, (soft, hard))
        if req.get("cpu_seconds"):
            cpu = int(req["cpu_seconds"])
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/<pid>/mem, fds or environ for anyone
        blob = read_exact(6, int(req["code_bytes"]))
        os.close(6)
        codes = json.loads(blob)
        sys.stdout = sys.stderr = open(1, "w", closefd=False)
        sys.setrecursionlimit(max(1000, int(req.get("recursion_limit", 3000))))
    except BaseException as e:
        try:
            send(3, {"ev": "setup_error", "error": f"{type(e).__name__}: {e}"})
        finally:
            os._exit(0)
    try:
        run_tests(req, codes, conn, start, send)
    except BaseException as e:  # the program broke the protocol before the tests, or the test set-up raised
        try:
            if not conn.begun:
                send(3, {"ev": "begin"})
            send(3, {"ev": "import_error", "error": e.names if isinstance(e, CandidateError) else exception_names(e)})
        except BaseException:
            pass
    os._exit(0)


def run_tests(req, codes, conn, start, send, _perf=time.perf_counter):
    first = conn.receive()
    if first.get("ev") in ("compile_error", "setup_error"):
        # compile errors come before any of the program's code runs; forwarded with the worker's own checks
        error = first.get("error")
        send(3, {"ev": first["ev"], "error": error if first["ev"] == "compile_error" else str(error)[:300]})
        return
    if first.get("ev") != "compiled":
        raise CandidateError(["ProtocolError"])
    send(3, {"ev": "begin"})
    conn.begun = True
    loaded = conn.receive()
    if loaded.get("ev") == "import_error":
        send(3, {"ev": "import_error", "error": loaded.get("error")})
        return
    if loaded.get("ev") != "imported":
        raise CandidateError(["ProtocolError"])
    namespace = _TestNamespace(conn)
    if req.get("test_setup"):
        exec(compile(req["test_setup"], "<test_setup>", "exec"), namespace)
    send(3, {"ev": "imported"})
    tests = req["tests"]
    for i in range(start, len(tests)):
        conn.unverifiable = None
        msg = {"ev": "result", "i": i}
        t0 = _perf()
        try:
            exec(compile(codes[tests[i]["code_index"]], "<test>", "exec"), namespace)
            msg["value"] = "None"
        except Unverifiable:
            pass
        except CandidateError as e:
            msg["error"] = e.names
        except BaseException as e:
            msg["error"] = exception_names(e)
        if conn.unverifiable is not None and "error" not in msg:
            msg.pop("value", None)
            msg["unverifiable"] = conn.unverifiable
        msg["t"] = _perf() - t0
        send(3, msg)


# ------------------------------------------------------------------------------------------------ worker side
class Worker:
    def __init__(self, config):
        self.uid = config.get("uid")
        self.test_uid = config.get("test_uid")
        self.codes = None  # the code tests of the request being served, in wipe-on-fork memory
        # resolved to numbers here, so that children do no name lookups
        self.rlimits = [(getattr(resource, name), value, value + (name == "RLIMIT_CPU"))
                        for name, value in config.get("limits", {}).items()]
        self.frame_limit = int(config.get("frame_limit", 16 << 20))
        self.output_cap = int(config.get("output_cap", 4096))
        self.scratch_root = config.get("scratch_root") or "/tmp/scratch"
        # stdin/stdout tests: output graded up to this many bytes (a digest of it crosses to the trusted side)
        self.io_output_bytes = int(config.get("io_output_bytes", 64 << 20))
        self.retire = False  # a clean-up failed: the pool replaces this worker before its next program
        self.counter = 0
        self.pending = []  # (pid, scratch) of finished children still to reap and clean
        self.own_pid_ns = bool(config.get("own_pid_ns"))
        self.tracing, self.stops_left = False, 1
        if self.uid is not None and os.getuid() != 0:
            self.uid = None  # cannot switch users without privileges: the sandbox is the boundary
        if self.uid is None:
            self.test_uid = None
        os.makedirs(self.scratch_root, exist_ok=True)
        self.scratch_mounted = False
        if config.get("private_mounts"):  # the worker's own mount namespace (bubblewrap, unshare)
            self.scratch_mounted = _mount_tmpfs(self.scratch_root, int(config.get("scratch_bytes") or 0),
                                                int(config.get("scratch_inodes") or 0))
        # multiprocessing's semaphores and shared memory live in /dev/shm: a directory of the capped scratch
        # mount, emptied after every program (bubblewrap links /dev/shm here; see _private_devices for unshare)
        self.shm = os.path.join(self.scratch_root, "shm")
        os.makedirs(self.shm, exist_ok=True)
        os.chmod(self.shm, 0o1777)
        if config.get("private_devices"):
            _private_devices(self.shm)
        if config.get("private_mounts"):
            _drop_capability(_CAP_SYS_ADMIN)  # needed for the mounts above only
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
        except OSError:
            pass
        for path in config.get("python_paths", []):
            sys.path.append(path)
        # modules imported here are inherited by every forked child for free; none of them keeps random or
        # time-derived state, which would be shared by all children and hide nondeterminism
        for name in config.get("preload", []):
            try:
                __import__(name)
            except ImportError:
                pass
        trust_exception_classes([m for m in list(sys.modules.values()) if isinstance(m, type(sys))])
        self.seccomp = bool(config.get("seccomp")) and install_seccomp()
        # The protocol moves off fds 0/1, and the text streams every child will use are made once, on fds 0-2
        # pointing at /dev/null: seekable like the files children get there (measured: 8% less CPU per program)
        self.proto_in, self.proto_out = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.stdio = (open(0, "r", encoding="utf-8", errors="replace", closefd=False),
                      open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False),
                      open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False))
        import gc

        gc.freeze()  # children then never scan (and copy-on-write) the worker's own objects

    def serve(self):
        while True:
            req = read_frame(self.proto_in, 1 << 30)
            if req is None:
                return
            try:
                self.codes = self._read_codes(int(req.get("code_bytes") or 0))
                resp = self.handle(req)
            except Exception as e:  # report, keep serving
                resp = {"status": "sandbox_error", "error": f"{type(e).__name__}: {e}", "tests": []}
            finally:
                self._forget_codes()
            resp["id"] = req.get("id")
            resp["retire"] = self.retire
            write_frame(self.proto_out, resp)
            self._cleanup_pending()  # the last child's teardown overlaps with the trusted side's grading

    def _read_codes(self, n):
        """The code tests' source follows the request frame as ``n`` raw bytes. They go straight into memory
        that every fork sees zeroed (MADV_WIPEONFORK; else not at all, MADV_DONTFORK), and reach a test process
        only through a pipe: no program child can find the expected values of a check in its own memory."""
        if n <= 0:
            return None
        import mmap

        codes = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            codes.madvise(_MADV_WIPEONFORK)
        except OSError:
            codes.madvise(_MADV_DONTFORK)
        view, got = memoryview(codes), 0
        try:
            while got < n:
                k = os.readv(self.proto_in, [view[got:]])
                if k == 0:
                    raise EOFError("request ended inside its code tests")
                got += k
        finally:
            view.release()
        return codes

    def _forget_codes(self):
        if self.codes is not None:
            self.codes.close()
            self.codes = None

    def _start_child(self, req, result_w, scratch, stdin_path, start, outputs):
        """Fork what runs the tests of `req` from test `start` on; returns the pid whose frames the worker reads
        on `result_w`. Call and io tests: one program child. Code tests: a program child serving calls and a
        test process that runs the checks (the proxy harness above)."""
        if not req.get("proxy"):
            pid = os.fork()
            if pid == 0:  # child
                try:
                    child_main(req, result_w, scratch, stdin_path, start, self.rlimits, self.uid, self.stdio, outputs)
                finally:
                    os._exit(0)
            return pid
        calls_r, calls_w = os.pipe()
        replies_r, replies_w = os.pipe()
        codes_r, codes_w = os.pipe()
        workdir = scratch + "-test"  # the test process's cwd: empty, the worker's, read-only to both
        os.mkdir(workdir, 0o755)
        test_pid = os.fork()
        if test_pid == 0:
            try:
                test_main(req, result_w, calls_w, replies_r, codes_r, start, self.rlimits, self.test_uid, workdir)
            finally:
                os._exit(0)
        for fd in (calls_w, replies_r, codes_r):
            os.close(fd)
        program_pid = os.fork()  # after the test process, so a pid newer than its own means a stray to kill
        if program_pid == 0:
            try:
                os.close(codes_w)
                child_main(req, replies_w, scratch, None, start, self.rlimits, self.uid, self.stdio, outputs, calls_r)
            finally:
                os._exit(0)
        os.close(calls_r)
        os.close(replies_w)
        self.pending.append((program_pid, workdir))
        try:
            os.write(codes_w, self.codes) if len(self.codes) <= 65536 else self._write_all(codes_w, self.codes)
        except OSError:  # the test process is gone already: its exit is what the worker reports
            pass
        finally:
            os.close(codes_w)
        return test_pid

    @staticmethod
    def _write_all(fd, data):
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        finally:
            view.release()

    # one request = one program and its tests
    def handle(self, req):
        tests = req["tests"]
        timeouts = req["timeouts"]
        setup_timeout = float(req.get("setup_timeout", 5.0))
        results = [None] * len(tests)
        resp = {"status": "ran", "error": [], "tests": results, "stdout": "", "stderr": ""}
        self.tracing = bool(req.get("trace"))
        # tests that may time out or kill their process before the rest are given up, over the whole program
        # (its stdin/stdout tests included): each costs a fresh child and its set-up
        self.stops_left = int(req.get("max_timeouts") or len(tests) or 1)
        io_idx = [i for i, t in enumerate(tests) if t["kind"] == "io"]
        call_idx = [i for i, t in enumerate(tests) if t["kind"] == "call"]
        code_idx = [i for i, t in enumerate(tests) if t["kind"] == "code"]
        if code_idx and self.codes is None:
            raise ValueError("code tests without their code")
        if code_idx and resp["status"] == "ran":
            # run first: a program that does not compile or load is known from here without a second child
            sub = {**req, "tests": [tests[i] for i in code_idx], "groups": None, "proxy": True, "trace": False}
            sub_results = [None] * len(code_idx)
            self.run_children(sub, [timeouts[i] for i in code_idx], setup_timeout, sub_results, resp, stdin=None)
            for j, i in enumerate(code_idx):
                results[i] = sub_results[j]
            if resp["status"] != "ran":  # the same program fails the same way in a program child
                for i in call_idx:
                    results[i] = {"outcome": "error", "error": resp["error"] or ["NotRun"], "t": 0.0}
                call_idx = []
        if call_idx or (not tests):
            groups = req.get("groups")
            sub = {**req, "tests": [tests[i] for i in call_idx], "groups": groups and [groups[i] for i in call_idx]}
            sub_timeouts = [timeouts[i] for i in call_idx]
            sub_results = [None] * len(call_idx)
            self.run_children(sub, sub_timeouts, setup_timeout, sub_results, resp, stdin=None)
            for j, i in enumerate(call_idx):
                results[i] = sub_results[j]
        for i in io_idx:
            if resp["status"] == "compile_error":
                results[i] = {"outcome": "error", "error": resp["error"], "t": 0.0}
                continue
            if self.stops_left <= 0:
                results[i] = {"outcome": "timeout", "error": ["NotRun"], "t": float("nan")}
                continue
            one = [None]
            sub = {**req, "tests": [tests[i]], "groups": None}
            self.run_children(sub, [timeouts[i]], setup_timeout, one, resp, stdin=tests[i].get("stdin", ""))
            results[i] = one[0]
        return resp

    def run_children(self, req, timeouts, setup_timeout, results, resp, stdin):
        """Run the tests of `req` in forked children, restarting after a test that times out or kills its
        process, until every test has a result."""
        start = 0
        n = len(req["tests"])
        groups = req.get("groups")
        while True:
            start = self.run_child(req, timeouts, setup_timeout, results, resp, start, stdin)
            if start is None:  # the child got through
                break
            self.stops_left -= 1  # the test before `start` timed out or killed its process
            if start >= n:
                break
            if results[start - 1] is None or results[start - 1]["outcome"] != "timeout":
                # the child died during a test: a fresh one resumes at the next, unless that happened too often
                if self.stops_left <= 0:
                    for i in range(start, n):
                        results[i] = {"outcome": "error", "error": ["NotRun"], "t": float("nan")}
                    break
                continue
            # the rest of the group that hung is not run (no groups: every test is its own group); when too many
            # tests hung, nothing more is (it hangs again and again: don't spend a budget on every test)
            skip_to = n if self.stops_left <= 0 else start
            while skip_to < n and groups and groups[skip_to] == groups[start - 1]:
                skip_to += 1
            for i in range(start, skip_to):
                results[i] = {"outcome": "timeout", "error": ["NotRun"], "t": float("nan")}
            start = skip_to
            if start >= n:
                break
        for i in range(n):
            if results[i] is None:
                results[i] = {"outcome": "error", "error": resp["error"] or ["NotRun"], "t": 0.0}

    def run_child(self, req, timeouts, setup_timeout, results, resp, start, stdin):
        """One child from test `start` on. Returns the index to resume at, or None when done."""
        self._cleanup_pending()  # no process of an earlier child may outlive into this one
        self.counter += 1
        scratch = os.path.join(self.scratch_root, str(self.counter))
        os.mkdir(scratch, 0o700)
        stdin_path = None
        if stdin is not None:
            stdin_path = os.path.join(scratch, "stdin")
            with open(stdin_path, "w", encoding="utf-8") as f:
                f.write(stdin)
        if self.uid is not None:
            os.chown(scratch, self.uid, self.uid)
            if stdin_path:
                os.chown(stdin_path, self.uid, self.uid)
        io_mode = stdin is not None
        r, w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:  # every child closes the read ends (child_main and test_main close all fds they do not use)
            pid = self._start_child(req, w, scratch, stdin_path, start, (out_w, err_w))
        finally:
            for fd in (w, out_w, err_w):
                os.close(fd)
        # stdout is graded in stdin/stdout mode only; otherwise both streams are kept for inspection, up to the
        # output cap, and the rest is read and dropped (never an error in the program)
        outputs = _Outputs(out_r, err_r, self.io_output_bytes if io_mode else 4 * self.output_cap, 4 * self.output_cap)
        # Events from the child: "imported" (or a compile/import/set-up error), then one "result" per test in
        # order. The running test is the one after the last result, and its budget starts when that result
        # (or "imported") arrives. In stdin/stdout mode the one test starts at once, set-up included.
        n = len(results)
        if io_mode:
            phase, current = "test", start
            deadline = time.monotonic() + setup_timeout + float(timeouts[start])
        else:
            phase, current = "setup", None
            deadline = time.monotonic() + setup_timeout
        resume = None
        buf = b""
        begun = False  # the child's "begin": the program's own code runs from then on and may write frames too
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._on_timeout(phase, current, results, resp)
                    resume = (current + 1) if phase == "test" else None
                    break
                ready, _, _ = select.select([r, *outputs.open_fds()], [], [], remaining)
                outputs.drain(ready)
                if r not in ready:
                    continue
                chunk = os.read(r, 1 << 16)
                if not chunk:  # the child is gone without finishing, or closed its result pipe
                    self._on_exit(pid, phase, current, results, resp, deadline, outputs)
                    resume = (current + 1) if phase == "test" else None
                    break
                buf += chunk
                while len(buf) >= HEADER.size:
                    (size,) = HEADER.unpack(buf[:HEADER.size])
                    if size > self.frame_limit:
                        raise _ProtocolError("FrameTooLarge")
                    if len(buf) < HEADER.size + size:
                        break
                    msg = json.loads(buf[HEADER.size:HEADER.size + size])
                    buf = buf[HEADER.size + size:]
                    if not isinstance(msg, dict):
                        raise _ProtocolError("BadFrame")
                    ev = msg.get("ev")
                    if ev == "begin" and not begun:
                        begun = True
                        continue
                    if ev in ("compile_error", "setup_error") and not begun and (phase == "setup" or io_mode):
                        resp["status"] = {"setup_error": "sandbox_error"}.get(ev, ev)
                        resp["error"] = _names(msg.get("error"))
                        return None
                    if not begun:
                        raise _ProtocolError("UnexpectedEvent")
                    if ev == "import_error" and (phase == "setup" or io_mode):
                        resp["status"] = ev
                        resp["error"] = _names(msg.get("error"))
                        return None
                    if ev == "imported" and phase == "setup":
                        if start >= n:
                            return None
                        phase, current = "test", start
                        deadline = time.monotonic() + float(timeouts[start])
                    elif ev in ("result", "io_done") and phase == "test":
                        if msg.get("i") != current:
                            raise _ProtocolError("UnexpectedResult")
                        results[current] = self._result_from(msg, outputs if io_mode else None)
                        current += 1
                        if io_mode or current >= n:
                            return None
                        deadline = time.monotonic() + float(timeouts[current])
                    else:
                        raise _ProtocolError("UnexpectedEvent")
        except (_ProtocolError, ValueError, TypeError, RecursionError) as e:
            # the program wrote garbage into its result pipe: it loses the rest of its tests
            name = e.args[0] if isinstance(e, _ProtocolError) else "BadFrame"
            for i in range(len(results)):
                if results[i] is None:
                    results[i] = {"outcome": "error", "error": ["ProtocolError", name], "t": 0.0}
            resume = None
        finally:
            os.close(r)
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            outputs.drain_all()
            self._capture_output(outputs, resp)
            outputs.close()
            self.pending.append((pid, scratch))
        return resume

    def _cleanup_pending(self):
        """Reap the finished children and remove their scratch directories, and empty /dev/shm. Never raises: a
        program may leave anything behind; what cannot be removed is moved aside and the worker asks to be
        replaced (``retire``), so that the next program still starts clean."""
        if not self.pending:
            return
        while self.pending:
            pid, scratch = self.pending.pop()
            self._kill_all(pid)
            if not _remove_scratch(scratch):
                self.retire = True
        try:
            _empty_dir(self.shm)
        except Exception:
            self.retire = True

    def _result_from(self, msg, io_outputs):
        res = {"outcome": "ok", "t": float(msg.get("t") or 0.0)}
        if msg.get("error") is not None:
            res["outcome"] = "error"
            res["error"] = _names(msg.get("error"))
        elif msg.get("unencodable") is not None:
            res["outcome"] = "unencodable"
            res["error"] = [str(msg.get("unencodable"))[:100]]
        elif msg.get("unverifiable") is not None:  # code tests: from the test process
            res["outcome"] = "unverifiable"
            res["error"] = [str(msg.get("unverifiable"))[:100]]
        elif io_outputs is not None:
            io_outputs.drain_all()  # the child flushed before it reported: its whole output is in the pipe
            res.update(io_outputs.graded_stdout())
        else:
            value = msg.get("value")
            if not isinstance(value, str):
                raise _ProtocolError("BadValue")
            res["value"] = value
        for key in ("lines", "arcs"):
            if self.tracing and isinstance(msg.get(key), list):
                res[key] = msg[key]
        return res

    def _on_timeout(self, phase, current, results, resp):
        if phase == "test" and current is not None:
            results[current] = {"outcome": "timeout", "t": float("nan")}
        elif phase == "setup":
            resp["status"] = "import_error"
            resp["error"] = ["Timeout"]

    def _on_exit(self, pid, phase, current, results, resp, deadline, outputs):
        """The result pipe closed. The child normally exits at once; one that closed its pipe and goes on
        running is given until the running test's deadline, like any other test, and is then a timeout."""
        status = _wait_exit(pid, deadline, outputs)
        if status is None:
            self._on_timeout(phase, current, results, resp)
            return
        cause = _exit_cause(status)
        if phase == "test" and current is not None:
            results[current] = {"outcome": "error", "error": [cause], "t": float("nan")}
        elif phase == "setup":
            resp["status"] = "import_error"
            resp["error"] = [cause]

    def _kill_all(self, pid):
        """Kill the child and everything it spawned, then reap. Inside its own pid namespace every process
        but this worker and its ancestors belongs to the program; otherwise the program's uid marks them."""
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.waitpid(pid, 0)  # SIGKILLed: returns promptly
        except ChildProcessError:
            pass
        if self.own_pid_ns and self._last_pid() == pid:
            return  # no process (or thread) was created after the child: it left nothing behind
        for _ in range(1000):
            self._reap()
            strays = self._strays()
            if not strays:
                return
            if self.uid is not None:  # one kill(-1) as the program's uid reaches all of its processes
                killer = os.fork()
                if killer == 0:
                    try:
                        os.setgid(self.uid)
                        os.setuid(self.uid)
                        os.kill(-1, signal.SIGKILL)
                    finally:
                        os._exit(0)
                os.waitpid(killer, 0)
            for p in strays:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.0005)

    @staticmethod
    def _last_pid():
        try:
            fd = os.open("/proc/sys/kernel/ns_last_pid", os.O_RDONLY)
            try:
                return int(os.read(fd, 64))
            finally:
                os.close(fd)
        except (OSError, ValueError):
            return None

    def _strays(self):
        keep = {os.getpid(), os.getppid(), 1}
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in keep:
                continue
            try:
                st = os.stat("/proc/" + name)
            except OSError:
                continue
            if self.own_pid_ns or (self.uid is not None and st.st_uid == self.uid):
                found.append(int(name))
        return found

    def _reap(self):
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _capture_output(self, outputs, resp):
        for name in ("stdout", "stderr"):
            if len(resp[name]) < self.output_cap:
                resp[name] += outputs.text(name)[: self.output_cap - len(resp[name])]


class _ProtocolError(Exception):
    pass


def _names(value):
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v[:200] for v in value[:16]]
    return ["ProtocolError", "BadErrorField"]


class _Outputs:
    """A child's stdout and stderr pipes, drained as they fill: the first ``keep`` bytes of each are kept, the
    rest is read and dropped, so a program never blocks on (or fails at) printing however much it prints."""

    def __init__(self, out_fd, err_fd, stdout_keep, stderr_keep):
        self.fds = {out_fd: "stdout", err_fd: "stderr"}
        self.keep = {"stdout": stdout_keep, "stderr": stderr_keep}
        self.data = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = {"stdout": 0, "stderr": 0}
        for fd in self.fds:
            os.set_blocking(fd, False)

    def open_fds(self):
        return list(self.fds)

    def drain(self, ready, max_reads=64):
        """Read what is there on the ready pipes (at most ``max_reads`` chunks each: a process still writing
        cannot hold the worker here)."""
        for fd in [fd for fd in ready if fd in self.fds]:
            name = self.fds[fd]
            for _ in range(max_reads):
                try:
                    chunk = os.read(fd, 1 << 16)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:  # every writer is gone
                    os.close(fd)
                    del self.fds[fd]
                    break
                room = self.keep[name] - len(self.data[name])
                if room > 0:
                    self.data[name] += chunk[:room]
                self.dropped[name] += max(0, len(chunk) - max(room, 0))

    def drain_all(self):
        self.drain(list(self.fds), max_reads=1024)

    def text(self, name):
        return self.data[name].decode("utf-8", "replace")

    def graded_stdout(self):
        """What the trusted side needs to grade a stdin/stdout test: a digest of the whole normalised output (it
        compares the expected output's digest), whether it outgrew what is graded, and its head to inspect."""
        text = self.text("stdout")
        digest = hashlib.sha256(_normalize_output(text).encode("utf-8", "surrogatepass")).hexdigest()
        return {"stdout": text[:1 << 16], "stdout_sha256": digest, "stdout_truncated": self.dropped["stdout"] > 0}

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = {}


def _normalize_output(text):
    """Exactly ``results.normalize_output`` (this file cannot import the package): trailing spaces and blank
    lines at the end do not count."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _wait_exit(pid, deadline, outputs):
    """The child's wait status once it has exited, or None when it still runs at ``deadline``; its output pipes
    are drained meanwhile (a child blocked on a full pipe would never exit)."""
    delay = 0.0002
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return status
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        fds = outputs.open_fds()
        if fds:
            ready, _, _ = select.select(fds, [], [], min(delay, remaining))
            outputs.drain(ready)
        else:
            time.sleep(min(delay, remaining))
        delay = min(2 * delay, 0.02)


def _remove_scratch(scratch):
    """Remove a program's scratch directory; False when something could not be removed (it is then moved aside,
    so the path is free, and the caller retires the worker). Never raises."""
    try:
        os.unlink(os.path.join(scratch, "stdin"))  # the usual case, without a tree walk: what the worker made
    except OSError:
        pass
    try:
        os.rmdir(scratch)
        return True
    except OSError:  # the program left files behind
        pass
    try:
        _empty_dir(scratch)
        os.rmdir(scratch)
        return True
    except Exception:
        try:
            os.rename(scratch, os.path.join(os.path.dirname(scratch), f".left-{os.path.basename(scratch)}"))
        except OSError:
            pass
        return False


def _empty_dir(path, max_entries=1 << 22):
    """Remove everything inside ``path`` however it is nested, in steps bounded by the number of entries, not
    their depth: each directory's entries are moved up to ``path`` before the emptied directory is removed.
    ``shutil.rmtree`` recurses once per level (1,100 nested directories raised RecursionError and killed the
    worker) and stops at the first directory a program made unreadable. Works relative to directory fds and
    never follows a link out of the tree."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    _make_traversable(path, None)
    top = os.open(path, flags)
    try:
        moved = 0
        while True:
            with os.scandir(top) as it:
                names = [entry.name for entry in it]
            if not names:
                return
            for name in names:
                try:
                    os.unlink(name, dir_fd=top)
                    continue
                except FileNotFoundError:
                    continue
                except OSError:  # a directory (EISDIR), handled below
                    pass
                _make_traversable(name, top)
                sub = os.open(name, flags, dir_fd=top)
                try:
                    with os.scandir(sub) as it:
                        inner = [entry.name for entry in it]
                    for child in inner:
                        for _ in range(100):  # a fresh name at the top (a program may have taken some)
                            moved += 1
                            if moved > max_entries:
                                raise OSError(f"more than {max_entries} entries to remove")
                            try:
                                os.rename(child, f".trl-{moved}", src_dir_fd=sub, dst_dir_fd=top)
                                break
                            except FileNotFoundError:
                                break
                            except OSError:
                                continue
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)


def _make_traversable(name, dir_fd):
    """Give a directory the program made unreadable back to its owner (needed where the worker shares the
    program's uid; as root it reads anything). Links are left alone: chmod would follow them."""
    import stat as _stat

    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if _stat.S_ISDIR(st.st_mode) and (st.st_mode & 0o700) != 0o700:
            os.chmod(name, 0o700, dir_fd=dir_fd)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------- mounts, capabilities
_MS_NOSUID, _MS_NODEV, _MS_BIND = 2, 4, 4096
_CAP_SYS_ADMIN = 21


def _mount_tmpfs(path, size_bytes, inodes):
    """A tmpfs on ``path`` capped in bytes and inodes (bubblewrap's own tmpfs has no inode cap: a program made
    400,000 empty files in 5 s); False where the worker may not mount (a user namespace without the capability)."""
    options = ["mode=0755"] + ([f"size={size_bytes}"] if size_bytes else []) + ([f"nr_inodes={inodes}"] if inodes else [])
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV,
                          ",".join(options).encode()) == 0
    except (OSError, AttributeError):
        return False


def _private_devices(shm):
    """Outside bubblewrap (``unshare``), in the worker's own mount namespace: /dev/shm becomes the capped
    scratch's ``shm`` and no pseudo-terminal can be opened (the host's ptys are a shared, finite pool)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if os.path.isdir("/dev/shm"):
            libc.mount(shm.encode(), b"/dev/shm", None, _MS_BIND, None)
        if os.path.isdir("/dev/pts"):
            libc.mount(b"tmpfs", b"/dev/pts", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=4k,nr_inodes=2,mode=0755")
        if os.path.exists("/dev/ptmx"):
            libc.mount(b"/dev/null", b"/dev/ptmx", None, _MS_BIND, None)
    except (OSError, AttributeError):
        pass


def _drop_capability(cap):
    """Remove ``cap`` from this process's effective and permitted sets (capset(2); it can never come back)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
        if libc.capget(ctypes.byref(header), data) != 0:
            return False
        word, bit = divmod(cap, 32)
        data[word].effective &= ~(1 << bit)
        data[word].permitted &= ~(1 << bit)
        data[word].inheritable &= ~(1 << bit)
        return libc.capset(ctypes.byref(header), data) == 0
    except (OSError, AttributeError):
        return False


def _exit_cause(status):
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {signal.SIGKILL: "Killed", signal.SIGXCPU: "CPUTimeLimit", signal.SIGSEGV: "SegmentationFault",
                signal.SIGXFSZ: "FileSizeLimit"}.get(sig, f"Signal{sig}")
    return "ProcessExit"


def main():
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    Worker(config).serve()


if __name__ == "__main__":
    main()
