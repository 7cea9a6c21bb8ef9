"""The main job end to end on the `tiny` budget: files exist and every number is finite and in range."""

import json
import math

import pytest


@pytest.mark.slow
def test_quickstart_tiny_end_to_end(tmp_path):
    from trl_unittest.quickstart import BUDGETS, run_quickstart

    out = tmp_path / "qs"
    summary = run_quickstart("tiny", out, progress=False)
    b = BUDGETS["tiny"]
    for name in ("summary.json", "training.png", "eval_base.jsonl", "eval_trained.jsonl", "model/config.json"):
        assert (out / name).exists(), name
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["budget"] == "tiny"
    for which in ("base", "trained"):
        rep = on_disk[which]
        assert set(rep["pass_at_k"]) == {f"pass@{k}" for k in b.k}
        for v in rep["pass_at_k"].values():
            assert math.isfinite(v) and 0.0 <= v <= 1.0
        assert rep["pass_at_k"]["pass@1"] <= rep["pass_at_k"][f"pass@{max(b.k)}"] + 1e-12
        assert rep["num_tasks"] == on_disk["heldout_eval_tasks"] and rep["num_samples"] == b.n
        rows = [json.loads(line) for line in (out / f"eval_{which}.jsonl").read_text().splitlines()]
        assert len(rows) == rep["num_tasks"]
        assert all(len(r["completions"]) == b.n and 0 <= r["correct"] <= b.n for r in rows)
    history = on_disk["reward_history"]
    assert [h["step"] for h in history] == list(range(1, b.steps + 1))
    assert all(math.isfinite(h["reward"]) and -1.0 <= h["reward"] <= 1.0 for h in history)
    curve = on_disk["pass1_curve"]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == b.steps and len(curve) == b.checkpoints + 2
    assert all(0.0 <= c["pass@1"] <= 1.0 for c in curve)
    assert all(v >= 0 for v in on_disk["seconds"].values())
    assert summary["files"]["plot"].endswith("training.png")


def test_quickstart_parser():
    import argparse

    from trl_unittest.quickstart import add_quickstart_parser

    parser = argparse.ArgumentParser()
    add_quickstart_parser(parser.add_subparsers())
    args = parser.parse_args(["quickstart", "--budget", "tiny", "--out", "x"])
    assert args.budget == "tiny" and args.out == "x" and callable(args.func)
