"""Every ```python block of README.md runs as written: read from the file (not copied here), run as a script in a
fresh interpreter from an empty folder outside the checkout, offline, on the CPU.

The one substitution: the Hub model a sample names (``README_MODEL``) becomes a tiny Llama built offline by a
fixture, as a user would pass their own model's folder. The Ray sample connects to a one-node cluster the test
starts, through Ray's ``$RAY_ADDRESS``. The PPO sample needs trl 1.12 (``.venv-ppo``): it is marked
``ppo`` and `.ci/test` runs it there; in an env without PPOTrainer it is skipped.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MODEL = '"Qwen/Qwen2.5-0.5B"'
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)


def _needs_ppo(code: str) -> bool:
    return "trl.experimental.ppo" in code


def _params():
    for i, code in enumerate(BLOCKS):
        first = next((line for line in code.splitlines() if line and not line.startswith(("import", "from", "#"))),
                     "")
        marks = [pytest.mark.slow] + ([pytest.mark.ppo] if _needs_ppo(code) else [])
        yield pytest.param(code, id=f"block{i}-{re.sub(r'[^A-Za-z0-9]+', '_', first)[:40]}", marks=marks)


def test_the_readme_has_the_samples_it_promises():
    joined = "\n".join(BLOCKS)
    assert len(BLOCKS) >= 4
    for name in ("GRPOTrainer(", "ActorCriticTrainer(", "PPOTrainer(", "PASS_AT_K_PATH", "resolve_mbpp_path()"):
        assert name in joined, name


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from trl_unittest.trainer.tiny import build_model

    return build_model(tmp_path_factory.mktemp("readme-model"), "llama")


@pytest.fixture
def ray_address(request):
    """A one-node Ray cluster with the `sandbox` resource for the Ray sample (it connects through $RAY_ADDRESS,
    Ray's documented variable); only this cluster's processes are stopped afterwards."""
    ray = pytest.importorskip("ray", reason="the Ray sample needs the `ray` extra")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 80 << 20,
                                                            "include_dashboard": False, "resources": {"sandbox": 2}})
    yield cluster.address
    cluster.shutdown()


@pytest.mark.parametrize("code", list(_params()))
def test_readme_sample_runs(code, tiny_model, tmp_path, request):
    if _needs_ppo(code):
        pytest.importorskip("trl.experimental.ppo", reason="the PPO sample runs in .venv-ppo (trl==1.12.0)")
    script = code.replace(README_MODEL, repr(str(tiny_model)))
    (tmp_path / "sample.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep), "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}
    if "RayExecutor(" in code:
        env["RAY_ADDRESS"] = request.getfixturevalue("ray_address")
    run = subprocess.run([sys.executable, "sample.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    if "print(" in code:  # what it prints is what the sample's comment says
        comment = next(line for line in code.splitlines() if line.startswith("print(")).split("# ", 1)[1].strip()
        assert run.stdout.strip() == comment, (run.stdout, comment)
