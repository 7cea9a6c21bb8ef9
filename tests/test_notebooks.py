"""Every notebook under notebooks/ executes top to bottom with small settings (the `tiny` budget) and writes what
it says it writes; the stored outputs are from a run and contain no error."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _check_quickstart(out: Path) -> None:
    assert (out / "summary.json").exists()


def _check_finetune(out: Path) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == summary["train_tasks"] + summary["heldout_tasks"] > 0
    for which in ("before", "after"):
        assert set(summary[which]) == {"pass@1", "pass@2"}
        assert all(0.0 <= v <= 1.0 for v in summary[which].values())
    assert len(summary["reward"]) == summary["steps"]
    assert (out / "adapter" / "adapter_config.json").exists()  # LoRA: the adapter, not a full model
    assert (out / "finetune.png").read_bytes()[:4] == b"\x89PNG"


def _check_compare(out: Path) -> None:
    from trl_unittest.compare import ConfigError
    from trl_unittest.compare.config import resolve_ppo_python

    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == []
    expected = {"base", "grpo", "actor_critic"}
    try:
        resolve_ppo_python()
        expected.add("ppo")  # CI has .venv-ppo: PPO must have run, not been dropped
    except ConfigError:
        pass
    assert set(results["summary"]) == expected
    for name, s in results["summary"].items():
        assert s["seeds"] == [0, 1] and s["pass@1"]["low"] <= s["pass@1"]["mean"] <= s["pass@1"]["high"], name
    assert (out / "pass1_vs_completions.png").exists() and (out / "results.md").exists()


CHECKS = {"quickstart.ipynb": _check_quickstart, "finetune_your_model.ipynb": _check_finetune,
          "compare_ppo.ipynb": _check_compare}


def test_every_notebook_has_a_check():
    assert {p.name for p in NOTEBOOKS} == set(CHECKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_outputs_are_from_a_run_without_errors(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "store the notebook with its outputs"
    assert not [o for c in code for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("TRL_UNITTEST_NB_BUDGET", "tiny")
    monkeypatch.setenv("TRL_UNITTEST_NB_OUT", str(tmp_path / "out"))
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    CHECKS[path.name](tmp_path / "out")
