"""`trl-unittest compare`: the bootstrap against known answers, config checks (one line, exit 2, before any work),
the report from run results, resuming, and (slow) a tiny comparison end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from trl_unittest.compare import CompareConfig, ConfigError, bootstrap_ci, paired_difference_ci
from trl_unittest.compare.stats import difference_ci
from trl_unittest.compare.config import BUILTIN_VARIANTS, run_spec_key

TINY = Path(__file__).resolve().parents[1] / "trl_unittest" / "configs" / "compare_tiny.yaml"


# ----------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_two_tasks_has_the_exact_interval():
    """One seed, tasks [0, 1]: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the 2.5% and 97.5%
    quantiles are 0 and 1 exactly."""
    ci = bootstrap_ci([0.0, 1.0], resamples=20_000, seed=1)
    assert (ci.mean, ci.low, ci.high) == (0.5, 0.0, 1.0)


def test_bootstrap_matches_the_normal_interval_of_a_proportion():
    """400 tasks, half solved: the interval of a mean of 0/1 values is 0.5 +- 1.96 * sqrt(0.25 / 400) = +-0.049."""
    ci = bootstrap_ci(np.array([1.0] * 200 + [0.0] * 200), resamples=20_000, seed=0)
    assert ci.mean == 0.5
    assert ci.low == pytest.approx(0.5 - 0.049, abs=0.006) and ci.high == pytest.approx(0.5 + 0.049, abs=0.006)


def test_bootstrap_of_a_constant_is_that_constant():
    ci = bootstrap_ci(np.full((3, 7), 0.3), resamples=500)
    assert ci.low == pytest.approx(0.3) and ci.high == pytest.approx(0.3) and ci.mean == pytest.approx(0.3)


def test_bootstrap_resamples_seeds_too():
    """Seeds that disagree widen the interval: the same numbers read as one seed of many tasks give a narrower
    one. Seeds 0.2 / 0.4 / 0.6 on identical tasks: every resample's mean is a mean of three seed means."""
    matrix = np.repeat(np.array([[0.2], [0.4], [0.6]]), 50, axis=1)
    two_way = bootstrap_ci(matrix, resamples=5_000, seed=0)
    folded = bootstrap_ci(matrix.reshape(-1), resamples=5_000, seed=0)
    assert two_way.mean == pytest.approx(0.4)
    assert two_way.high - two_way.low > 2 * (folded.high - folded.low)
    # three draws from {0.2, 0.4, 0.6}: the extremes (1/27 each) lie beyond the 2.5% tails
    assert two_way.low == pytest.approx(0.2) and two_way.high == pytest.approx(0.6)


def test_paired_difference_removes_what_both_share():
    """b = a + 0.1 on every seed and task: the paired difference is exactly 0.1, however much the tasks vary."""
    rng = np.random.default_rng(0)
    a = rng.random((3, 40))
    ci = paired_difference_ci(a + 0.1, a, resamples=2_000)
    assert ci.mean == pytest.approx(0.1) and ci.low == pytest.approx(0.1) and ci.high == pytest.approx(0.1)
    unpaired = bootstrap_ci(a + 0.1, resamples=2_000)
    assert unpaired.high - unpaired.low > 0.1


def test_difference_between_methods_pairs_tasks_and_resamples_each_side_s_seeds():
    """Two methods with different seed counts: the mean is the difference of their means; the tasks' shared
    variation cancels (paired), each side's seed spread widens the interval (not paired: separate runs)."""
    rng = np.random.default_rng(1)
    tasks = rng.random(60)
    same = difference_ci(np.tile(tasks + 0.1, (3, 1)), np.tile(tasks, (2, 1)), resamples=2_000)
    assert same.mean == pytest.approx(0.1) and same.low == pytest.approx(0.1) and same.high == pytest.approx(0.1)
    spread = difference_ci(tasks + np.array([[0.0], [0.1], [0.2]]), np.tile(tasks, (2, 1)), resamples=2_000)
    assert spread.mean == pytest.approx(0.1) and spread.low < 0.05 and spread.high > 0.15
    with pytest.raises(ValueError, match="same tasks"):
        difference_ci(np.zeros((2, 3)), np.zeros((2, 4)))


def test_bootstrap_is_seeded_and_refuses_bad_input():
    x = np.random.default_rng(3).random((2, 30))
    assert bootstrap_ci(x, seed=5).to_dict() == bootstrap_ci(x, seed=5).to_dict()
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, float("nan")])
    with pytest.raises(ValueError, match="same"):
        paired_difference_ci(np.zeros((2, 3)), np.zeros((3, 3)))


# ------------------------------------------------------------------------------------------------- config
def test_the_tiny_config_parses_and_flags_win():
    from trl_unittest.compare import parse_compare_args

    config = parse_compare_args(["--config", str(TINY), "--seeds", "4", "5", "--completions", "32"])
    assert config.model_name_or_path == "quickstart:tiny" and config.seeds == [4, 5] and config.completions == 32
    assert config.steps() == 2
    variants = config.validate()
    assert list(variants) == config.methods and variants["actor_critic"]["replay_capacity"] == 256


def test_the_real_config_parses_with_every_method_and_ablation():
    from trl_unittest.compare import ABLATIONS, parse_compare_args

    config = parse_compare_args(["--config", str(TINY.with_name("compare.yaml"))])
    assert config.seeds == [0, 1, 2] and config.eval_k == [1, 10]
    assert config.completions == 1000 * 32 and config.learning_rate == 2.5e-5  # the main job's recipe
    assert set(config.methods) == {"base", "ppo", "grpo", "rloo", "actor_critic"}
    assert config.reward_scheme == "coderl"  # the main job's reward, which the recorded comparison uses
    assert set(ABLATIONS) <= set(BUILTIN_VARIANTS) and config.mined_sources
    # every source the with-mined ablation names is installed wherever .ci/setup ran (checked up front by validate)
    CompareConfig(mined_sources=config.mined_sources, methods=["ac_with_mined"]).validate()


def test_ablations_are_config_entries():
    config = CompareConfig(methods=["ac_no_replay", "ac_frozen_critic", "ac_binary_reward", "ac_partial_reward",
                                    "grpo"],
                           variants={"grpo": {"method": "grpo", "num_generations": 8}})
    v = config.resolved_variants()
    assert v["ac_no_replay"]["replay_capacity"] == 0 and v["ac_no_replay"]["replay_critic_batch_size"] == 0
    assert v["ac_no_replay"]["replay_policy_batch_size"] == 0
    assert v["ac_frozen_critic"]["critic_pretrain_fraction"] == 0.1
    assert v["ac_binary_reward"]["reward_scheme"] == "binary"
    assert v["ac_partial_reward"]["reward_scheme"] == "partial" != config.reward_scheme  # the default is CodeRL's
    assert v["grpo"]["num_generations"] == 8  # a YAML entry replaces the built-in one


@pytest.mark.parametrize("changes, message", [
    ({"methods": ["actor_critic", "pg"]}, "unknown variant 'pg'"),
    ({"methods": ["mine"], "variants": {"mine": {"method": "actor_critic", "critic_lr": 1.0}}},
     r"\['critic_lr'\] are not fields of ActorCriticConfig"),
    ({"variants": {"x": {"method": "sgd"}}}, "variants.x: needs method"),
    ({"completions": 100, "batch_size": 32}, "not a whole number of batches"),
    ({"completions": 16, "batch_size": 32}, "less than one batch"),
    ({"eval_n": 4, "eval_k": [1, 10]}, "eval_k"),
    ({"seeds": [0, 0]}, "seeds must be distinct"),
    ({"methods": ["ac_with_mined"]}, "list builder sources under mined_sources"),
    ({"methods": ["ac_with_mined"], "mined_sources": ["dist:click", "dist:no-such-distribution-xyz"]},
     "mined_sources: 'dist:no-such-distribution-xyz': no installed distribution"),
    ({"methods": ["grpo"], "batch_size": 30, "completions": 60}, "num_generations >= 2 dividing batch_size=30"),
    ({"methods": ["ppo"], "ppo_python": "/nonexistent/venv/bin/python"}, "no Python at /nonexistent/venv/bin/python"),
    ({"model_name_or_path": "quickstart:huge"}, "quickstart:tiny"),
    ({"reward_scheme": "shaped"}, "reward_scheme 'shaped'"),
    ({"methods": ["g"], "variants": {"g": {"method": "grpo", "gradient_accumulation_steps": 2}}},
     r"\['gradient_accumulation_steps'\] are set by the comparison"),
    ({"methods": ["p"], "variants": {"p": {"method": "ppo", "num_mini_batches": 2}}}, "equal budget"),
])
def test_bad_configs_name_the_problem(changes, message):
    config = CompareConfig(**{"methods": ["base", "actor_critic"], **changes})
    with pytest.raises(ConfigError, match=message):
        config.validate()


def test_cli_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    from trl_unittest.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text() + "critic_lr: 0.1\n")
    assert main(["compare", "--config", str(bad), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trl-unittest compare: error:") and "critic_lr" in err[0]
    assert main(["compare", "--config", str(TINY), "--seeds", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seeds" in err[0]
    assert main(["compare", "--config", str(TINY), "--methods", "base", "nope",
                 "--output_dir", str(tmp_path / "out")]) == 2
    assert "unknown variant 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_missing_ppo_environment_is_named_with_its_fix(monkeypatch, tmp_path):
    from trl_unittest.compare.config import resolve_ppo_python

    monkeypatch.setenv("TRL_UNITTEST_PPO_PYTHON", str(tmp_path / "none" / "python"))
    with pytest.raises(ConfigError, match=r"trl==1.12.0.*\.ci/setup.*drop ppo from methods"):
        resolve_ppo_python()
    fake = tmp_path / "python"  # an interpreter without TRL 1.12
    fake.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named trl' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(ConfigError, match="cannot import TRL 1.12's PPOTrainer"):
        resolve_ppo_python(str(fake), check=True)


# ------------------------------------------------------------------------------------ report and resuming
def _fake_result(name, method, seed, per_task, curve=(), completions=64):
    return {"variant": name, "method": method, "seed": seed, "key": None, "heldout_task_ids": [f"t{i}" for i in
                                                                                              range(len(per_task))],
            "completions": 0 if method == "base" else completions, "steps": 4, "train_seconds": 2.0,
            "samples_per_second": None if method == "base" else 32.0, "peak_memory_mib": 100.0 + seed,
            "peak_memory_kind": "process peak RSS", "seconds": 3.0, "device": "cpu",
            "curve": [{"completions": c, "pass@1": float(np.mean(p)), "per_task": p} for c, p in curve],
            "final": {"pass_at_k": {"pass@1": float(np.mean(per_task)), "pass@2": float(np.mean(per_task))},
                      "per_task": {"pass@1": per_task, "pass@2": per_task}}}


def test_report_statistics_table_and_plot(tmp_path):
    from trl_unittest.compare.report import markdown_table, plot, summarise

    base = {s: _fake_result("base", "base", s, [0.0, 0.5, 1.0, 0.5]) for s in (0, 1)}
    ac = {s: _fake_result("actor_critic", "actor_critic", s, [0.5, 1.0, 1.0, 0.5],
                          curve=[(32, [0.0, 1.0, 1.0, 0.5])]) for s in (0, 1)}
    grpo = {s: _fake_result("grpo", "grpo", s, [0.5, 0.5, 1.0, 0.5]) for s in (0, 1, 2)}
    summary = summarise({"base": base, "actor_critic": ac, "grpo": grpo}, {}, resamples=1000)
    s = summary["actor_critic"]
    assert s["pass@1"]["mean"] == pytest.approx(0.75) and summary["base"]["pass@1"]["mean"] == pytest.approx(0.5)
    assert s["delta_pass@1_vs_base"]["mean"] == pytest.approx(0.25)
    assert [p["completions"] for p in s["curve"]] == [0, 32, 64]  # base, the measurement during training, final
    assert s["curve"][0]["mean"] == pytest.approx(0.5) and s["curve"][1]["mean"] == pytest.approx(0.625)
    assert s["samples_per_second"] == 32.0 and s["peak_memory_mib"] == 101.0
    table = markdown_table(summary)
    assert "| actor_critic | actor_critic | 2 | 0.750 [" in table and "+0.250 [" in table
    assert summary["grpo"]["delta_pass@1_vs_actor_critic"]["mean"] == pytest.approx(-0.125)
    assert "delta_pass@1_vs_actor_critic" not in s and "delta_pass@1_vs_actor_critic" not in summary["base"]
    assert "pass@1 - actor_critic" in table and "| grpo | grpo | 3 |" in table and "-0.125 [" in table
    path = plot(summary, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_finished_runs_are_kept_and_failed_ones_retried(tmp_path, monkeypatch):
    """Resuming: a second call runs only what did not finish; a run made under other settings is refused."""
    from trl_unittest.compare import prepare, runner

    calls = []

    def fake_prepare(config, variants, out, console=None):
        (out / "inputs").mkdir(parents=True, exist_ok=True)
        return prepare.Inputs(model="m", heldout="h", rl_tasks={"default": "r"}, info={"heldout_tasks": 3})

    def fake_run(spec, method, config, run_dir):
        calls.append((spec["name"], spec["seed"]))
        if spec["name"] == "grpo" and spec["seed"] == 1 and len(calls) < 5:
            return None, "RuntimeError: boom"
        result = {**_fake_result(spec["name"], method, spec["seed"], [0.0, 1.0, 0.5]), "key": spec["key"]}
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "result.json").write_text(json.dumps(result))
        return result, None

    monkeypatch.setattr(prepare, "prepare_inputs", fake_prepare)
    monkeypatch.setattr(runner, "_run", fake_run)
    config = CompareConfig(methods=["base", "grpo"], seeds=[0, 1], completions=64, output_dir=str(tmp_path),
                           bootstrap_resamples=200, progress=False, device="cpu")
    first = runner.run_compare(config)
    assert len(calls) == 4 and first["failed"] == [{"variant": "grpo", "seed": 1, "error": "RuntimeError: boom"}]
    assert first["summary"]["grpo"]["seeds"] == [0] and "Failed runs" in (tmp_path / "results.md").read_text()
    second = runner.run_compare(config)
    assert calls[4:] == [("grpo", 1)] and not second["failed"] and second["summary"]["grpo"]["seeds"] == [0, 1]
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["base"]["seeds"] == [0, 1]
    with pytest.raises(ConfigError, match="runs/grpo/seed0 holds a run made with other settings"):
        runner.run_compare(CompareConfig(**{**config.__dict__, "learning_rate": 1e-3}))
    assert len(calls) == 5


def test_run_key_names_what_changes_a_result():
    a, b = CompareConfig(), CompareConfig(seeds=[7, 8, 9, 10], output_dir="elsewhere", progress=False)
    v = BUILTIN_VARIANTS["grpo"]
    assert run_spec_key(a, v) == run_spec_key(b, v)  # more seeds, another folder: earlier runs still count
    assert run_spec_key(a, v) != run_spec_key(CompareConfig(completions=3200), v)
    base = BUILTIN_VARIANTS["base"]  # training settings do not change the base model's evaluation
    assert run_spec_key(a, base) == run_spec_key(CompareConfig(completions=3200, learning_rate=1.0), base)
    assert run_spec_key(a, base) != run_spec_key(CompareConfig(eval_n=20), base)


def test_the_no_ast_filter_ablation_stores_duplicates():
    """The same program twice (renamed locals: the same normalised AST) is stored once with the filter, twice
    without it."""
    from trl_unittest.compare.job import _replay_without_ast_filter
    from trl_unittest.trainer import ReplayBuffer

    prompt = "def f(x):\n"
    programs = ["    y = x + 1\n    return y\n", "    z = x + 1\n    return z\n"]
    filtered, unfiltered = ReplayBuffer(8), _replay_without_ast_filter(8, "fifo", 0)
    for buffer in (filtered, unfiltered):
        for text in programs:
            buffer.add(prompt, text, [1, 2], [3, 4], 1.0, entry_point="f")
    assert (len(filtered), filtered.hits) == (1, 1)
    assert (len(unfiltered), unfiltered.hits) == (2, 0) and unfiltered.unique_ratio == 1.0


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_comparison_end_to_end(tmp_path):
    """base, ActorCritic and the no-AST-filter ablation on the tiny model, one seed, in this process."""
    from trl_unittest.compare import parse_compare_args, run_compare

    out = tmp_path / "cmp"
    config = parse_compare_args(["--config", str(TINY), "--methods", "base", "actor_critic",
                                 "ac_replay_no_ast_filter", "--seeds", "0", "--completions", "32",
                                 "--output_dir", str(out)])
    results = run_compare(config)
    assert not results["failed"]
    for name in ("results.md", "results.json", "pass1_vs_completions.png", "inputs/inputs.json"):
        assert (out / name).exists(), name
    heldout = results["inputs"]["heldout_tasks"]
    for name in config.methods:
        run = json.loads((out / "runs" / name / "seed0" / "result.json").read_text())
        assert len(run["heldout_task_ids"]) == heldout == len(run["final"]["per_task"]["pass@1"])
        assert all(0.0 <= p <= 1.0 for p in run["final"]["per_task"]["pass@1"])
        if name != "base":
            assert run["completions"] == 32 and run["steps"] == 2 and len(run["reward_history"]) == 2
            assert run["samples_per_second"] > 0 and [c["completions"] for c in run["curve"]] == [16]
    ablation = json.loads((out / "runs" / "ac_replay_no_ast_filter" / "seed0" / "result.json").read_text())
    assert ablation["replay"]["buffer"] == "ReplayWithoutAstFilter" and ablation["replay"]["unique_ast_ratio"] == 1.0
    with_filter = json.loads((out / "runs" / "actor_critic" / "seed0" / "result.json").read_text())
    assert with_filter["replay"]["buffer"] == "ReplayBuffer"
    s = results["summary"]["actor_critic"]
    assert math.isfinite(s["delta_pass@1_vs_base"]["mean"]) and s["curve"][0]["completions"] == 0
    # a second call finds every run finished and reruns none
    again = run_compare(config)
    assert again["summary"]["actor_critic"]["pass@1"] == s["pass@1"]


def test_rl_seeds_pools_training_seeds_against_the_base(tmp_path, capsys):
    """benchmarks/rl_seeds.py: the change is the mean over seeds and tasks of run - base; mismatched task sets and
    files that are not rl_heldout results are one clear error."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_seeds.py"
    spec = importlib.util.spec_from_file_location("rl_seeds", path)
    rl_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rl_seeds)

    def write(name, values):
        rows = [{"task_id": f"t{i}", "pass@1": v, "pass@10": min(1.0, 2 * v)} for i, v in enumerate(values)]
        (tmp_path / name).write_text(json.dumps({"heldout_rows": rows}))
        return str(tmp_path / name)

    base = write("base.json", [0.0, 0.5, 0.5, 1.0])
    s0, s1 = write("s0.json", [0.5, 0.5, 0.5, 1.0]), write("s1.json", [0.0, 1.0, 1.0, 1.0])
    assert rl_seeds.main(["--base", base, "--run", f"rl={s0},{s1}"]) == 0
    table = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["table"]
    assert table["rl"]["seeds"] == 2
    assert table["rl"]["pass@1 change"]["mean"] == pytest.approx((0.5 + 1.0) / 8)
    assert table["rl"]["pass@1 change"]["low"] <= table["rl"]["pass@1 change"]["mean"]
    g0 = write("g0.json", [0.0, 0.5, 0.5, 0.5])
    assert rl_seeds.main(["--base", base, "--run", f"rl={s0},{s1}", "--run", f"grpo={g0}", "--versus", "rl"]) == 0
    out = capsys.readouterr().out
    table = json.loads(out.strip().splitlines()[-1])["table"]
    assert table["grpo"]["pass@1 - rl"]["mean"] == pytest.approx(1.5 / 4 - 5.5 / 8) and "pass@1 - rl" not in table["rl"]
    assert "pass@1 - rl [95%]" in out
    with pytest.raises(SystemExit):
        rl_seeds.main(["--base", base, "--run", f"rl={s0}", "--versus", "ac"])
    assert "not one of the --run labels" in capsys.readouterr().err
    other = write("other.json", [0.5, 0.5, 0.5])
    with pytest.raises(SystemExit):
        rl_seeds.main(["--base", base, "--run", f"rl={other}"])
    assert "held-out tasks differ" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a result of rl_heldout.py"):
        rl_seeds.main(["--base", str(tmp_path / "junk.json"), "--run", f"rl={s0}"])


def test_rl_heldout_refuses_an_option_rloo_lacks_before_any_work():
    """benchmarks/rl_heldout.py --trainer rloo: TRL's RLOOConfig has no entropy bonus; asking for one is one line
    and exit code 2, before any dataset, model or sandbox is made."""
    import subprocess
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_heldout.py"
    out = subprocess.run([sys.executable, str(path), "--trainer", "rloo", "--entropy-coef", "0.01", "--prepare"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "RLOOConfig has no entropy bonus" in out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, message", [
    (["--trainer", "grpo", "--no-replay-ast-filter"], "are ActorCritic ablations"),
    (["--critic-pretrain-fraction", "1.5"], "expected a share of the steps in [0, 1)"),
    (["--with-mined", "dist:no-such-distribution-xyz"], "--with-mined 'dist:no-such-distribution-xyz': no installed"),
    (["--tasks", "mined:stdlib:no_such_module_xyz"], "--tasks 'stdlib:no_such_module_xyz': no pure-Python"),
    (["--tasks", "mined:dist:click", "--with-mined", "dist:idna"], "that is not mined:... itself"),
    (["--tasks", "no/such/task-folder"], "--tasks no/such/task-folder: no such file or folder"),
])
def test_rl_heldout_refuses_an_ablation_it_cannot_run_before_any_work(argv, message):
    """The ablation flags of benchmarks/rl_heldout.py (compare's ac_frozen_critic, ac_replay_no_ast_filter and
    ac_with_mined) on another trainer, a pre-training share outside [0, 1), or a builder source that cannot give
    files: one line and exit code 2, before any work."""
    import subprocess
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_heldout.py"
    out = subprocess.run([sys.executable, str(path), *argv, "--prepare"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert message in out.stderr.strip().splitlines()[-1]


def test_inputs_made_without_the_mined_set_get_it_when_a_variant_needs_it(tmp_path, monkeypatch):
    """benchmarks/compare.sh runs the ablations (ac_with_mined among them) into the main comparison's folder, whose
    inputs were made without the mined set: the set is added to them (it was a KeyError in every such run)."""
    from trl_unittest.compare import prepare
    from trl_unittest.data.builder import load_tasks
    from trl_unittest.tasks import Task, Test, to_dataset
    from trl_unittest.trainer.tiny import build_model

    def task(i):
        return Task(task_id=f"t{i}", prompt=f"def f{i}(x):\n", entry_point=f"f{i}",
                    tests=[Test(expr=f"f{i}(1)", expected="1")], reference=f"def f{i}(x):\n    return x\n")

    model = build_model(tmp_path / "model", "llama")
    root = tmp_path / "out" / "inputs"
    to_dataset([task(i) for i in range(3)]).save_to_disk(str(root / "rl_default"))
    to_dataset([task(9)]).save_to_disk(str(root / "heldout"))
    first = {"model": model, "heldout": str(root / "heldout"), "rl_tasks": {"default": str(root / "rl_default")},
             "info": {"rl_tasks_default": 3}}
    (root / "inputs.json").write_text(json.dumps(first))
    asked = []

    def fake_mined(specs, heldout, workers=2, progress=False):  # the builder's part is tested on its own
        asked.append((specs, len(heldout)))
        return to_dataset([task(5), task(6)]), 0

    monkeypatch.setattr(prepare, "mined_tasks", fake_mined)
    config = CompareConfig(methods=["base", "actor_critic"], mined_sources=["dist:click"],
                           output_dir=str(tmp_path / "out"), progress=False)
    assert prepare.prepare_inputs(config, config.validate(), tmp_path / "out").rl_tasks == first["rl_tasks"]
    assert not asked  # not needed, not built
    config = CompareConfig(**{**config.__dict__, "methods": ["base", "ac_with_mined"]})
    inputs = prepare.prepare_inputs(config, config.validate(), tmp_path / "out")
    assert asked == [(["dist:click"], 1)]
    assert [r["task_id"] for r in load_tasks(inputs.rl_tasks["with_mined"])] == ["t0", "t1", "t2", "t5", "t6"]
    saved = json.loads((root / "inputs.json").read_text())
    assert saved["rl_tasks"] == {**first["rl_tasks"], "with_mined": str(root / "rl_with_mined")}
    assert saved["info"]["rl_tasks_with_mined"] == 5 and saved["info"]["mined_tasks"] == 2
