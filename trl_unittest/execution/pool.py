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
import itertools
import json
import logging
import math
import os
import queue
import select
import signal
import subprocess
import threading
import time
from concurrent.futures import Future
from typing import Iterable, Sequence

from trl_unittest.execution import sandbox
from trl_unittest.execution.results import (Limits, Program, ProgramResult, grade_program, request_tests,
                                            sandbox_failure)
from trl_unittest.execution.worker import HEADER, TEST_UID_OFFSET
from trl_unittest.tasks import Test

logger = logging.getLogger(__name__)

_pool_counter = itertools.count()
# standard-library modules that programs commonly import, loaded once per worker (not random, time-seeded ones)
PRELOAD_MODULES = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing",
                   "decimal", "fractions", "json", "operator", "copy", "array", "textwrap", "unicodedata",
                   "datetime", "dataclasses", "enum", "cmath", "numbers")
_RESPONSE_LIMIT = 64 << 20


class WorkerError(Exception):
    pass


class _WorkerProcess:
    """One sandboxed worker and its framed pipe."""

    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self.fd_out = self.proc.stdout.fileno()
        self.closing = False  # killed by ExecutionPool.close() while running a program

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
        try:
            return json.loads(self._read(size, deadline))
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

    def stop(self, timeout: float = 5.0) -> None:
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
        python_paths: extra import paths made visible read-only (e.g. ``sandbox.site_packages()``).
    """

    def __init__(self, num_workers: int | None = None, sandbox: str = "auto", limits: Limits | None = None,
                 hash_seed: int = 0, python_paths: Sequence[str] = ()):
        self.limits = limits or Limits()
        self.mode = _resolve(sandbox)
        self.num_workers = num_workers or len(os.sched_getaffinity(0))
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        self.spec = _spec(tuple(python_paths))
        self.hash_seed = hash_seed
        self.restarts = 0
        self._queue: queue.Queue = queue.Queue()
        self._busy: dict[int, _WorkerProcess] = {}  # slot -> the worker running a program now
        self._closed = False
        self._lock = threading.Lock()
        pool_id = next(_pool_counter)
        self._threads = []
        for slot in range(self.num_workers):
            uid = None
            if os.geteuid() == 0:
                # a uid of its own per worker: RLIMIT_NPROC counts per uid, and kill(-1) as that uid reaches
                # exactly the program's processes
                uid = 200000 + (os.getpid() * 64 + pool_id * 8 + slot) % 10_000_000
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
            "python_paths": list(self.spec.python_paths),
            "scratch_root": "/tmp/scratch" if self.mode == "bwrap" else None,
            "preload": list(PRELOAD_MODULES),
            "seccomp": self.mode != "none",
        }
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": str(self.hash_seed),
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"}
        return config, env

    def _spawn(self, uid: int | None) -> _WorkerProcess:
        config, env = self._command(uid)
        if config["scratch_root"] is None:  # outside bubblewrap: a private directory on the host's /tmp
            import tempfile

            config["scratch_root"] = tempfile.mkdtemp(prefix="trl_unittest-")
            os.chmod(config["scratch_root"], 0o755)
        cmd = sandbox.worker_command(self.mode, self.spec, [json.dumps(config)], env)
        worker = _WorkerProcess(cmd)
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
                    if worker is None or not worker.alive():
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
                   "cpu_seconds": cpu, "max_timeouts": max_timeouts, "groups": program.test_groups}
        # worst case: tests time out until max_timeouts, and each restart re-runs the set-up
        worst = sum(sorted(timeouts, reverse=True)[:max_timeouts]) + sum(timeouts)
        deadline = time.monotonic() + worst + setup * (n + 2) + 10.0
        raw = worker.request(payload, deadline, code_blob)
        if not isinstance(raw, dict):
            raise WorkerError("BadResponse")
        return grade_program(program, raw)


def _resolve(mode: str) -> str:
    return sandbox.resolve_mode(mode)


def _spec(python_paths: tuple[str, ...]) -> sandbox.SandboxSpec:
    return sandbox.SandboxSpec(python_paths=python_paths)
