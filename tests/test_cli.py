"""The command line as a user meets it: every bad input is one line on stderr with exit code 2, found before a model
is loaded, and leaves the inputs and earlier outputs as they were; Ctrl-C during `eval` keeps the finished tasks and
the same command resumes to the same result."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trl_unittest import cli
from trl_unittest.data.loaders import default_mbpp_path
from trl_unittest.tasks import Task, Test, to_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(default_mbpp_path() is None, reason="no shared/data/mbpp copy beside the checkout")
def test_demo_scores_references_above_broken_solutions(capsys):
    assert cli.main(["demo", "--tasks", "3", "--test-timeout", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "3 MBPP tasks x 5 solutions" in out and "3/3" in out and "0/3" in out


def test_unknown_command_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["fly"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("argv,fragments", [
    (["fly"], ["trl-unittest: error: argument command: invalid choice: 'fly'", "see `trl-unittest --help`"]),
    (["build"], ["required: --source, --out", "see `trl-unittest build --help`"]),
    (["quickstart", "--budget", "huge"], ["argument --budget: invalid choice: 'huge'"]),
    (["eval", "--model", "m", "--dataset", "d", "--k", "0"], ["argument --k: expected a whole number >= 1, got 0"]),
    # a negative temperature was sampled greedily, as if it were 0
    (["eval", "--model", "m", "--dataset", "d", "--temperature", "-1"], ["--temperature: expected a number >= 0"]),
    (["eval", "--model", "m", "--dataset", "d", "--top-p", "0"], ["--top-p: expected a number in (0, 1]"]),
])
def test_argparse_refusals_are_one_line(argv, fragments, capfd):
    """Without the usage block: a subcommand's runs to 30 lines above the one that names the problem."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert exit_.value.code == 2 and len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]


# ------------------------------------------------------------------------------------------- fixtures
def _toy_tasks(count: int) -> list[Task]:
    """Tasks a random tiny model fails or passes by chance: ``f_i(x)`` returns x (i odd) or x + 1 (i even)."""
    return [Task(f"toy/{i}", f"def f{i}(x):\n    return ", f"f{i}",
                 [Test(expr=f"f{i}(1)", expected=str(1 + i % 2))]) for i in range(count)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny model, a task file, and one earlier output, shared by the tests of this module."""
    from trl_unittest.trainer.tiny import build_model

    root = tmp_path_factory.mktemp("cli")
    model = build_model(root / "model", "llama")
    to_dataset(_toy_tasks(40)).to_json(str(root / "tasks.jsonl"), lines=True)
    (root / "earlier.jsonl").write_text('{"task_id": "toy/0", "correct": 1}\n')
    (root / "notests.jsonl").write_text('{"task_id": "a/1", "prompt": "def f(x):\\n", "entry_point": "f"}\n')
    (root / "notjson.jsonl").write_text('{"task_id": "a/1", "prompt": "def f(x):\\n", "entry_point": "f"}\nnot json\n')
    (root / "empty.jsonl").write_text("")
    (root / "corrupt.parquet").write_bytes(b"garbage")
    (root / "bad_key.yaml").write_text("max_stepz: 3\n")
    (root / "bad_int.yaml").write_text("max_steps: three\n")
    (root / "bad_list.yaml").write_text("eval_n: [2]\n")
    (root / "bad_syntax.yaml").write_text("max_steps: 3\n  eval_n: [\n")
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capfd, code: int, *fragments: str) -> str:
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


# ---------------------------------------------------------------------------- one line per bad input
BAD_EVAL = {  # name: (arguments after `eval`, with {root} for the workspace; fragments of the one line)
    "model path does not exist": (["--model", "{root}/no-such-model", "--dataset", "{root}/tasks.jsonl"],
                                  ["no-such-model: no such folder"]),
    "model folder is not a model": (["--model", "{root}", "--dataset", "{root}/tasks.jsonl"], ["has no config.json"]),
    "misspelt MBPP split": (["--model", "{root}/model", "--dataset", "mbpp:tset"],
                            ["unknown MBPP split 'tset'", "mbpp:test"]),
    "unknown Hub model offline": (["--model", "nobody/no-such-model", "--dataset", "{root}/tasks.jsonl"],
                                  ["not in the Hugging Face cache while offline"]),
    "unknown Hub dataset offline": (["--model", "{root}/model", "--dataset", "mbpp:nobody/no-such-set:test"],
                                    ["the Hub cannot be reached"]),
    "dataset without tests": (["--model", "{root}/model", "--dataset", "{root}/notests.jsonl"],
                              ["no task has tests"]),
    "missing dataset file": (["--model", "{root}/model", "--dataset", "{root}/nope.jsonl"], ["no such file"]),
    # were a generic error (exit 1) after a line `datasets` logged, not the user's input named
    "a line that is not JSON": (["--model", "{root}/model", "--dataset", "{root}/notjson.jsonl"],
                                ["notjson.jsonl: line 2 is not JSON"]),
    "an empty task file": (["--model", "{root}/model", "--dataset", "{root}/empty.jsonl"], ["no task records in it"]),
    "a file that is not parquet": (["--model", "{root}/model", "--dataset", "{root}/corrupt.parquet"],
                                   ["corrupt.parquet: not a task dataset", "Parquet"]),
    "--out exists": (["--model", "{root}/model", "--dataset", "{root}/tasks.jsonl", "--out", "{root}/earlier.jsonl"],
                     ["exists: pass --overwrite"]),
    "--out is a folder": (["--model", "{root}/model", "--dataset", "{root}/tasks.jsonl", "--out", "{root}"],
                          ["is a folder"]),
    "--out under a file": (["--model", "{root}/model", "--dataset", "{root}/tasks.jsonl", "--out",
                            "{root}/earlier.jsonl/res.jsonl"], ["is a file, not a folder"]),
    "--n below --k": (["--model", "{root}/model", "--dataset", "{root}/tasks.jsonl", "--k", "1", "10", "--n", "2"],
                      ["--n 2 is smaller than the largest --k"]),
}


@pytest.mark.parametrize("name", list(BAD_EVAL))
def test_eval_bad_input_is_one_line(name, workspace, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args, fragments = BAD_EVAL[name]
    before = _snapshot(workspace)
    t0 = time.perf_counter()
    code = cli.main(["eval", *[a.format(root=workspace) for a in args]])
    _one_line_error(capfd, code, *fragments)
    assert time.perf_counter() - t0 < 30  # no retries, no model loaded
    assert _snapshot(workspace) == before


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["eval", "quickstart"])
def test_cuda_without_a_gpu_is_one_line(command, workspace, capfd, tmp_path):
    args = ["--model", str(workspace / "model"), "--dataset", str(workspace / "tasks.jsonl")] \
        if command == "eval" else ["--budget", "tiny", "--out", str(tmp_path / "qs")]
    _one_line_error(capfd, cli.main([command, *args, "--device", "cuda"]), "torch sees no CUDA GPU", "--device cpu")
    assert not (tmp_path / "qs").exists()


def test_demo_and_model_bad_input_is_one_line(tmp_path, capfd):
    _one_line_error(capfd, cli.main(["demo", "--mbpp", str(tmp_path / "no-mbpp")]), "no MBPP copy at",
                    "TRL_UNITTEST_MBPP")
    if not __import__("torch").cuda.is_available():
        _one_line_error(capfd, cli.main(["model", "--budget", "tiny", "--device", "cuda"]), "torch sees no CUDA GPU")


def test_eval_says_before_training_the_quickstart_model(tmp_path, monkeypatch, capsys):
    from trl_unittest.evaluation import _say_if_training

    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "empty-cache"))
    _say_if_training("small")
    assert "training it first (about 15 minutes" in capsys.readouterr().err


@pytest.mark.parametrize("config,fragments", [
    ("bad_key.yaml", ["unknown key 'max_stepz'", "did you mean 'max_steps'"]),
    ("bad_int.yaml", ["max_steps: 'three' is not a whole number"]),
    ("bad_list.yaml", ["eval_n: [2] is not a whole number"]),
    ("bad_syntax.yaml", ["not valid YAML at line 2"]),
])
def test_train_bad_config_is_one_line(config, fragments, workspace, capfd):
    before = _snapshot(workspace)
    _one_line_error(capfd, cli.main(["train", "--config", str(workspace / config)]), *fragments)
    assert _snapshot(workspace) == before


def test_train_bad_flag_and_model_are_one_line(workspace, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_error(capfd, cli.main(["train", "--max_steps", "three", "--use_cpu", "true"]),
                    "invalid int value: 'three'")
    _one_line_error(capfd, cli.main(["train", "--model_name_or_path", str(workspace / "gone"), "--use_cpu", "true",
                                     "--output_dir", str(workspace / "run")]), "gone: no such folder")
    assert not (workspace / "run").exists()


def test_quickstart_out_that_is_a_file_is_one_line(workspace, capfd):
    before = _snapshot(workspace)
    code = cli.main(["quickstart", "--budget", "tiny", "--out", str(workspace / "earlier.jsonl"), "--device", "cpu"])
    _one_line_error(capfd, code, "is a file: give a folder")
    code = cli.main(["quickstart", "--budget", "tiny", "--out", str(workspace / "earlier.jsonl" / "qs")])
    _one_line_error(capfd, code, "is a file, not a folder")
    assert _snapshot(workspace) == before


def test_quickstart_refuses_an_out_folder_of_another_run(tmp_path, capfd):
    out = tmp_path / "qs"
    (out / "steps").mkdir(parents=True)
    (out / "steps" / "run.json").write_text(json.dumps({"budget": "small", "budget_settings": {}, "seed": 0}))
    before = _snapshot(tmp_path)
    _one_line_error(capfd, cli.main(["quickstart", "--budget", "tiny", "--out", str(out), "--device", "cpu"]),
                    "holds a quickstart run with other settings (budget, budget_settings)")
    assert _snapshot(tmp_path) == before
    (out / "steps" / "run.json").unlink()
    (out / "summary.json").write_text("{}")  # an earlier run's results, without the settings it ran with
    before = _snapshot(tmp_path)
    _one_line_error(capfd, cli.main(["quickstart", "--budget", "tiny", "--out", str(out), "--device", "cpu"]),
                    "holds the results of an earlier quickstart run")
    assert _snapshot(tmp_path) == before


def test_unexpected_errors_are_one_line_with_the_traceback_in_a_log(workspace, capfd, monkeypatch, tmp_path):
    monkeypatch.setenv("TRL_UNITTEST_CACHE", str(tmp_path / "cache"))

    def broken(args):
        raise RuntimeError("something deep\nwith a second line")

    monkeypatch.setattr("trl_unittest.cli.run_demo", broken)
    parser_default = cli.add_demo_parser
    monkeypatch.setattr(cli, "add_demo_parser", lambda sub: parser_default(sub).set_defaults(func=broken))
    code = cli.main(["demo"])
    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1 and "RuntimeError: something deep with a second line" in err[0], err
    logs = list((tmp_path / "cache" / "logs").glob("demo-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err[0]
    with pytest.raises(RuntimeError, match="something deep"):  # --debug: the traceback itself
        cli.main(["demo", "--debug"])


# ------------------------------------------------------------------------------------ no work lost
def _eval_cmd(workspace: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "trl_unittest.cli", "eval", "--model", str(workspace / "model"), "--dataset",
            str(workspace / "tasks.jsonl"), "--n", "4", "--k", "1", "4", "--batch-size", "4",
            "--max-new-tokens", "12", "--sandbox", "auto", "--out", str(out)]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def _done_groups(partial: Path) -> int:
    if not partial.exists():
        return 0
    return sum('"done": true' in line for line in partial.read_text().splitlines())


@pytest.mark.slow
def test_interrupted_eval_keeps_results_and_resumes_to_the_same_result(workspace, tmp_path):
    """40 tasks x 4 samples run in 3 groups; SIGINT (by pid) after the first group is kept; the same command resumes
    and ends with the rows of an uninterrupted run, and refuses to overwrite the finished file."""
    out = tmp_path / "res.jsonl"
    partial = Path(str(out) + ".partial")
    # SIGINT back to its default in the child: a suite started in the background by a shell inherits it ignored,
    # and Python then installs no KeyboardInterrupt handler (the run would finish instead of stopping)
    proc = subprocess.Popen(_eval_cmd(workspace, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while _done_groups(partial) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip() and "it/s]" not in line and "task/s]" not in line]
    assert proc.returncode == 130, err[-2000:]
    assert lines[-1].startswith("trl-unittest eval: interrupted:") and "run the same command again to resume" in \
        lines[-1] and "Traceback" not in err, err[-2000:]
    kept = _done_groups(partial)
    assert 1 <= kept < 3 and not out.exists()

    resumed = subprocess.run(_eval_cmd(workspace, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not partial.exists()
    fresh = tmp_path / "fresh.jsonl"
    whole = subprocess.run(_eval_cmd(workspace, fresh), env=_env(), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    rows, expected = ([json.loads(line) for line in p.read_text().splitlines()] for p in (out, fresh))
    assert len(rows) == 40 and rows == expected  # same completions, verdicts and pass@k
    assert json.loads(resumed.stdout.splitlines()[-1])["pass_at_k"] == json.loads(whole.stdout.splitlines()[-1])[
        "pass_at_k"]

    finished = out.read_bytes()
    again = subprocess.run(_eval_cmd(workspace, out), env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists: pass --overwrite" in again.stderr and out.read_bytes() == finished
