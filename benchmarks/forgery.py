"""Forgers against every HumanEval and MBPP task, through the reward and through evaluation.

Each forger of `tests/execution/test_proxy.py` (result frames on every fd then exit, frame walking, redefined
helpers, always-equal objects, lying str subclasses, callables, huge returns, killing every process in sight,
patched builtins and harness, forged exception names, a clean exit) is the completion of every task: 164 HumanEval
+ 974 MBPP tasks x 11 forgers. Printed: full passes per forger through `UnitTestReward` (binary scheme) and
through `evaluate_completions` (pass@1 over the forgers as samples), and the references' pass rate in the same
pool as a control. The target is 0 full passes everywhere.

    python benchmarks/forgery.py [--mbpp PATH]
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "execution"))

from test_proxy import FORGERS  # noqa: E402  (the forgers live with their test)

from trl_unittest.data.loaders import default_mbpp_path, load_humaneval, load_mbpp  # noqa: E402
from trl_unittest.evaluation import evaluate_completions  # noqa: E402
from trl_unittest.execution import ExecutionPool, Program  # noqa: E402
from trl_unittest.rewards import UnitTestReward  # noqa: E402
from trl_unittest.tasks import to_dataset  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mbpp", default=None, help="MBPP folder (default: ../shared/data/mbpp or $TRL_UNITTEST_MBPP)")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    mbpp = args.mbpp or default_mbpp_path()
    if mbpp is None:
        print("forgery.py: no MBPP copy found: pass --mbpp PATH or set $TRL_UNITTEST_MBPP", file=sys.stderr)
        return 2
    tasks = load_humaneval(as_dataset=False)
    for split in ("train", "validation", "test", "prompt"):
        tasks += load_mbpp(mbpp, split=split, as_dataset=False)
    names = list(FORGERS)
    t0 = time.perf_counter()
    with ExecutionPool(num_workers=args.workers) as pool:
        refs = pool.run_batch([Program(t.reference, t.tests, context=t.context, test_setup=t.test_setup) for t in tasks])
        reward = UnitTestReward(pool=pool, scheme="binary")
        cols = {"tests": [], "entry_point": [], "context": [], "test_setup": []}
        prompts, completions = [], []
        for t in tasks:
            for body in FORGERS.values():
                prompts.append(t.prompt)
                completions.append(body)
                cols["tests"].append([x.to_dict() for x in t.tests])
                cols["entry_point"].append(t.entry_point)
                cols["context"].append(t.context)
                cols["test_setup"].append(t.test_setup)
        rewards = reward(prompts, completions, **cols)
        report = evaluate_completions(to_dataset(tasks), [list(FORGERS.values())] * len(tasks), k=[1], pool=pool)
    seconds = time.perf_counter() - t0
    by_forger = {n: 0 for n in names}
    for i, r in enumerate(rewards):
        if r > 0:
            by_forger[names[i % len(names)]] += 1
    eval_by_forger = {n: 0 for n in names}
    for row in report.rows:
        for n, ok in zip(names, row["passed"]):
            eval_by_forger[n] += bool(ok)
    print(f"{'forger':<28} {'reward full passes':>18} {'eval full passes':>16}")
    for n in names:
        print(f"{n:<28} {by_forger[n]:>18} {eval_by_forger[n]:>16}")
    figures = {"tasks": len(tasks), "forgers": len(names), "programs": len(tasks) * len(names) * 2,
               "reward_full_passes": sum(by_forger.values()), "eval_full_passes": sum(eval_by_forger.values()),
               "eval_pass@1": report.pass_at_k["pass@1"], "references_passed": sum(r.all_passed for r in refs),
               "references": len(refs), "reference_unverified_tests": sum(r.unverified for r in refs),
               "seconds": round(seconds, 1)}
    print(f"{figures['tasks']} tasks x {figures['forgers']} forgers: reward full passes "
          f"{figures['reward_full_passes']}, evaluation full passes {figures['eval_full_passes']} (target 0); "
          f"references {figures['references_passed']}/{figures['references']}")
    failing = [t.task_id for t, r in zip(tasks, refs) if not r.all_passed]
    if failing:
        print("references that fail under the default limits:", ", ".join(failing))
    print(json.dumps(figures))
    return 0 if figures["reward_full_passes"] == figures["eval_full_passes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
