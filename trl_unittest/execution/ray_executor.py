"""The sandboxed executor on a Ray cluster: ``RayExecutor`` runs programs on Ray actors, each holding a local
``ExecutionPool`` on its node (``pip install 'trl-unittest[ray]'``).

- **Same sandbox, same verdicts**: each actor builds an ``ExecutionPool`` with the driver's sandbox mode, limits,
  hash seed and import paths; the actor is the trusted side on its node (it grades, as the pool always does).
  Programs travel to it and results travel back as JSON text, rebuilt into ``ProgramResult`` on the driver: no
  pickled object crosses from a node that runs untrusted code.
- **Placement**: by default one actor per node, pinned there, with as many sandbox workers as the node has CPUs;
  with ``workers_per_actor=k``, actors of k workers spread over the nodes. Each actor reserves one CPU per worker
  (and as much of ``resource``, when given: start the nodes that may run programs with
  ``ray start --resources '{"sandbox": N}'`` and pass ``resource="sandbox"``).
  Every actor probes the sandbox as it starts; actors on nodes without one are dropped with a warning naming the
  node, and no actor at all is a one-line error.
- **Back-pressure**: programs are cut into batches of ``batch_size`` and each actor holds at most
  ``max_in_flight`` batches (the pool's queue keeps its workers busy while the next batch travels).
- **Exactly once**: a batch whose actor or node dies is re-queued (in front) and run on another actor, and the
  dead actor is replaced; each program's result is taken once, by its index (a second result would be dropped
  and counted in ``stats["duplicates_dropped"]``). A program whose batch was lost ``max_retries`` times ends as
  ``sandbox_error: ExecutorLost`` (counted in ``stats["lost_programs"]``), never as a pass nor a silent gap.

Why hand-written dispatch: Ray's own task retries re-run a whole call without telling the caller which programs
were re-run, and ``ray.util.ActorPool`` has neither per-actor back-pressure nor replacement of dead actors; the
loop below is the small part on top of Ray's actors and ``ray.wait``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import os
import queue
import socket
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Sequence

from trl_unittest.execution.results import Limits, Program, ProgramResult, TestResult, sandbox_failure
from trl_unittest.execution.sandbox import SANDBOX_MODES
from trl_unittest.tasks import Test

logger = logging.getLogger(__name__)

_POLL_S = 0.02  # how often the dispatcher looks for new jobs while batches are in flight


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("RayExecutor needs ray: pip install 'trl-unittest[ray]' (or `pip install ray`)") from None
    return ray


# -------------------------------------------------------------------------------------- plain-data wire format
def program_to_dict(program: Program) -> dict[str, Any]:
    data = {f.name: getattr(program, f.name) for f in dataclasses.fields(Program)}
    data["tests"] = [t.to_dict() for t in program.tests]
    return data


def program_from_dict(data: dict[str, Any]) -> Program:
    data = dict(data)
    data["tests"] = [Test.from_dict(t) for t in data["tests"]]
    return Program(**data)


def result_to_dict(result: ProgramResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def result_from_dict(data: dict[str, Any]) -> ProgramResult:
    test_fields = {f.name for f in dataclasses.fields(TestResult)}
    tests = []
    for t in data["tests"]:
        values = {k: v for k, v in t.items() if k in test_fields}
        if values.get("arcs") is not None:
            values["arcs"] = [tuple(a) for a in values["arcs"]]
        tests.append(TestResult(**values))
    values = {f.name: data[f.name] for f in dataclasses.fields(ProgramResult) if f.name in data}
    values["tests"] = tests
    return ProgramResult(**values)


# ------------------------------------------------------------------------------------------------ the actor
class SandboxActor:
    """The body of one Ray actor: an ``ExecutionPool`` on this node. JSON text in, JSON text out."""

    def __init__(self, num_workers: int, sandbox: str, limits: dict[str, Any], hash_seed: int,
                 python_paths: Sequence[str]):
        from trl_unittest.execution.pool import ExecutionPool
        from trl_unittest.execution.sandbox import SandboxUnavailableError

        self.pool, self.error = None, ""
        try:
            self.pool = ExecutionPool(num_workers=num_workers, sandbox=sandbox, limits=Limits(**limits),
                                      hash_seed=hash_seed, python_paths=tuple(python_paths))
        except SandboxUnavailableError as e:  # reported by ready(): the driver drops this actor
            self.error = str(e)

    def ready(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(),
                "mode": self.pool.mode if self.pool else None, "error": self.error}

    def run(self, payload: str) -> str:
        programs = [program_from_dict(d) for d in json.loads(payload)]
        return json.dumps([result_to_dict(r) for r in self.pool.run_batch(programs)])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


# ------------------------------------------------------------------------------------------ driver-side state
@dataclasses.dataclass
class _Job:
    future: Future
    results: list[ProgramResult | None]
    remaining: int
    on_result: Callable[[], None] | None = None


@dataclasses.dataclass
class _Item:
    job: _Job
    index: int
    program: Program
    payload: dict[str, Any]
    attempts: int = 0


@dataclasses.dataclass(eq=False)  # hashed by identity: a set member
class _Actor:
    handle: Any
    info: dict[str, Any]
    spec: tuple  # (workers, Ray options): how to start a replacement
    in_flight: int = 0


class RayExecutor:
    """Runs programs in sandboxed ``ExecutionPool`` s on the nodes of a Ray cluster; a drop-in for
    ``ExecutionPool`` wherever an :class:`~trl_unittest.execution.executor.Executor` is taken.

    >>> with RayExecutor("auto", resource="sandbox") as executor:             # doctest: +SKIP
    ...     reward = UnitTestReward(executor=executor)

    Args:
        address: the cluster (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``); None: the Ray instance this
            process is connected to, else ``ray.init()``'s default (``$RAY_ADDRESS`` or a local instance).
        workers_per_actor: sandbox workers in each actor's pool (each actor reserves as many CPUs); None: one
            actor per node, pinned to it, with as many workers as the node's CPUs (and ``resource``).
        num_actors: with ``workers_per_actor``: actors to start (default: as many as the nodes allow).
        resource: a custom Ray resource that marks nodes allowed to run programs (None: any node with a sandbox).
        batch_size: programs per Ray call; max_in_flight: batches queued at each actor at most.
        max_retries: how often a program is re-run after its actor or node died before it ends as
            ``sandbox_error: ExecutorLost``.
        sandbox, limits, hash_seed, python_paths: as for ``ExecutionPool``, applied on every node.
        start_timeout: seconds to wait for actors to be scheduled and started.
        init_kwargs: extra arguments of ``ray.init`` (e.g. ``runtime_env``) when this executor connects.
        lazy: connect and start the actors on the first batch rather than now (copies are lazy).
    """

    def __init__(self, address: str | None = None, *, num_actors: int | None = None,
                 workers_per_actor: int | None = None,
                 resource: str | None = None, batch_size: int = 8, max_in_flight: int = 2, max_retries: int = 3,
                 sandbox: str = "auto", limits: Limits | None = None, hash_seed: int = 0,
                 python_paths: Sequence[str] = (), start_timeout: float = 120.0,
                 init_kwargs: dict[str, Any] | None = None, lazy: bool = False):
        if num_actors is not None and workers_per_actor is None:
            raise ValueError("num_actors needs workers_per_actor (without it: one actor per node)")
        for name, value in (("workers_per_actor", workers_per_actor or 1), ("batch_size", batch_size),
                            ("max_in_flight", max_in_flight), ("num_actors", num_actors or 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        if sandbox not in SANDBOX_MODES:
            raise ValueError(f"sandbox must be one of {SANDBOX_MODES}, got {sandbox!r}")
        self._ray = _import_ray()
        self.limits = limits or Limits()
        self.workers_per_actor, self.resource = workers_per_actor, resource
        self.batch_size, self.max_in_flight, self.max_retries = batch_size, max_in_flight, max_retries
        self.start_timeout = start_timeout
        self._actor_args = (sandbox, dataclasses.asdict(self.limits), hash_seed, tuple(python_paths))
        self.stats: Counter = Counter()
        self.skipped: list[str] = []  # actors dropped at start, with their node and reason
        self._config = {"num_actors": num_actors, "workers_per_actor": workers_per_actor, "resource": resource,
                        "batch_size": batch_size, "max_in_flight": max_in_flight, "max_retries": max_retries,
                        "sandbox": sandbox, "limits": self.limits, "hash_seed": hash_seed,
                        "python_paths": tuple(python_paths), "start_timeout": start_timeout,
                        "init_kwargs": init_kwargs}
        self.address, self._num_actors_asked, self.num_actors = address, num_actors, 0
        self._live: set[_Actor] = set()
        self._starting: dict[Any, tuple[Any, float, tuple]] = {}  # ready() ref -> (handle, deadline, spec)
        self._in_flight: dict[Any, tuple[_Actor, list[_Item]]] = {}  # run() ref -> (actor, its items)
        self._queue: deque[_Item] = deque()
        self._inbox: queue.Queue = queue.Queue()
        self._closed, self._owns_ray, self._thread, self._broken = False, False, None, None
        self._lock = threading.RLock()  # submit_batch holds it while a lazy executor starts
        if not lazy:
            self._start()

    def _start(self) -> None:
        """Connect, plan and start the actors, start the dispatcher (at construction, or on first use when
        ``lazy``)."""
        ray = self._ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=self.address, **(self._config["init_kwargs"] or {}))
        self.address = self.address or ray.get_runtime_context().gcs_address
        self._lost_errors = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                             ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError,
                             ray.exceptions.OwnerDiedError, ray.exceptions.OutOfMemoryError,
                             ray.exceptions.LocalRayletDiedError)
        self._remote_actor = ray.remote(SandboxActor)
        try:
            specs = self._plan(self._num_actors_asked)
            self.num_actors = len(specs)
            self._start_actors(specs)
        except BaseException:
            self._shutdown_ray()
            raise
        self._replacements_left = 4 * self.num_actors
        self._thread = threading.Thread(target=self._loop, daemon=True, name="trl_unittest-ray-dispatch")
        self._thread.start()

    # ------------------------------------------------------------------------------------------------ public
    def submit_batch(self, programs: Iterable[Program], on_result: Callable[[], None] | None = None
                     ) -> "Future[list[ProgramResult]]":
        programs = list(programs)
        for i, program in enumerate(programs):
            if not isinstance(program, Program):
                raise TypeError(f"programs[{i}] is a {type(program).__name__}, not a Program")
            if not all(isinstance(t, Test) for t in program.tests):
                raise TypeError(f"programs[{i}].tests must be trl_unittest.tasks.Test objects (see "
                                f"trl_unittest.execution.rewrite_asserts for assert strings)")
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("RayExecutor is closed")
            if self._thread is None:  # lazy: the first batch starts the actors
                self._start()
            if self._broken is not None:
                raise RuntimeError(f"RayExecutor's dispatcher failed ({self._broken!r}): close it and start another")
        if not programs:
            future.set_result([])
            return future
        job = _Job(future, [None] * len(programs), len(programs), on_result)
        self._inbox.put([_Item(job, i, p, program_to_dict(p)) for i, p in enumerate(programs)])
        return future

    def submit(self, program: Program) -> "Future[ProgramResult]":
        one: Future = Future()
        batch = self.submit_batch([program])
        batch.add_done_callback(lambda f: one.set_exception(f.exception()) if f.exception() else
                                one.set_result(f.result()[0]))
        return one

    def run(self, program: Program) -> ProgramResult:
        return self.submit(program).result()

    def run_batch(self, programs: Iterable[Program], progress: bool = False,
                  desc: str = "executing") -> list[ProgramResult]:
        programs = list(programs)
        if not progress:
            return self.submit_batch(programs).result()
        from tqdm.auto import tqdm

        with tqdm(total=len(programs), desc=desc, unit="prog") as bar:
            return self.submit_batch(programs, on_result=lambda: bar.update(1)).result()

    async def run_async(self, program: Program) -> ProgramResult:
        return await asyncio.wrap_future(self.submit(program))

    async def run_batch_async(self, programs: Iterable[Program]) -> list[ProgramResult]:
        return await asyncio.wrap_future(self.submit_batch(programs))

    def actors(self) -> list[dict[str, Any]]:
        """The live actors: pid, node id, host, sandbox mode, batches in flight."""
        with self._lock:
            return [{**a.info, "in_flight": a.in_flight} for a in self._live]

    def close(self, grace: float = 10.0) -> None:
        """Stop: jobs not finished fail with ``RuntimeError``, actors close their pools (then are killed), and
        Ray is shut down if this executor started it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is None:  # never started
            return
        self._inbox.put(None)
        self._thread.join()
        error = RuntimeError("RayExecutor closed before the batch finished")
        for item in list(self._queue) + [i for _, items in self._in_flight.values() for i in items]:
            if not item.job.future.done():
                item.job.future.set_exception(error)
        while True:  # jobs submitted after the loop stopped
            try:
                items = self._inbox.get_nowait()
            except queue.Empty:
                break
            for item in items or []:
                if not item.job.future.done():
                    item.job.future.set_exception(error)
        handles = [a.handle for a in self._live] + [h for h, _, _ in self._starting.values()]
        refs = [a.handle.close.remote() for a in self._live]
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=grace)
        for handle in handles:
            self._ray.kill(handle)
        self._live.clear()
        self._starting.clear()
        self._shutdown_ray()

    def __reduce__(self):
        # a copy (pickle, deepcopy: TRL may copy reward functions) is a new executor with the same settings on
        # the same cluster, started on first use (a copy never used takes no CPUs): actors, threads and queues
        # do not travel
        return _clone, (self.address, self._config)

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- start-up
    def _plan(self, num_actors: int | None) -> list[tuple[int, dict[str, Any]]]:
        """(workers, Ray options) of each actor to start, from the alive nodes' CPUs (and ``resource``), or a
        clear error when no actor fits."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        if self.resource and not any(n["Resources"].get(self.resource, 0) for n in nodes):
            raise RuntimeError(
                f"no node of the Ray cluster has the resource {self.resource!r}: start the nodes that may run "
                f"programs with `ray start --resources '{{\"{self.resource}\": <CPUs>}}'`, or pass resource=None")
        specs = []
        for node in nodes:
            res = node["Resources"]
            cpus = int(min(res.get("CPU", 0), res.get(self.resource, 0) if self.resource else math.inf))
            if self.workers_per_actor is None and cpus >= 1:
                specs.append((cpus, {"scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)}))
            elif self.workers_per_actor is not None:
                specs += [(self.workers_per_actor, {"scheduling_strategy": "SPREAD"})] * (cpus // self.workers_per_actor)
        if not specs:
            need = self.workers_per_actor or 1
            raise RuntimeError(f"no node of the Ray cluster has {need} CPUs"
                               + (f" and {need} of {self.resource!r}" if self.resource else "")
                               + " for one actor" + (": lower workers_per_actor" if need > 1 else ""))
        if num_actors is not None:
            specs = (specs * num_actors)[:num_actors]
        return specs

    def _new_actor(self, spec: tuple[int, dict[str, Any]]):
        workers, placement = spec
        options = {"num_cpus": workers, "max_concurrency": self.max_in_flight + 2, "max_restarts": 0,
                   "max_task_retries": 0, **placement}
        if self.resource:
            options["resources"] = {self.resource: workers}
        return self._remote_actor.options(**options).remote(workers, *self._actor_args)

    def _start_actors(self, specs: list[tuple[int, dict[str, Any]]]) -> None:
        handles = [(self._new_actor(spec), spec) for spec in specs]
        refs = {h.ready.remote(): (h, spec) for h, spec in handles}
        done, pending = self._ray.wait(list(refs), num_returns=len(refs), timeout=self.start_timeout)
        for ref in done:
            self._started(*refs[ref], ref)
        for ref in pending:
            self._ray.kill(refs[ref][0])
            self.skipped.append(f"an actor not scheduled within {self.start_timeout:.0f} s (no free CPUs"
                                + (f" or {self.resource!r}" if self.resource else "") + ")")
        if self.skipped:
            logger.warning("trl_unittest: RayExecutor runs on %d of %d actors; dropped: %s", len(self._live),
                           len(specs), "; ".join(self.skipped))
        if not self._live:
            raise RuntimeError("no Ray actor could start a sandbox: " + "; ".join(self.skipped)
                               + ". Install bubblewrap on the nodes that run programs, and mark them with a custom "
                               "resource (resource=...)")

    def _started(self, handle, spec, ref) -> bool:
        try:
            info = self._ray.get(ref)
        except Exception as e:  # noqa: BLE001 (the actor died while starting: any cause is reported)
            self.skipped.append(f"an actor died while starting: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            self._ray.kill(handle)
            return False
        if info["error"]:
            self.skipped.append(f"node {info['node_id'][:12]} ({info['host']}): {info['error']}")
            self._ray.kill(handle)
            return False
        with self._lock:
            self._live.add(_Actor(handle, {**info, "workers": spec[0]}, spec))
        return True

    # ------------------------------------------------------------------------------------------ dispatch
    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as e:  # a bug here must not leave callers waiting forever
            logger.exception("trl_unittest: RayExecutor's dispatcher failed")
            with self._lock:
                self._broken = e
            self._fail_all(e)
            leftovers = [i for _, items in self._in_flight.values() for i in items]
            while not self._inbox.empty():
                leftovers += self._inbox.get_nowait() or []
            for item in leftovers:
                if not item.job.future.done():
                    item.job.future.set_exception(e)

    def _serve(self) -> None:
        while True:
            idle = not self._in_flight and not self._starting and not self._queue
            try:
                while True:
                    items = self._inbox.get(block=idle, timeout=None if idle else 0)
                    if items is None:
                        return
                    self._queue.extend(items)
                    idle = False
            except queue.Empty:
                pass
            self._dispatch()
            waitables = list(self._in_flight) + list(self._starting)
            if not waitables:
                if self._queue:  # work, and no actor left to run it nor coming
                    self._fail_all(RuntimeError(
                        "every Ray actor of the executor died and none could be replaced: " + "; ".join(self.skipped[-3:])))
                continue
            done, rest = self._ray.wait(waitables, num_returns=1, timeout=_POLL_S)
            if done and rest:
                more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
                done += more
            for ref in done:
                if ref in self._in_flight:
                    self._finish_batch(ref)
                else:
                    handle, _, spec = self._starting.pop(ref)
                    if self._started(handle, spec, ref):
                        logger.info("trl_unittest: RayExecutor replaced a lost actor")
            now = time.monotonic()
            for ref, (handle, deadline, _) in list(self._starting.items()):
                if now > deadline:
                    del self._starting[ref]
                    self._ray.kill(handle)
                    self.skipped.append(f"a replacement actor not scheduled within {self.start_timeout:.0f} s")

    def _dispatch(self) -> None:
        while self._queue:
            free = [a for a in self._live if a.in_flight < self.max_in_flight]
            if not free:
                return
            actor = min(free, key=lambda a: a.in_flight)
            batch: list[_Item] = []
            while self._queue and len(batch) < self.batch_size:
                item = self._queue.popleft()
                if not item.job.future.done():  # a job that already failed needs nothing more
                    batch.append(item)
            if not batch:
                return
            ref = actor.handle.run.remote(json.dumps([item.payload for item in batch]))
            actor.in_flight += 1
            self._in_flight[ref] = (actor, batch)
            self.stats["batches"] += 1

    def _finish_batch(self, ref) -> None:
        actor, items = self._in_flight.pop(ref)
        actor.in_flight -= 1
        try:
            results = [result_from_dict(d) for d in json.loads(self._ray.get(ref))]
        except self._lost_errors as e:
            self._actor_lost(actor, e)
            self._requeue(items)
            return
        except Exception as e:  # noqa: BLE001 (an error of the program set, e.g. mismatched timeouts: the caller's)
            cause = getattr(e, "cause", None) or e
            for item in items:
                if not item.job.future.done():
                    item.job.future.set_exception(cause)
            return
        if len(results) != len(items):
            self._actor_lost(actor, RuntimeError(f"{len(results)} results for {len(items)} programs"))
            self._requeue(items)
            return
        for item, result in zip(items, results):
            self._take(item, result)

    def _take(self, item: _Item, result: ProgramResult) -> None:
        job = item.job
        if job.results[item.index] is not None:
            self.stats["duplicates_dropped"] += 1
            logger.error("trl_unittest: RayExecutor got a second result for one program; dropped")
            return
        job.results[item.index] = result
        job.remaining -= 1
        self.stats["results"] += 1
        if job.on_result is not None:
            job.on_result()
        if job.remaining == 0 and not job.future.done():
            job.future.set_result(job.results)

    def _requeue(self, items: list[_Item]) -> None:
        for item in reversed(items):  # in front, in their order: the oldest work first
            if item.job.future.done():
                continue
            item.attempts += 1
            if item.attempts > self.max_retries:
                self.stats["lost_programs"] += 1
                self._take(item, sandbox_failure(item.program, "ExecutorLost"))
            else:
                self.stats["retried_programs"] += 1
                self._queue.appendleft(item)

    def _actor_lost(self, actor: _Actor, error: BaseException) -> None:
        with self._lock:
            if actor not in self._live:
                return  # already counted (its other batches fail too)
            self._live.discard(actor)
        self.stats["actor_deaths"] += 1
        logger.warning("trl_unittest: RayExecutor lost actor %d on node %s (%s: %s); its batches run elsewhere",
                       actor.info["pid"], actor.info["node_id"][:12], type(error).__name__,
                       str(error).splitlines()[0][:200] if str(error) else "")
        try:
            self._ray.kill(actor.handle)
        except Exception:  # noqa: BLE001 (already gone)
            pass
        if self._replacements_left > 0:
            self._replacements_left -= 1
            handle = self._new_actor(actor.spec)  # pinned to the same node, if it was (a dead node: dropped)
            self._starting[handle.ready.remote()] = (handle, time.monotonic() + self.start_timeout, actor.spec)

    def _fail_all(self, error: BaseException) -> None:
        while self._queue:
            item = self._queue.popleft()
            if not item.job.future.done():
                item.job.future.set_exception(error)

    def _shutdown_ray(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()


def _clone(address: str | None, config: dict[str, Any]) -> RayExecutor:
    return RayExecutor(address, **config, lazy=True)
