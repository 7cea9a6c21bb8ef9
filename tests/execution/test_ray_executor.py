"""RayExecutor on a Ray cluster simulated on this machine: two nodes with a sandbox (1 CPU each, marked with the
custom resource ``sandbox``) and a third node whose PATH has neither bubblewrap nor unshare (no sandbox).

One module-scoped cluster (Ray's start-up is the slow part); each test starts its own executor on it. Checked:
the same verdicts, rewards and pass@k as the local pool on MBPP references and mutants; placement (probe, custom
resource, clear errors); an actor SIGKILLed mid-batch with its programs re-run, none lost, none counted twice;
fork and memory bombs contained on each node. Skipped when ``ray`` is not installed or no sandbox is available.
"""

import argparse
import ast
import asyncio
import json
import os
import pickle
import signal
import sys
import time

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from trl_unittest.execution import Limits, Program  # noqa: E402
from trl_unittest.execution.executor import Executor  # noqa: E402
from trl_unittest.execution.ray_executor import (RayExecutor, program_from_dict, program_to_dict,  # noqa: E402
                                                 result_from_dict, result_to_dict)
from trl_unittest.execution.results import ProgramResult, TestResult  # noqa: E402
from trl_unittest.tasks import Test  # noqa: E402

try:
    from trl_unittest.execution.sandbox import resolve_mode

    resolve_mode("auto")
    HAVE_SANDBOX = True
except Exception:  # noqa: BLE001
    HAVE_SANDBOX = False

NODE = {"num_cpus": 1, "object_store_memory": 80 << 20}
LIMITS = Limits(test_timeout=1.0, setup_timeout=3.0)  # the conftest pool's limits: verdicts comparable


@pytest.fixture(scope="module")
def cluster():
    if not HAVE_SANDBOX:
        pytest.skip("no sandbox (bubblewrap/unshare) on this machine")
    if ray.is_initialized():  # another module's local Ray
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False, "resources": {"sandbox": 1}})
    c.add_node(**NODE, resources={"sandbox": 1})
    c.add_node(**NODE, env_vars={"PATH": "/nonexistent"}, resources={"plain": 1})  # no bwrap, no unshare
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def sandbox_nodes():
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("sandbox")}


def verdicts(results):
    """Everything a verdict is made of (not timings nor captured output)."""
    return [(r.status, r.error, r.unverified, [(t.outcome, t.error_type, t.observed) for t in r.tests])
            for r in results]


def test_wire_format_round_trip_and_protocol(pool):
    program = Program("def f(x): return x", [Test(expr="f(1)", expected="1"), Test(kind="io", stdin="a", expected="a")],
                      context="import math", timeouts=[0.5, 0.5], trace_lines=True, max_timeouts=1, test_groups=[0, 1])
    assert program_from_dict(json.loads(json.dumps(program_to_dict(program)))) == program
    result = ProgramResult("ran", [TestResult("passed", observed="1", time=float("nan"), lines=[1, 2],
                                              arcs=[(1, 2), (2, -1)], exception_names=["E"])], stdout="\udcff")
    back = result_from_dict(json.loads(json.dumps(result_to_dict(result))))
    assert back.tests[0].arcs == [(1, 2), (2, -1)] and back.stdout == "\udcff"
    assert verdicts([back]) == verdicts([result]) and back.tests[0].lines == [1, 2]
    assert isinstance(pool, Executor)  # the local pool satisfies the protocol as is


def test_placement_probe_resource_and_errors(cluster):
    # default placement: one actor pinned to each node; the node without a sandbox is named and dropped
    with RayExecutor(limits=LIMITS) as executor:
        assert isinstance(executor, Executor)
        assert executor.num_actors == 3 and len(executor.actors()) == 2
        assert {a["node_id"] for a in executor.actors()} == sandbox_nodes()
        assert len(executor.skipped) == 1 and "not installed" in executor.skipped[0]
        assert [r.all_passed for r in executor.run_batch(
            [Program(f"def f(): return {i}", [Test(expr="f()", expected="1")]) for i in range(3)])] == \
            [False, True, False]
    with pytest.raises(RuntimeError, match="no Ray actor could start a sandbox: node .*`bwrap` is not installed"):
        RayExecutor(resource="plain")  # only the node without a sandbox
    with pytest.raises(RuntimeError, match="no node of the Ray cluster has the resource 'gpu_free'"):
        RayExecutor(resource="gpu_free")
    with pytest.raises(RuntimeError, match="has 4 CPUs .* lower workers_per_actor"):
        RayExecutor(workers_per_actor=4, resource="sandbox")
    with pytest.raises(ValueError, match="batch_size must be a whole number"):
        RayExecutor(batch_size=0)
    with pytest.raises(ValueError, match="num_actors needs workers_per_actor"):
        RayExecutor(num_actors=2)


def _mbpp_variants(n_tasks=10):
    from trl_unittest.data.loaders import default_mbpp_path, load_mbpp
    from trl_unittest.data.mutation import generate_mutants

    if default_mbpp_path() is None:
        pytest.skip("no local MBPP copy")
    tasks = load_mbpp(split="test", as_dataset=False)[:n_tasks]
    completions = []
    for task in tasks:
        variants = [task.reference]
        func = next(node for node in ast.parse(task.reference).body
                    if isinstance(node, ast.FunctionDef) and node.name == task.entry_point)
        func_src = ast.get_source_segment(task.reference, func)
        for mutant in generate_mutants(func_src, task.entry_point, max_mutants=2):
            variants.append(task.reference.replace(func_src, mutant.source.replace(mutant.name, task.entry_point)))
        variants.append("def " + task.entry_point + "(*args):\n    return undefined_name\n")
        completions.append([f"```python\n{v}\n```" for v in variants[:4]])
    return tasks, completions


def test_same_verdicts_rewards_and_pass_at_k_as_the_local_pool(cluster, pool):
    from trl_unittest.evaluation import evaluate_completions
    from trl_unittest.rewards import AsyncUnitTestReward, UnitTestReward
    from trl_unittest.tasks import to_dataset

    tasks, completions = _mbpp_variants()
    ds = to_dataset(tasks)
    with RayExecutor(workers_per_actor=1, resource="sandbox", limits=pool.limits, batch_size=4) as executor:
        remote = evaluate_completions(ds, completions, k=(1, 2), pool=executor)
        local = evaluate_completions(ds, completions, k=(1, 2), pool=pool)
        assert remote.pass_at_k == local.pass_at_k and 0 < local.pass_at_k["pass@1"] < 1
        assert [r["status"] for r in remote.rows] == [r["status"] for r in local.rows]
        assert [r["passed"] for r in remote.rows] == [r["passed"] for r in local.rows]

        flat = [(t, c) for t, cs in zip(tasks, completions) for c in cs]
        cols = {"tests": [[x.to_dict() for x in t.tests] for t, _ in flat],
                "entry_point": [t.entry_point for t, _ in flat]}
        prompts, comps = [t.prompt for t, _ in flat], [c for _, c in flat]
        by_ray = UnitTestReward(executor=executor)
        by_pool = UnitTestReward(pool=pool)
        programs = by_pool.programs(prompts, comps, **cols)
        assert verdicts(executor.run_batch(programs)) == verdicts(pool.run_batch(programs))
        expected = by_pool(prompts, comps, **cols)
        assert by_ray(prompts, comps, **cols) == expected and len(set(expected)) >= 3
        assert asyncio.run(AsyncUnitTestReward(executor=executor)(prompts, comps, **cols)) == expected
        assert executor.stats["results"] == 3 * len(programs) + len(programs)  # evaluate, run_batch, 2 rewards
        assert executor.stats["retried_programs"] == 0 and len({a["node_id"] for a in executor.actors()}) == 2

        with pytest.raises(ValueError, match="not both"):
            UnitTestReward(pool=pool, executor=executor)
        copy = pickle.loads(pickle.dumps(by_ray))  # a copy gets its own executor: same settings, started on use
        assert isinstance(copy.pool, RayExecutor) and copy.pool is not executor and copy.pool.actors() == []
        assert copy.pool.resource == "sandbox" and copy.pool.limits == pool.limits
    try:  # the original's actors are gone: the copy's start on its first batch
        assert copy(prompts[:4], comps[:4], **{k: v[:4] for k, v in cols.items()}) == expected[:4]
        assert len(copy.pool.actors()) == 2
    finally:
        copy.close()
    assert copy._pool is None


def _alive(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


SLOW = "import time\ndef f(x):\n    time.sleep(0.25)\n    return x + x % 2\n"


def test_actor_killed_mid_batch_reruns_its_programs_exactly_once(cluster):
    import psutil

    programs = [Program(SLOW, [Test(expr=f"f({i})", expected=str(i)), Test(expr=f"f({i}) * 0", expected="0")])
                for i in range(16)]
    with RayExecutor(resource="sandbox", limits=LIMITS, batch_size=3, max_in_flight=1) as executor:
        future = executor.submit_batch(programs)
        deadline = time.monotonic() + 30
        while not any(a["in_flight"] for a in executor.actors()):
            assert time.monotonic() < deadline, "no batch was dispatched"
            time.sleep(0.02)
        time.sleep(0.2)  # the batch is running in the actor's pool
        victim = next(a for a in executor.actors() if a["in_flight"])
        sandboxes = psutil.Process(victim["pid"]).children(recursive=True)
        assert sandboxes, "the actor's pool has no worker processes"
        os.kill(victim["pid"], signal.SIGKILL)
        results = future.result(timeout=120)

        assert len(results) == len(programs)
        for i, r in enumerate(results):  # each result is its own program's: f(i) is observed, not another's
            assert r.status == "ran" and r.tests[0].observed == str(i + i % 2)
            assert r.all_passed == (i % 2 == 0)
        stats = executor.stats
        assert stats["actor_deaths"] == 1 and stats["retried_programs"] >= 1
        assert stats["results"] == len(programs) and stats["duplicates_dropped"] == 0 and stats["lost_programs"] == 0
        assert victim["pid"] not in {a["pid"] for a in executor.actors()}
        gone = time.monotonic() + 15  # the dead actor's sandboxes die with it (bubblewrap --die-with-parent)
        while any(_alive(p) for p in sandboxes):
            assert time.monotonic() < gone, "sandbox processes outlived their actor"
            time.sleep(0.1)
        deadline = time.monotonic() + 60  # the lost actor is replaced: the executor is back to two actors
        while len(executor.actors()) < 2:
            assert time.monotonic() < deadline, f"no replacement actor: {executor.skipped}"
            time.sleep(0.1)
        again = executor.run_batch(programs[:4])
        assert [r.all_passed for r in again] == [True, False, True, False]


BOMBS = {
    "fork_bomb": "import os\ndef solve(i):\n    while True:\n        try: os.fork()\n        except OSError: pass",
    "thread_bomb": "import threading, time\ndef solve(i):\n    while True:\n        threading.Thread(target=time.sleep, "
                   "args=(100,)).start()",
    "memory_bomb": "def solve(i):\n    return len(bytearray(1 << 34))",
    "memory_bomb_gradual": "def solve(i):\n    a = []\n    while True: a.append(' ' * (1 << 20))",
}


@pytest.mark.hostile
def test_fork_and_memory_bombs_are_contained_on_each_node(cluster):
    limits = Limits(test_timeout=1.0, setup_timeout=2.0, memory_bytes=512 << 20, file_size_bytes=1 << 20)
    tests = [Test(expr="solve(0)", expected="123456789013")]
    bombs = [Program(src, tests) for src in BOMBS.values() for _ in range(2)]  # each bomb on both nodes
    honest = [Program(f"def solve(i): return {v}", tests) for v in (123456789013, 0, 123456789013, 1)]
    with RayExecutor(workers_per_actor=1, resource="sandbox", limits=limits, batch_size=1) as executor:
        before = {a["pid"] for a in executor.actors()}
        assert len({a["node_id"] for a in executor.actors()}) == 2
        results = executor.run_batch(bombs)
        assert not any(r.all_passed for r in results)
        assert [r.all_passed for r in executor.run_batch(honest)] == [True, False, True, False]
        assert {a["pid"] for a in executor.actors()} == before and executor.stats["actor_deaths"] == 0


def test_eval_cli_on_ray_matches_the_local_pool(cluster, tmp_path, capsys):
    from trl_unittest.evaluation import add_eval_parser
    from trl_unittest.tasks import Task, to_dataset
    from trl_unittest.trainer.tiny import build_model

    model_dir = build_model(tmp_path / "m", "llama")
    tasks = [Task(f"toy/{i}", f"def f{i}(x):\n    \"\"\"Return x + {i}.\"\"\"\n", f"f{i}",
                  [Test(expr=f"f{i}(1)", expected=str(1 + i))]) for i in range(3)]
    to_dataset(tasks).to_json(str(tmp_path / "t.jsonl"), lines=True)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    common = ["eval", "--model", model_dir, "--dataset", str(tmp_path / "t.jsonl"), "--k", "1",
              "--max-new-tokens", "8", "--device", "cpu"]
    summaries = []
    for extra in ([], ["--ray", cluster.address, "--ray-resource", "sandbox"]):
        args = parser.parse_args(common + extra + ["--out", str(tmp_path / f"res{len(summaries)}.jsonl")])
        assert args.func(args) == 0
        summaries.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert summaries[0]["pass_at_k"] == summaries[1]["pass_at_k"] and summaries[0]["num_tasks"] == 3
    rows = [[json.loads(line)["status"] for line in open(tmp_path / f"res{i}.jsonl")] for i in range(2)]
    assert rows[0] == rows[1]
    args = parser.parse_args(common + ["--ray", cluster.address, "--ray-resource", "nowhere"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no node of the Ray cluster has the resource 'nowhere'" in err and len(err.splitlines()) == 1


def test_missing_ray_is_one_clear_line(monkeypatch, capsys):
    from trl_unittest.evaluation import add_eval_parser

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'trl-unittest\[ray\]'"):
        RayExecutor()
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--model", "m", "--dataset", "humaneval", "--ray", "auto", "--device", "cpu"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trl-unittest[ray]" in err[0]
