"""A warm pool of sandboxed workers: the one way trl_unittest runs untrusted code.

Each worker is a long-lived interpreter inside its own sandbox (``sandbox.py``) that forks a fresh child per
program (``worker.py``), so a program costs a fork rather than an interpreter start. One dispatcher thread per
worker feeds it programs from a shared queue; blocking pipe I/O releases the GIL, so threads are enough. A
worker that dies, hangs past its deadline or breaks the protocol is killed and replaced, and the program it
held gets a ``sandbox_error`` result — never a pass.

Why hand-written: ``concurrent.futures``/``multiprocessing`` pools pickle results (unsafe for data coming out of
a sandbox) and cannot put their workers inside bubblewrap.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import logging
import math
import os
import queue
import select
import signal
import stat
import subprocess
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Sequence

from trl_unittest.execution import sandbox
from trl_unittest.execution.results import (Limits, Program, ProgramResult, grade_program, rejected_result,
                                            request_tests, sandbox_failure)
from trl_unittest.execution.worker import HEADER, TEST_UID_OFFSET
from trl_unittest.tasks import Test

logger = logging.getLogger(__name__)

# Sandbox uids: UID_BASE + n, n < UID_COUNT, each held by one live worker slot on the whole host through an
# exclusive flock on lock file n in UID_LOCK_DIR (released when its pool closes or its process dies, whatever the
# pid namespace: two trainers that are each pid 1 in their own container used to compute the same uids)
UID_BASE, UID_COUNT = 200000, 1 << 16
UID_LOCK_DIR = os.environ.get("TRL_UNITTEST_UID_LOCK_DIR", "/tmp/.trl_unittest-uids")
_uid_cursor = itertools.count(os.getpid() * 64)
# standard-library modules that programs commonly import, loaded once per worker (not random, time-seeded ones)
PRELOAD_MODULES = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing",
                   "decimal", "fractions", "json", "operator", "copy", "array", "textwrap", "unicodedata",
                   "datetime", "dataclasses", "enum", "cmath", "numbers")
_RESPONSE_LIMIT = 64 << 20


class WorkerError(Exception):
    pass


class _WorkerProcess:
    """One sandboxed worker and its framed pipe."""

    def __init__(self, command: list[str], tree_depth: int = 0):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self.fd_out = self.proc.stdout.fileno()
        self.closing = False  # killed by ExecutionPool.close() while running a program
        self.retire_after = False  # the worker asked to be replaced before its next program
        self.tree: list[int] | None = None  # host pids of the sandbox's processes (bwrap's init, the worker)
        self.tree_depth = tree_depth  # how far below the command the worker is (no deeper: programs come and go)

    def request(self, payload: dict, deadline: float, codes: bytes = b"") -> dict:
        """One program: the request frame, then `codes` (the code tests' source, ``payload["code_bytes"]``
        raw bytes that the worker keeps out of program children's memory)."""
        data = json.dumps(payload).encode("utf-8", "surrogatepass")
        try:
            self.proc.stdin.write(HEADER.pack(len(data)) + data + codes)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerError(f"WorkerUnavailable: {e}") from None
        head = self._read(HEADER.size, deadline)
        (size,) = HEADER.unpack(head)
        if size > _RESPONSE_LIMIT:
            raise WorkerError("ResponseTooLarge")
        body = self._read(size, deadline)
        if self.tree is None:  # it answered: every process of the sandbox exists by now
            self.tree = _process_tree(self.proc.pid, self.tree_depth)
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise WorkerError("BadResponse") from None

    def _read(self, n: int, deadline: float) -> bytes:
        chunks = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError("WorkerTimeout")
            ready, _, _ = select.select([self.fd_out], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.fd_out, min(n, 1 << 20))
            if not chunk:
                raise WorkerError("WorkerCrashed")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal_kill(self) -> None:
        """SIGKILL the worker (and its sandbox) without touching the pipes, which a serving thread may be
        reading: it sees end of input and retires the worker itself."""
        if self.tree is None:
            self.tree = _process_tree(self.proc.pid, self.tree_depth)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.kill()
        except OSError:
            pass

    def kill(self) -> None:
        self.signal_kill()
        self._close_pipes()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.error("trl_unittest: worker %d did not exit after SIGKILL", self.proc.pid)
        _await_gone(self.tree or [], timeout=5.0)
        sandbox.reap_orphaned_bwraps()

    def stop(self, timeout: float = 5.0) -> None:
        if self.tree is None:
            self.tree = _process_tree(self.proc.pid, self.tree_depth)
        try:
            self.proc.stdin.close()  # the worker exits on end of input
        except OSError:
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class ExecutionPool:
    """Runs programs against their tests in sandboxed, warm workers.

    >>> with ExecutionPool(num_workers=2) as pool:                     # doctest: +SKIP
    ...     result = pool.run(Program("def add(a, b): return a + b", [Test(expr="add(1, 2)", expected="3")]))
    ...     result.all_passed
    True

    Args:
        num_workers: parallel workers (default: the number of CPU cores available).
        sandbox: ``"auto"`` (bubblewrap, else ``unshare``), ``"bwrap"``, ``"unshare"``, or ``"none"`` (no
            isolation; logs a warning).
        limits: per-program resource limits and time budgets.
        hash_seed: ``PYTHONHASHSEED`` inside the workers (the builder reruns programs under a second seed).
        python_paths: extra import paths made visible read-only (e.g. ``sandbox.site_packages()``: everything
            installed).
        packages: third-party packages programs may import, by top-level name (e.g. ``["numpy"]``): only these
            are mounted, read-only (:func:`sandbox.package_paths`). List their dependencies too.
    """

    def __init__(self, num_workers: int | None = None, sandbox: str = "auto", limits: Limits | None = None,
                 hash_seed: int = 0, python_paths: Sequence[str] = (), packages: Sequence[str] = ()):
        self.limits = limits or Limits()
        self.mode = _resolve(sandbox)
        self.num_workers = num_workers or len(os.sched_getaffinity(0))
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.spec = _spec(tuple(python_paths), tuple(packages))
        self.hash_seed = hash_seed
        self.restarts = 0
        self._queue: queue.Queue = queue.Queue()
        self._busy: dict[int, _WorkerProcess] = {}  # slot -> the worker running a program now
        self._closed = False
        self._lock = threading.Lock()
        self._uid_leases: list[int] = []  # lock fds that hold this pool's uids
        self._threads = []
        for slot in range(self.num_workers):
            uid = None
            if os.geteuid() == 0:
                # a uid of its own per worker: RLIMIT_NPROC counts per uid, and kill(-1) as that uid reaches
                # exactly the program's processes
                uid, lease = _lease_uid()
                self._uid_leases.append(lease)
            thread = threading.Thread(target=self._serve, args=(slot, uid), daemon=True,
                                      name=f"trl_unittest-worker-{slot}")
            self._threads.append(thread)
            thread.start()

    # ------------------------------------------------------------------------------------------------ public
    def submit(self, program: Program) -> "Future[ProgramResult]":
        if self._closed:
            raise RuntimeError("ExecutionPool is closed")
        if not isinstance(program, Program):
            raise TypeError(f"submit() takes a Program, got {type(program).__name__}")
        for i, test in enumerate(program.tests):
            if not isinstance(test, Test):
                raise TypeError(f"Program.tests[{i}] is a {type(test).__name__}, not a trl_unittest.tasks.Test: build "
                                f"tests as Test(...) / Test.from_dict(...), or turn assert statements into tests with "
                                f"trl_unittest.execution.rewrite_asserts")
        future: Future = Future()
        if program.rejected:  # nothing to run
            future.set_running_or_notify_cancel()
            future.set_result(rejected_result(program))
            return future
        self._queue.put((program, future))
        return future

    def run(self, program: Program) -> ProgramResult:
        return self.submit(program).result()

    def run_batch(self, programs: Iterable[Program], progress: bool = False, desc: str = "executing") -> list[ProgramResult]:
        futures = [self.submit(p) for p in programs]
        if progress:
            from tqdm.auto import tqdm

            return [f.result() for f in tqdm(futures, desc=desc, unit="prog")]
        return [f.result() for f in futures]

    async def run_async(self, program: Program) -> ProgramResult:
        return await asyncio.wrap_future(self.submit(program))

    async def run_batch_async(self, programs: Iterable[Program]) -> list[ProgramResult]:
        return list(await asyncio.gather(*(self.run_async(p) for p in programs)))

    def close(self, grace: float = 5.0) -> None:
        """Stop the pool: programs not started yet are cancelled, running ones get ``grace`` seconds to finish
        (then their workers are killed and they end as ``sandbox_error: PoolClosed``), and every worker, process
        and scratch directory is gone when this returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[1].cancel()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in list(self._busy.values()):  # still running a program after the grace period
            worker.closing = True
            worker.signal_kill()
        for thread in self._threads:
            thread.join(timeout=30)
        if not any(thread.is_alive() for thread in self._threads):  # no worker runs as these uids any more
            for lease in self._uid_leases:
                os.close(lease)
            self._uid_leases = []

    def __enter__(self) -> "ExecutionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------------------------------- internals
    def _command(self, uid: int | None) -> list[str]:
        config = {
            "uid": uid,
            # the proxy harness's test processes: a uid no program child of any pool has (see worker.test_main)
            "test_uid": None if uid is None else uid + TEST_UID_OFFSET,
            "limits": self.limits.rlimits(),
            "output_cap": self.limits.output_cap,
            "frame_limit": 8 << 20,
            "own_pid_ns": self.mode in ("bwrap", "unshare"),
            # an allowed package's parent directory goes on sys.path; under bubblewrap only the package is there
            "python_paths": list(dict.fromkeys([*self.spec.python_paths,
                                                *(os.path.dirname(p) for p in self.spec.packages)])),
            "scratch_root": sandbox.SCRATCH_INSIDE if self.mode == "bwrap" else None,
            "preload": list(PRELOAD_MODULES),
            "seccomp": self.mode != "none",
            # a capped tmpfs for scratch and /dev/shm, private devices: only in the worker's own mount namespace
            "private_mounts": self.mode in ("bwrap", "unshare"),
            "private_devices": self.mode == "unshare",  # bubblewrap builds /dev itself (sandbox.py)
            "scratch_bytes": self.spec.tmpfs_bytes,
            "scratch_inodes": self.limits.scratch_inodes,
            "io_output_bytes": self.limits.graded_output_bytes,
        }
        # USER/LOGNAME: getpass.getuser() reads them first (there is no passwd entry for the program's uid)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": str(self.hash_seed),
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox",
               # numeric libraries start a thread per core on import: RLIMIT_NPROC counts threads
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return config, env

    def _spawn(self, uid: int | None) -> _WorkerProcess:
        config, env = self._command(uid)
        if config["scratch_root"] is None:  # outside bubblewrap: a private directory on the host's /tmp
            import tempfile

            config["scratch_root"] = tempfile.mkdtemp(prefix="trl_unittest-")
            os.chmod(config["scratch_root"], 0o755)
        cmd = sandbox.worker_command(self.mode, self.spec, [json.dumps(config)], env)
        worker = _WorkerProcess(cmd, tree_depth={"bwrap": 2, "unshare": 1}.get(self.mode, 0))
        worker.scratch_root = config["scratch_root"] if self.mode != "bwrap" else None
        return worker

    def _serve(self, slot: int, uid: int | None) -> None:
        worker = None
        try:
            worker = self._spawn(uid)
            while True:
                item = self._queue.get()
                if item is None:
                    return
                program, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    if worker is None or not worker.alive() or worker.retire_after:
                        self._retire(worker)
                        worker = self._spawn(uid)
                        self.restarts += 1
                    self._busy[slot] = worker
                    try:
                        result = self._execute(worker, program)
                    finally:
                        self._busy.pop(slot, None)
                except WorkerError as e:
                    logger.info("trl_unittest: worker %d replaced after %s", slot, e)
                    closing = worker.closing
                    self._retire(worker)
                    worker = None
                    result = sandbox_failure(program, "PoolClosed" if closing else str(e).split(":")[0])
                except BaseException as e:  # never leave a caller waiting
                    self._retire(worker)
                    worker = None
                    future.set_exception(e)
                    continue
                future.set_result(result)
        finally:
            if worker is not None:
                worker.stop()
                self._cleanup_scratch(worker)

    def _retire(self, worker: _WorkerProcess | None) -> None:
        if worker is not None:
            worker.kill()
            self._cleanup_scratch(worker)

    @staticmethod
    def _cleanup_scratch(worker: _WorkerProcess) -> None:
        root = getattr(worker, "scratch_root", None)
        if root:
            import shutil

            shutil.rmtree(root, ignore_errors=True)

    def _execute(self, worker: _WorkerProcess, program: Program) -> ProgramResult:
        n = len(program.tests)
        timeouts = list(program.timeouts) if program.timeouts is not None else self.limits.test_timeouts(n)
        if len(timeouts) != n:
            raise ValueError(f"Program has {n} tests but {len(timeouts)} timeouts")
        if program.test_groups is not None and len(program.test_groups) != n:
            raise ValueError(f"Program has {n} tests but {len(program.test_groups)} test groups")
        if program.callees is not None and len(program.callees) != n:
            raise ValueError(f"Program has {n} tests but {len(program.callees)} callees")
        max_timeouts = self.limits.max_timeouts if program.max_timeouts is None else program.max_timeouts
        if max_timeouts < 1:
            raise ValueError(f"max_timeouts must be >= 1, got {max_timeouts}")
        setup = self.limits.setup_timeout
        cpu = math.ceil(setup + sum(timeouts)) + 1
        tests, codes = request_tests(program)
        code_blob = json.dumps(codes).encode("utf-8", "surrogatepass") if codes else b""
        payload = {"code": program.code, "context": program.context, "code_bytes": len(code_blob),
                   "test_setup": program.test_setup, "tests": tests,
                   "timeouts": timeouts, "setup_timeout": setup, "trace": program.trace_lines,
                   "cpu_seconds": cpu, "max_timeouts": max_timeouts, "groups": program.test_groups,
                   "clock_shift": program.clock_shift}
        # worst case: tests time out until max_timeouts, and each restart re-runs the set-up
        worst = sum(sorted(timeouts, reverse=True)[:max_timeouts]) + sum(timeouts)
        deadline = time.monotonic() + worst + setup * (n + 2) + 10.0
        raw = worker.request(payload, deadline, code_blob)
        if not isinstance(raw, dict):
            raise WorkerError("BadResponse")
        if raw.get("retire") is True:  # a program left what its worker could not clean: a fresh one next time
            worker.retire_after = True
        return grade_program(program, raw)


def _lease_uid() -> tuple[int, int]:
    """(a sandbox uid no other live worker on this host holds, the fd whose lock holds it)."""
    os.makedirs(UID_LOCK_DIR, mode=0o700, exist_ok=True)
    st = os.lstat(UID_LOCK_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise RuntimeError(f"{UID_LOCK_DIR} (the sandbox uid locks) must be a directory owned by root and writable by "
                           f"root only; remove it, or set TRL_UNITTEST_UID_LOCK_DIR to another path")
    start = next(_uid_cursor)
    for i in range(UID_COUNT):
        n = (start + i) % UID_COUNT
        fd = os.open(os.path.join(UID_LOCK_DIR, str(n)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return UID_BASE + n, fd
    raise RuntimeError(f"all {UID_COUNT} sandbox uids are held by live workers (lock files in {UID_LOCK_DIR})")


def _process_tree(pid: int, depth: int) -> list[int]:
    """Descendants of ``pid`` to ``depth`` levels (under bubblewrap: its pid namespace's init, then the worker),
    read from /proc; [] where /proc does not list children."""
    found, level = [], [pid]
    for _ in range(depth):
        below = []
        for p in level:
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    below += [int(x) for x in f.read().split()]
            except (OSError, ValueError):
                pass
        found += below
        level = below
    return found


def _await_gone(pids: list[int], timeout: float) -> None:
    """Wait until the sandbox's processes are gone, after the kill. Those that were handed to this process
    (it is pid 1, a container's entry point, or a subreaper) are reaped here: nothing else would, and each
    worker (re)start used to leave a zombie bwrap. Only these known pids are waited for, never any child, so
    the statuses of the caller's own subprocesses are left alone."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        still = []
        for pid in left:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    continue  # reaped: it was ours
            except ChildProcessError:  # not our child: gone, or a zombie its own parent reaps
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                            continue
                except (OSError, IndexError):
                    continue
            still.append(pid)
        left = still
        if left:
            time.sleep(0.005)


def _resolve(mode: str) -> str:
    return sandbox.resolve_mode(mode)


def _spec(python_paths: tuple[str, ...], packages: tuple[str, ...] = ()) -> sandbox.SandboxSpec:
    return sandbox.SandboxSpec(python_paths=python_paths, packages=sandbox.package_paths(packages))
