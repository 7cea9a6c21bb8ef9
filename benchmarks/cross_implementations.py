"""Correct programs judged wrong, measured with real rewrites: a built task's tests run against the other
implementations of the same function that its package ships (``rotate_v1`` / ``rotate_v2`` / ``rotate_v3``,
``fib_list`` / ``fib_iter``, ``top_sort`` / ``top_sort_recursive``: the PyPI package ``algorithms`` has dozens).

Each is a correct program for the task (the package's authors wrote both to one specification), so every test one
of them fails is a test that can fail a correct completion: a false negative of the reward. The figures split them
by kind: tests that expect an exception, and tests that expect a value (an input outside the contract, or a
specification with several right answers, such as a topological order).

Siblings are paired within one source by name (the same name once variant suffixes such as ``_v2``, ``_iter``,
``_recursive``, ``_optimized``, ``_dp`` are stripped), the same parameter names, and docstrings that say the
same thing (similarity >= ``--min-doc-similarity`` of the text before the examples): the pairs are printed, so that
a person can check them.

    pip install --no-deps --target /tmp/algos algorithms
    trl-unittest build --source /tmp/algos/algorithms --out /tmp/algos-tasks
    python benchmarks/cross_implementations.py /tmp/algos-tasks [more built folders]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import ast
import collections
import difflib
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl_unittest.data.builder import load_tasks  # noqa: E402
from trl_unittest.execution import ExecutionPool, Program  # noqa: E402
from trl_unittest.tasks import Test  # noqa: E402

VARIANT = re.compile(r"(_v\d+|_iter(ative)?\d*|_recur(sive)?|_optimized\d*|_opt|_top_?down|_bottom_?up|_dp|_bfs|_dfs"
                     r"|_naive|_fast|_slow|_memo|_\d+|\d+)$")


def base_name(entry_point: str) -> str:
    while True:
        stripped = VARIANT.sub("", entry_point)
        if stripped == entry_point:
            return entry_point
        entry_point = stripped


def _function(row) -> ast.FunctionDef:
    return next(n for n in ast.walk(ast.parse(row["reference"]))
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == row["entry_point"])


def _spec(row) -> str:
    """The docstring before its examples: what the function promises."""
    return re.split(r"Examples?:|>>>", ast.get_docstring(_function(row)) or "")[0]


def sibling_pairs(rows, min_similarity: float) -> list[tuple[dict, dict, float]]:
    groups = collections.defaultdict(list)
    for r in rows:
        params = tuple(a.arg for a in _function(r).args.args)
        groups[(r["task_id"].split("/")[0], base_name(r["entry_point"]), params)].append(r)
    pairs = []
    for group in groups.values():
        for a in group:
            for b in group:
                if a is b or a["reference"] == b["reference"]:
                    continue
                similarity = difflib.SequenceMatcher(None, _spec(a), _spec(b)).ratio()
                if similarity >= min_similarity:
                    pairs.append((a, b, similarity))
    return pairs


def describe(t: dict) -> str:
    return f"{t['expr'][:60]} " + (f"raises {t['exception']}" if t["op"] == "raises" else f"== {t['expected'][:24]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tasks", nargs="+", type=Path, help="folders written by `trl-unittest build --out`")
    ap.add_argument("--min-doc-similarity", type=float, default=0.6)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    rows = []
    for folder in args.tasks:
        path = folder / "dataset" if (folder / "dataset").is_dir() else folder
        if not path.is_dir():
            print(f"cross_implementations.py: {folder} is not a folder of built tasks (trl-unittest build --out)",
                  file=sys.stderr)
            return 2
        rows += list(load_tasks(path))
    pairs = sibling_pairs(rows, args.min_doc_similarity)
    programs = [Program(b["reference"] + f"\n\n{a['entry_point']} = {b['entry_point']}\n",
                        [Test.from_dict(t) for t in a["tests"]], context=b["context"], test_setup=a["test_setup"])
                for a, b, _ in pairs]
    with ExecutionPool(num_workers=args.workers) as pool:
        results = pool.run_batch(programs)
    tests, failed = collections.Counter(), collections.Counter()
    tasks_failing = set()
    print(f"{'task':<60} {'sibling':<34} {'doc sim':>7}  tests the sibling fails")
    for (a, b, similarity), r in zip(pairs, results):
        bad = ({i for i, t in enumerate(r.tests) if t.outcome != "passed"} if r.status == "ran"
               else set(range(len(a["tests"]))))
        for i, t in enumerate(a["tests"]):
            kind = "raises" if t["op"] == "raises" else "value"
            tests[kind] += 1
            failed[kind] += i in bad
        if bad:
            tasks_failing.add(a["task_id"])
        shown = "; ".join(describe(a["tests"][i]) for i in sorted(bad)[:3]) + (" ..." if len(bad) > 3 else "")
        print(f"{a['task_id'].split('/', 1)[-1][:60]:<60} {b['entry_point'][:34]:<34} {similarity:>7.2f}  "
              f"{len(bad)}/{len(a['tests'])} {shown}")
    figures = {"tasks": len(rows), "pairs": len(pairs), "tasks_in_pairs": len({a["task_id"] for a, _, _ in pairs}),
               "tasks_a_sibling_fails": len(tasks_failing),
               "pairs_failing_some_test": sum(1 for (a, _, _), r in zip(pairs, results)
                                              if r.status != "ran" or not r.all_passed),
               "tests_run": sum(tests.values()), "raises_tests_run": tests["raises"],
               "raises_tests_failed": failed["raises"], "value_tests_run": tests["value"],
               "value_tests_failed": failed["value"]}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
