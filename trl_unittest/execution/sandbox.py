"""How a worker is launched: bubblewrap, ``unshare`` as a fallback, or (explicit opt-in) no isolation.

With bubblewrap the worker sees only what Python needs: the interpreter's install prefix and the system
libraries (read-only), the worker script, an empty ``/tmp`` (size-capped tmpfs, its scratch space), a private
``/proc`` and a minimal ``/dev``. No home directories, no working tree, no ``/etc``, an emptied environment, no
network, its own pid/ipc/uts namespaces, and it dies with the pool. Program children additionally drop to an
unprivileged uid and hard rlimits inside (see ``worker.py``).

``unshare`` gives the namespaces (pid, network, ipc, uts, mount) and the same in-worker limits, but not the
filesystem view: files stay readable as far as the program's uid allows. ``"none"`` runs the worker as a plain
subprocess and logs a warning; use it only for code you trust.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Sequence

logger = logging.getLogger(__name__)

SANDBOX_MODES = ("auto", "bwrap", "unshare", "none")
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
_WORKER_INSIDE = "/opt/trl_unittest/worker.py"


class SandboxUnavailableError(RuntimeError):
    pass


@dataclass
class SandboxSpec:
    """Where the worker's interpreter lives and what else it may read."""

    python: str = field(default_factory=lambda: os.path.realpath(sys.executable))
    prefixes: tuple[str, ...] = field(default_factory=lambda: tuple(sorted({sys.base_prefix, sys.base_exec_prefix})))
    python_paths: tuple[str, ...] = ()  # extra import paths made visible read-only, e.g. a site-packages
    packages: tuple[str, ...] = ()  # directories (or module files) of allowed packages: see package_paths()
    tmpfs_bytes: int = 256 << 20


def _system_binds() -> list[str]:
    args = []
    for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        if not os.path.lexists(path):
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return args


def _parents(path: str) -> list[str]:
    parts = os.path.normpath(path).split(os.sep)[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


SCRATCH_INSIDE = "/tmp/scratch"
_DEVICES = ("null", "zero", "full", "random", "urandom")


def _devices() -> list[str]:
    """A /dev of its own: the harmless character devices, the usual links, and /dev/shm in the scratch tmpfs
    (capped, emptied after each program). No /dev/ptmx or /dev/pts: bubblewrap's ``--dev`` gives a devpts
    instance without a cap, and programs opening ptys took all 3,072 the host had; no program needs one."""
    args = ["--perms", "0755", "--tmpfs", "/dev"]
    for name in _DEVICES:
        args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{fd}", f"/dev/{name}"]
    return args + ["--symlink", "/proc/self/fd", "/dev/fd", "--symlink", f"{SCRATCH_INSIDE}/shm", "/dev/shm"]


def bwrap_command(spec: SandboxSpec, worker_args: list[str], env: dict[str, str]) -> list[str]:
    cmd = ["bwrap", *_system_binds(),
           "--proc", "/proc",
           *_devices(),
           "--size", str(spec.tmpfs_bytes), "--perms", "0755", "--tmpfs", "/tmp"]
    made = set()
    # after the tmpfs on /tmp, so that an interpreter or site-packages that lives under /tmp stays visible
    for path in [p for p in spec.prefixes if not p.startswith("/usr/")] + list(spec.python_paths) + list(spec.packages):
        # parents such as /root would otherwise copy the host's 0700 and lock the program's uid out
        for parent in _parents(path):
            if parent not in made:
                made.add(parent)
                cmd += ["--perms", "0755", "--dir", parent]
        cmd += ["--ro-bind", path, path]
    cmd += [
        "--ro-bind", WORKER_SCRIPT, _WORKER_INSIDE,
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--die-with-parent", "--new-session", "--clearenv",
        "--chdir", "/tmp",
    ]
    if os.getuid() == 0:
        # root inside only to create scratch dirs, switch program children to their uid and kill them
        cmd += ["--cap-drop", "ALL"]
        # CAP_SYS_ADMIN: to mount the capped scratch tmpfs; the worker drops it at once after (worker.py)
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                    "CAP_SYS_ADMIN"):
            cmd += ["--cap-add", cap]
    else:
        cmd += ["--unshare-user"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return cmd + [spec.python, "-s", "-S", "-B", _WORKER_INSIDE, *worker_args]


def unshare_command(spec: SandboxSpec, worker_args: list[str], env: dict[str, str]) -> list[str]:
    flags = ["--fork", "--pid", "--mount-proc", "--net", "--ipc", "--uts", "--kill-child"]
    if os.getuid() != 0:
        flags.append("--map-root-user")
    envs = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return ["unshare", *flags, "--", *envs, spec.python, "-s", "-S", "-B", WORKER_SCRIPT, *worker_args]


def plain_command(spec: SandboxSpec, worker_args: list[str], env: dict[str, str]) -> list[str]:
    envs = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
    return [*envs, spec.python, "-s", "-S", "-B", WORKER_SCRIPT, *worker_args]


@functools.lru_cache(maxsize=None)
def _probe(mode: str) -> str | None:
    """None when `mode` can start a Python here, else the reason it cannot."""
    spec = SandboxSpec()
    build = {"bwrap": bwrap_command, "unshare": unshare_command}[mode]
    exe = "bwrap" if mode == "bwrap" else "unshare"
    if shutil.which(exe) is None:
        return f"`{exe}` is not installed"
    cmd = build(spec, [], {"PATH": "/usr/bin:/bin"})
    cmd = cmd[: cmd.index(spec.python) + 1] + ["-S", "-c", "print('ok')"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{exe} failed to start: {e}"
    finally:
        reap_orphaned_bwraps()
    if out.returncode != 0 or out.stdout.strip() != "ok":
        return f"{exe} failed (exit {out.returncode}): {out.stderr.strip()[:300]}"
    return None


def reap_orphaned_bwraps() -> int:
    """Reap the zombie ``bwrap`` processes handed to this process; returns how many. With ``--unshare-pid`` the
    outer bubblewrap exits without reaping the namespace's init (also a ``bwrap``), which goes to the nearest
    subreaper: nothing happens here unless this process is one, or pid 1 (a container's entry point), where
    each worker (re)start used to leave a zombie for good. Only zombies named bwrap are reaped."""
    import ctypes

    if os.getpid() != 1:
        try:
            flag = ctypes.c_int(0)
            ctypes.CDLL(None).prctl(37, ctypes.byref(flag), 0, 0, 0)  # PR_GET_CHILD_SUBREAPER
            if not flag.value:
                return 0
        except (OSError, AttributeError):
            return 0
    reaped = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            continue
        for pid in children:
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    raw = f.read()
                comm, state = raw[raw.index(b"(") + 1: raw.rindex(b")")], raw.rsplit(b")", 1)[1].split()[0]
                if comm == b"bwrap" and state == b"Z" and os.waitpid(pid, os.WNOHANG)[0]:
                    reaped += 1
            except (OSError, ValueError, IndexError):
                continue
    return reaped


def resolve_mode(mode: str) -> str:
    if mode not in SANDBOX_MODES:
        raise ValueError(f"sandbox must be one of {SANDBOX_MODES}, got {mode!r}")
    if mode == "none":
        logger.warning("trl_unittest: running programs WITHOUT a sandbox (sandbox='none'): only rlimits, a uid "
                       "switch when running as root, and timeouts protect this machine. Use only for trusted code.")
        return mode
    if mode in ("bwrap", "unshare"):
        reason = _probe(mode)
        if reason:
            raise SandboxUnavailableError(f"sandbox={mode!r} is unavailable: {reason}")
        return mode
    reasons = {}
    for candidate in ("bwrap", "unshare"):
        reasons[candidate] = _probe(candidate)
        if reasons[candidate] is None:
            if candidate == "unshare":
                logger.warning("trl_unittest: bubblewrap unavailable (%s); falling back to `unshare` namespaces, "
                               "which do not hide the file system. Install bubblewrap for full isolation.",
                               reasons["bwrap"])
            return candidate
    raise SandboxUnavailableError(
        "no sandbox available: " + "; ".join(f"{k}: {v}" for k, v in reasons.items())
        + ". Install bubblewrap (e.g. `apt-get install bubblewrap`), or pass sandbox='none' to run without "
        "isolation at your own risk.")


def worker_command(mode: str, spec: SandboxSpec, worker_args: list[str], env: dict[str, str]) -> list[str]:
    return {"bwrap": bwrap_command, "unshare": unshare_command, "none": plain_command}[mode](spec, worker_args, env)


def site_packages() -> tuple[str, ...]:
    """The current environment's site-packages, for `SandboxSpec.python_paths` when programs need them."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return tuple(sorted(p for p in paths if os.path.isdir(p)))


def package_paths(names: Sequence[str]) -> tuple[str, ...]:
    """The directories (or single-module files) of the installed packages ``names`` (top-level import names, e.g.
    ``["numpy"]``), each with its ``<name>.libs`` sibling where a wheel put its bundled shared libraries there.
    Under bubblewrap only these are mounted (read-only), not the rest of the environment; list a package's own
    dependencies too. Found without importing anything; a name that is not installed raises one clear error."""
    import importlib.util

    paths = []
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"packages: {name!r} is not a top-level import name (e.g. 'numpy')")
        spec = importlib.util.find_spec(name)
        if spec is None or (spec.origin in (None, "built-in", "frozen") and not spec.submodule_search_locations):
            raise ValueError(f"packages: {name!r} is not installed in this environment ({sys.executable}); install "
                             f"it or drop it from the list")
        if spec.submodule_search_locations:
            path = os.path.realpath(list(spec.submodule_search_locations)[0])
        else:
            path = os.path.realpath(spec.origin)
        paths.append(path)
        libs = os.path.join(os.path.dirname(path), f"{name}.libs")
        if os.path.isdir(libs):
            paths.append(os.path.realpath(libs))
    return tuple(dict.fromkeys(paths))
