"""An `evaluate` metric for pass@k with sandboxed execution: a drop-in for the Hub's `code_eval`, loadable offline.

    >>> import evaluate
    >>> from trl_unittest.metrics import PASS_AT_K_PATH
    >>> metric = evaluate.load(PASS_AT_K_PATH)  # a local folder: nothing is downloaded
    >>> scores, results = metric.compute(predictions=[["def f(x):\\n    return x\\n"]],
    ...                                  references=["assert f(1) == 1"], k=[1])
    >>> scores
    {'pass@1': 1.0}

Same inputs and outputs as `code_eval`: ``predictions`` is a list (one per task) of candidate programs,
``references`` the tests of each task as assert code. Unlike `code_eval` the candidates run in
`trl_unittest.execution`'s sandboxed pool (no `HF_ALLOW_CODE_EVAL` switch needed), and pass@k is the unbiased
estimator of `trl_unittest.rewards.pass_at_k`.
"""

import datasets
import evaluate

_CITATION = """\
@article{chen2021codex,
  title={Evaluating Large Language Models Trained on Code},
  author={Mark Chen and others},
  year={2021}, eprint={2107.03374}, archivePrefix={arXiv}
}
@article{gorinski2023automatic,
  title={Automatic Unit Test Data Generation and Actor-Critic Reinforcement Learning for Code Synthesis},
  author={Philip John Gorinski and Matthieu Zimmer and Gerasimos Lampouras and Derrick Goh Xin Deik and Ignacio Iacobacci},
  year={2023}, eprint={2310.13669}, archivePrefix={arXiv}
}
"""

_DESCRIPTION = "Unbiased pass@k of candidate programs against assert-style unit tests, run in a sandbox."

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of lists of candidate programs (strings), one list per task.
    references: list of test code (assert statements), one string per task.
    k: k values (default [1, 10, 100]); a k larger than a task's number of candidates is skipped.
    entry_points: optional list of entry-point names (helps rewrite `candidate(...)`-style tests).
    num_workers: sandbox workers (default: CPU cores).
    timeout: seconds per test (default 3.0).
    sandbox: "auto", "bwrap", "unshare" or "none".
Returns:
    (pass_at_k, results): {"pass@k": value} and, per task, a list of {"passed": bool, "result": str} per candidate;
    result is "passed", "timed out", "failed: p/t tests passed" or the program's status (e.g. "compile_error").
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PassAtK(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Value("string"),
            }),
            homepage="https://arxiv.org/abs/2310.13669",
            license="Apache-2.0",
        )

    def _compute(self, predictions, references, k=(1, 10, 100), entry_points=None, num_workers=None, timeout=3.0,
                 sandbox="auto"):
        import math

        from trl_unittest.execution import ExecutionPool, Limits
        from trl_unittest.rewards import UnitTestReward, pass_at_k

        entry_points = list(entry_points) if entry_points is not None else [""] * len(predictions)
        prompts, completions, tests, entries = [], [], [], []
        for cands, ref, entry in zip(predictions, references, entry_points):
            for cand in cands:
                prompts.append("")
                completions.append(cand)
                tests.append(ref)
                entries.append(entry)
        with ExecutionPool(num_workers=num_workers, sandbox=sandbox, limits=Limits(test_timeout=timeout)) as pool:
            reward = UnitTestReward(pool=pool, scheme="binary")
            outcomes = reward.results(prompts, completions, tests=tests, entry_point=entries)
        results, pos = [], 0
        for cands in predictions:
            rs = outcomes[pos: pos + len(cands)]
            pos += len(cands)
            results.append([{"passed": r.all_passed, "result": _verdict(r)} for r in rs])
        scores = {}
        for kk in sorted(set(int(x) for x in k)):
            vals = [pass_at_k(len(rs), sum(r["passed"] for r in rs), kk) for rs in results if len(rs) >= kk]
            if vals and len(vals) == len(results):
                scores[f"pass@{kk}"] = math.fsum(vals) / len(vals)
        return scores, results


def _verdict(r) -> str:
    """One word or phrase per candidate, as `code_eval` reports them: "passed", "timed out" (a test ran out of
    time: an infinite loop is not a wrong answer), "failed: p/t tests passed", or the program's status."""
    if r.all_passed:
        return "passed"
    if r.status != "ran":
        return "timed out" if r.status == "timeout" else r.status
    if any(t.outcome == "timeout" for t in r.tests):
        return "timed out"
    return f"failed: {r.passed}/{r.total} tests passed"
