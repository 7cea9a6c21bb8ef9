"""Evaluation: completion truncation, pass@k against the closed form on hand-made completions of known
correctness, jsonl rows, generation with a tiny model built offline, task sources, the offline `evaluate` metric."""

import json
import math
import types
from pathlib import Path

import pytest

from trl_unittest.code import cut_generation
from trl_unittest.evaluation import (evaluate_completions, evaluate_model, generate_completions, load_task_source,
                                     truncate_completion)
from trl_unittest.rewards import pass_at_k
from trl_unittest.tasks import Task, Test, to_dataset

METRIC_DIR = Path(__file__).resolve().parents[1] / "trl_unittest" / "metrics" / "pass_at_k"


def _tasks():
    return [
        Task("toy/add", "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", "add",
             [Test(expr="add(1, 2)", expected="3"), Test(expr="add(-1, 1)", expected="0")],
             provenance={"source": "toy"}),
        Task("toy/neg", "def neg(x):\n    \"\"\"Return -x.\"\"\"\n", "neg",
             [Test(expr="neg(2)", expected="-2"), Test(expr="neg(0)", expected="0")], provenance={"source": "toy"}),
        Task("other/upper", "def up(s):\n    \"\"\"Return s.upper().\"\"\"\n", "up",
             [Test(expr="up('a')", expected="'A'")], provenance={"source": "other"}),
    ]


RIGHT = {"toy/add": "    return a + b\n", "toy/neg": "    return -x\n", "other/upper": "    return s.upper()\n"}
WRONG = {"toy/add": "    return a - b\n", "toy/neg": "    return x\n", "other/upper": "    return s\n"}
BROKEN = "    return (\n"
HANGS = "    while True:\n        pass\n"


def test_truncate_at_first_top_level_line():
    assert truncate_completion("    return 1\n\ndef g():\n    pass\n") == "    return 1\n"
    assert truncate_completion("    x = 1\n    return x\nprint(g())") == "    x = 1\n    return x\n"
    assert truncate_completion("    return 1\n") == "    return 1\n"  # nothing to cut: unchanged
    assert truncate_completion("    return 1\n# trailing comment") == "    return 1\n"
    # blank lines and indented lines do not cut; a prompt ending mid-line keeps the first line
    assert truncate_completion("    a = 1\n\n    return a\nx = 2") == "    a = 1\n\n    return a\n"
    assert truncate_completion("x + 1\nfoo()", continues_line=True) == "x + 1\n"


def test_pass_at_k_matches_closed_form(pool, tmp_path):
    """Per task: n=10 samples of which c are right (the rest wrong, broken or hanging): the report gives
    1 - C(n-c, k)/C(n, k) for each task and its mean overall."""
    tasks = _tasks()
    correct = {"toy/add": 3, "toy/neg": 0, "other/upper": 10}
    completions = []
    for t in tasks:
        c = correct[t.task_id]
        bad = [WRONG[t.task_id], BROKEN, HANGS] * 4
        completions.append([RIGHT[t.task_id]] * c + bad[: 10 - c])
    out = tmp_path / "rows.jsonl"
    report = evaluate_completions(to_dataset(tasks), completions, k=(1, 5, 10, 20), pool=pool, out_jsonl=out)
    assert set(report.pass_at_k) == {"pass@1", "pass@5", "pass@10"}  # k=20 > n dropped
    for k in (1, 5, 10):
        expected = [1 - math.comb(10 - correct[t.task_id], k) / math.comb(10, k) for t in tasks]
        for row, e in zip(report.rows, expected):
            assert row[f"pass@{k}"] == pytest.approx(e, abs=1e-12)
        assert report.pass_at_k[f"pass@{k}"] == pytest.approx(sum(expected) / 3, abs=1e-12)
    assert report.pass_at_k["pass@1"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)
    assert report.by_source["toy"]["pass@1"] == pytest.approx(0.15)
    assert report.by_source["other"]["pass@1"] == pytest.approx(1.0)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == [t.task_id for t in tasks]
    assert [r["correct"] for r in rows] == [3, 0, 10]
    assert all(r["n"] == 10 and len(r["completions"]) == 10 and len(r["passed"]) == 10 for r in rows)
    assert rows[0]["passed"][:3] == [True] * 3 and not any(rows[0]["passed"][3:])
    assert "compile_error" in rows[0]["status"]  # the broken sample is labelled


def test_pass_at_k_estimator_closed_form():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_callable_model_and_truncation(pool):
    """A callable "model": completions run past the function; evaluation cuts them at the next top-level line."""
    tasks = _tasks()

    def fake(prompts, n):
        out = []
        for p in prompts:
            name = p.split("(")[0].split()[-1]
            body = {"add": RIGHT["toy/add"], "neg": WRONG["toy/neg"], "up": RIGHT["other/upper"]}[name]
            out.append([body + "\nassert False\nraise SystemExit(1)\n"] * n)
        return out

    report = evaluate_model(fake, to_dataset(tasks), n=2, k=(1,), pool=pool, progress=False)
    assert [r["correct"] for r in report.rows] == [2, 0, 2]
    assert report.rows[0]["completions"][0] == RIGHT["toy/add"]


def test_callable_model_whole_answers_are_judged_as_in_training(pool):
    """A model that answers with whole definitions or markdown instead of a body: evaluation keeps what the
    training reward would test (the definition, the fenced code), not an empty body cut at the first line."""
    from trl_unittest.rewards import UnitTestReward

    tasks = _tasks()[:1]
    answers = ["def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n",
               "```python\ndef add(a, b):\n    return a + b\n```\nIt adds.\n```python\nundefined()\n```",
               "    return a + b\n\nassert False\n",
               "def add(a, b):\n    return a - b\n"]
    report = evaluate_model(lambda prompts, n: [answers], to_dataset(tasks), n=4, k=(1,), pool=pool, progress=False)
    assert report.rows[0]["passed"] == [True, True, True, False]
    assert report.rows[0]["completions"][1].endswith("```\n")  # the answer ends with its first block
    rewards = UnitTestReward(pool=pool, scheme="binary")([tasks[0].prompt] * 4, report.rows[0]["completions"], None,
                                                         tests=[[t.to_dict() for t in tasks[0].tests]] * 4,
                                                         entry_point=["add"] * 4)
    assert rewards == [1.0, 1.0, 1.0, 0.0]


def test_bad_samples_and_k_are_named_before_running(pool):
    ds = to_dataset(_tasks())
    three = [[RIGHT[t.task_id]] * 3 for t in _tasks()]
    with pytest.raises(TypeError, match=r"completions\[0\] must be a list"):
        evaluate_completions(ds, [RIGHT[t.task_id] for t in _tasks()], k=(1,), pool=pool)
    for bad_k in [(0, 1), (1.5,), ()]:
        with pytest.raises(ValueError, match="k must be whole numbers >= 1"):
            evaluate_completions(ds, three, k=bad_k, pool=pool)
    with pytest.warns(UserWarning, match=r"pass@k left out for k = \[10\]"):
        report = evaluate_completions(ds, three, k=(1, 10), pool=pool)
    assert set(report.pass_at_k) == {"pass@1"}


def test_eval_cli_rejects_bad_numbers(capsys):
    import argparse

    from trl_unittest.evaluation import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    for flag, value in [("--limit", "0"), ("--limit", "-3"), ("--n", "0"), ("--k", "0"), ("--batch-size", "x")]:
        with pytest.raises(SystemExit):
            parser.parse_args(["eval", "--model", "m", "--dataset", "d", flag, value])
        assert "expected a whole number >= 1" in capsys.readouterr().err
    args = parser.parse_args(["eval", "--model", "m", "--dataset", "humaneval", "--n", "5", "--k", "1", "10"])
    with pytest.raises(ValueError, match="--n 5 is smaller than the largest --k"):  # UsageError: exit 2, one line
        args.func(args)


def _fake_vllm(calls):
    """A stand-in for the slice of vLLM's API the adapter uses (``LLM(model=, seed=)``, ``SamplingParams(...)``,
    ``LLM.generate(prompts, params)`` -> one result per prompt with ``.outputs[i].text``): vLLM is not installed
    here, and this checks our side of that contract."""
    bodies = {"add": RIGHT["toy/add"], "neg": RIGHT["toy/neg"], "up": RIGHT["other/upper"]}

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, model, seed=0):
            calls.append(("init", model, seed))

        def generate(self, prompts, params):
            calls.append(("generate", list(prompts), params))
            return [types.SimpleNamespace(outputs=[
                types.SimpleNamespace(text=bodies[p.split("(")[0].split()[-1]] + f"\ndef extra{i}():\n    pass\n")
                for i in range(params.n)]) for p in prompts]

    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    LLM.__module__ = SamplingParams.__module__ = "vllm"
    return module


def test_vllm_path_with_a_stand_in(monkeypatch, pool):
    calls = []
    monkeypatch.setitem(__import__("sys").modules, "vllm", _fake_vllm(calls))
    report = evaluate_model("some/model", to_dataset(_tasks()), n=3, k=(1,), temperature=0.7, top_p=0.9,
                            max_new_tokens=40, seed=5, pool=pool, progress=False)  # use_vllm=None: picked up
    assert calls[0] == ("init", "some/model", 5)
    params = calls[1][2]
    assert (params.n, params.temperature, params.top_p, params.max_tokens) == (3, 0.7, 0.9, 40)
    assert "\ndef " in params.stop
    assert [r["correct"] for r in report.rows] == [3, 3, 3]  # the trailing `def extraN` was cut off
    assert report.rows[0]["completions"][0] == RIGHT["toy/add"]
    # greedy: one generation per prompt, repeated n times; an LLM object is used as it is
    llm = __import__("sys").modules["vllm"].LLM("x")
    calls.clear()
    outs = generate_completions(llm, [t.prompt for t in _tasks()], n=4, temperature=0.0, use_vllm=True)
    assert calls[0][2].n == 1 and calls[0][2].temperature == 0.0
    assert [len(o) for o in outs] == [4, 4, 4] and all(len(set(o)) == 1 for o in outs)
    assert evaluate_model(llm, to_dataset(_tasks()), n=1, k=(1,), temperature=0.0, pool=pool,
                          progress=False).pass_at_k["pass@1"] == 1.0


def test_generate_with_tiny_model_stops_at_top_level(tmp_path, pool):
    from trl_unittest.trainer.tiny import build_model

    model_dir = build_model(tmp_path / "m", "gpt2")
    prompts = [t.prompt for t in _tasks()]
    outs = generate_completions(model_dir, prompts, n=3, max_new_tokens=24, batch_size=4, progress=False)
    assert [len(o) for o in outs] == [3, 3, 3]
    for o in outs:
        for c in o:
            assert cut_generation(c)[0] == c  # each sample already ends where it ends
            first = next((line for line in c.split("\n") if line.strip()), "")
            if first[:1].isspace():  # a function body: no top-level line survives
                assert truncate_completion(c) == c
    greedy = generate_completions(model_dir, prompts, n=2, temperature=0.0, max_new_tokens=8, progress=False)
    assert all(a == b for a, b in greedy)
    report = evaluate_model(model_dir, to_dataset(_tasks()), n=2, k=(1, 2), max_new_tokens=16, pool=pool,
                            progress=False, out_jsonl=tmp_path / "r.jsonl")
    assert 0.0 <= report.pass_at_k["pass@1"] <= report.pass_at_k["pass@2"] <= 1.0
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 3


def test_models_given_by_path_go_to_the_device(tmp_path, monkeypatch):
    import torch

    from trl_unittest.evaluation import _load_model, resolve_device
    from trl_unittest.trainer.tiny import build_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="device must be 'auto' or a torch device.*'gpu0'"):
        resolve_device("gpu0")
    model_dir = build_model(tmp_path / "m", "llama")
    model, tok = _load_model(model_dir, device="cpu")
    assert model.device.type == "cpu" and tok is not None
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, device: moved.append(device) or self)
    _load_model(model_dir, device="auto")  # what a machine with a GPU does
    assert moved == ["cuda"]
    same, _ = _load_model(model, tok, device="cuda")  # a model object stays where it is
    assert same is model and moved == ["cuda"]


def test_task_sources(tmp_path):
    he = load_task_source("humaneval")
    assert len(he) == 164 and he[0]["task_id"] == "HumanEval/0"
    ds = to_dataset(_tasks())
    ds.save_to_disk(str(tmp_path / "build" / "dataset"))
    assert load_task_source(str(tmp_path / "build"))["task_id"] == ds["task_id"]
    ds.to_json(str(tmp_path / "t.jsonl"), lines=True)
    assert load_task_source(str(tmp_path / "t.jsonl"))["task_id"] == ds["task_id"]
    with pytest.raises(ValueError, match="missing: no such file or folder"):  # a UsageError: one line in the CLI
        load_task_source(str(tmp_path / "missing"))


def test_mbpp_source():
    from trl_unittest.data.loaders import default_mbpp_path

    if default_mbpp_path() is None:
        pytest.skip("no local MBPP copy")
    ds = load_task_source("mbpp:validation")
    assert len(ds) == 90 and ds[0]["task_id"] == "mbpp/511"


def test_eval_cli(tmp_path, monkeypatch, capsys):
    import argparse

    from trl_unittest.evaluation import add_eval_parser
    from trl_unittest.trainer.tiny import build_model

    model_dir = build_model(tmp_path / "m", "llama")
    to_dataset(_tasks()).to_json(str(tmp_path / "t.jsonl"), lines=True)
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    args = parser.parse_args(["eval", "--model", model_dir, "--dataset", str(tmp_path / "t.jsonl"), "--k", "1", "2",
                              "--max-new-tokens", "8", "--out", str(tmp_path / "res.jsonl")])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_tasks"] == 3 and set(summary["pass_at_k"]) == {"pass@1", "pass@2"}
    assert (tmp_path / "res.summary.json").exists()


def test_evaluate_metric_offline(pool):
    """The `evaluate` metric loads from its local folder and agrees with rewards.pass_at_k."""
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(METRIC_DIR))
    tasks = _tasks()
    preds = [[t.prompt + RIGHT[t.task_id], t.prompt + WRONG[t.task_id], t.prompt + BROKEN] for t in tasks]
    refs = [t.test_code for t in tasks]
    scores, results = metric.compute(predictions=preds, references=refs, k=[1, 2, 3])
    for k in (1, 2, 3):
        assert scores[f"pass@{k}"] == pytest.approx(pass_at_k(3, 1, k))
    assert [r["passed"] for r in results[0]] == [True, False, False]
