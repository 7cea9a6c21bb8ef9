"""`run_compare`: check the config, make the shared inputs, run every (variant, seed) not yet finished, report;
and the `trl-unittest compare` command line."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from trl_unittest.compare.config import CompareConfig, ConfigError, resolve_ppo_python, run_spec_key


def _finished(run_dir: Path) -> dict[str, Any] | None:
    f = run_dir / "result.json"
    return json.loads(f.read_text()) if f.exists() else None


def _check_earlier_runs(config: CompareConfig, variants: dict[str, dict[str, Any]], out: Path) -> None:
    """A finished run made under other settings is neither reused nor overwritten: refuse before any work."""
    for name, v in variants.items():
        for seed in config.seeds:
            done = _finished(out / "runs" / name / f"seed{seed}")
            if done is not None and done.get("key") != run_spec_key(config, v):
                raise ConfigError(f"{out}/runs/{name}/seed{seed} holds a run made with other settings: use another "
                                  f"output_dir, or move that folder away to rerun it")


def run_compare(config: CompareConfig) -> dict[str, Any]:
    """Run the comparison described by ``config`` (see :class:`CompareConfig`); returns what ``results.json`` holds.

    Raises :class:`ConfigError` (before any expensive work) on a config that cannot run."""
    from rich.console import Console

    from trl_unittest.compare.prepare import prepare_inputs
    from trl_unittest.compare.report import markdown_table, plot, summarise
    from trl_unittest.evaluation import resolve_device

    variants = config.validate()
    try:
        device = resolve_device(config.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    out = Path(config.output_dir)
    _check_earlier_runs(config, variants, out)
    console = Console(stderr=True)
    console.rule(f"[bold]trl-unittest compare[/bold]: {len(variants)} variants x {len(config.seeds)} seeds, "
                 f"{config.completions} completions each")
    out.mkdir(parents=True, exist_ok=True)
    inputs = prepare_inputs(config, variants, out, console)
    console.print(f"inputs: {json.dumps(inputs.info).replace(str(Path.home()), '~')}")
    plan = [(name, seed) for name in variants for seed in config.seeds]
    runs: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in variants}
    failed: list[dict[str, Any]] = []
    for i, (name, seed) in enumerate(plan, 1):
        run_dir = out / "runs" / name / f"seed{seed}"
        done = _finished(run_dir)
        if done is not None:
            console.print(f"[{i}/{len(plan)}] {name} seed {seed}: finished earlier, kept")
            runs[name][seed] = done
            continue
        v = variants[name]
        spec = {"name": name, "variant": v, "seed": seed, "key": run_spec_key(config, v), "run_dir": str(run_dir),
                "model": inputs.model, "heldout": inputs.heldout,
                "rl_tasks": inputs.rl_tasks[v.get("rl_tasks", "default")], "steps": config.steps(),
                "device": device, **{k: getattr(config, k) for k in (
                    "batch_size", "learning_rate", "beta", "temperature", "max_completion_length", "reward_scheme",
                    "eval_n", "eval_k", "curve_points", "curve_n", "workers", "progress")}}
        console.print(f"[{i}/{len(plan)}] {name} seed {seed} ({v['method']})")
        t = time.perf_counter()
        result, error = _run(spec, v["method"], config, run_dir)
        if result is None:
            failed.append({"variant": name, "seed": seed, "error": error})
            console.print(f"    [red]failed[/red]: {error}")
            continue
        runs[name][seed] = result
        console.print(f"    held-out {_fmt(result['final']['pass_at_k'])} in {time.perf_counter() - t:.0f} s")
    summary = summarise(runs, variants, config.bootstrap_resamples, config.confidence)
    table = markdown_table(summary, config.confidence)
    png = plot(summary, out / "pass1_vs_completions.png",
               title=f"held-out pass@1, {summary and next(iter(summary.values()))['tasks']} tasks (shaded: "
                     f"{config.confidence:.0%} bootstrap interval over seeds and tasks)")
    results = {"config": asdict(config), "variants": variants, "inputs": inputs.info, "summary": summary,
               "failed": failed, "runs": [_brief(r) for by_seed in runs.values() for r in by_seed.values()],
               "files": {"table": str(out / "results.md"), "plot": str(png)}}
    (out / "results.md").write_text(_markdown(config, inputs.info, table, failed))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table, file=sys.stderr)  # as markdown, unwrapped
    console.print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {png}"
                  + (f"; [red]{len(failed)} runs failed[/red] (rerun to retry them)" if failed else ""))
    return results


def _run(spec: dict[str, Any], method: str, config: CompareConfig, run_dir: Path):
    """(result, None) or (None, the error's last line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    if method != "ppo" and not config.isolate:
        from trl_unittest.compare.job import run_job

        try:
            return run_job(spec), None
        except Exception as e:  # noqa: BLE001 (one failed run is reported; the others go on)
            import traceback

            (run_dir / "error.txt").write_text(traceback.format_exc())
            return None, f"{type(e).__name__}: {e}"
    python = resolve_ppo_python(config.ppo_python) if method == "ppo" else sys.executable
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    package_root = str(Path(__file__).resolve().parents[2])  # both environments import this copy of the package
    env = {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1",
           "PYTHONPATH": os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    rc = subprocess.run([python, "-m", "trl_unittest.compare.job", str(spec_path)], env=env).returncode
    done = _finished(run_dir)
    if rc == 0 and done is not None:
        return done, None
    err = run_dir / "error.txt"
    last = err.read_text().strip().splitlines()[-1] if err.exists() else f"the run's process exited with {rc}"
    return None, f"{last} (see {err})" if err.exists() else last


def _fmt(pass_at_k: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in pass_at_k.items())


def _brief(r: dict[str, Any]) -> dict[str, Any]:
    keep = ("variant", "method", "seed", "completions", "steps", "train_seconds", "samples_per_second",
            "peak_memory_mib", "peak_memory_kind", "seconds", "device")
    return {**{k: r.get(k) for k in keep}, "pass_at_k": r["final"]["pass_at_k"]}


def _markdown(config: CompareConfig, info: dict[str, Any], table: str, failed: list) -> str:
    lines = ["# trl-unittest compare", "",
             f"Model `{config.model_name_or_path}`; {info.get('heldout_tasks')} held-out tasks x {config.eval_n} "
             f"samples; RL tasks `{config.rl_tasks}` ({info.get('rl_tasks_default')}); {config.completions} "
             f"completions sampled per run ({config.steps()} steps x {config.batch_size}); seeds {config.seeds}. "
             f"Intervals: {config.confidence:.0%} percentile bootstrap over seeds and tasks "
             f"({config.bootstrap_resamples} resamples); `pass@1 - base` is paired (same seeds, same tasks).", "",
             table]
    if failed:
        lines += ["", "Failed runs (rerun the same command to retry them):", ""]
        lines += [f"- {f['variant']} seed {f['seed']}: {f['error']}" for f in failed]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------- CLI
def add_compare_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare", help="base / PPO / GRPO / RLOO / ActorCritic (and ablations) at an equal budget, several seeds, "
                        "held-out pass@k with bootstrap intervals",
        description="Compare RL methods from the same model on the same tasks. Arguments: CompareConfig, from "
                    "--config YAML and/or --flags (flags win), parsed by trl.TrlParser; e.g. "
                    "trl_unittest/configs/compare.yaml.",
        prefix_chars="+", add_help=False)  # every --flag (and --help) goes to TrlParser
    p.add_argument("rest", nargs=argparse.REMAINDER, help="--config YAML and --field value pairs")
    p.set_defaults(func=run_compare_cli)
    return p


def parse_compare_args(argv: list[str]) -> CompareConfig:
    """``CompareConfig`` from ``--config`` YAML and flags; a bad one raises :class:`ConfigError` (one line)."""
    from trl import TrlParser

    parser = TrlParser((CompareConfig,), prog="trl-unittest compare")

    def one_line(message: str):  # argparse prints its usage block and exits; the one line is the useful part
        raise ConfigError(message)

    parser.error = one_line
    try:
        (config,) = parser.parse_args_and_config(args=argv)
    except ConfigError:
        raise
    except (ValueError, TypeError, OSError) as e:  # unknown YAML keys, unreadable file, bad YAML
        raise ConfigError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return config


def run_compare_cli(args: argparse.Namespace) -> int:
    try:
        config = parse_compare_args(list(args.rest or []))
        results = run_compare(config)
    except ConfigError as e:
        print(f"trl-unittest compare: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({name: {k: s.get(k) for k in ("pass@1", "delta_pass@1_vs_base")}
                      for name, s in results["summary"].items()}))
    return 1 if results["failed"] else 0
