"""`trl-unittest` command line: `demo`, `build`, `train`, `eval`, `quickstart`, `model`, `compare`.

Errors are one line on stderr: a bad input (:class:`~trl_unittest.usage.UsageError`) exits with code 2, Ctrl-C with
130 and a line saying what was kept, anything else with 1 and the traceback in a log file under
``$TRL_UNITTEST_CACHE/logs``; ``--debug`` (anywhere on the line) shows tracebacks instead."""

from __future__ import annotations

import argparse
import os
import sys
import time


def add_demo_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("demo", help="score reference, wrong, broken and hanging solutions of MBPP tasks with "
                                           "the sandboxed unit-test reward")
    p.add_argument("--mbpp", default=None, help="folder with mbpp.jsonl (default: $TRL_UNITTEST_MBPP, else ../shared/data/mbpp "
                                                        "beside the checkout)")
    p.add_argument("--tasks", type=int, default=20, help="number of MBPP test-split tasks")
    p.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare", "none"])
    p.add_argument("--test-timeout", type=float, default=1.0,
                   help="seconds per test when a task's reference runtime is unknown")
    p.set_defaults(func=run_demo)
    return p


def _variants(task) -> dict[str, str]:
    """Completions of several kinds for one task: the reference and programs that should score lower."""
    import ast

    from trl_unittest.data.mutation import generate_mutants

    mutant = task.reference.replace("return ", "return None and ", 1)
    tree = ast.parse(task.reference)
    for node in tree.body:  # mutate the entry point's definition, keep the rest of the reference
        if isinstance(node, ast.FunctionDef) and node.name == task.entry_point:
            found = generate_mutants(ast.get_source_segment(task.reference, node), task.entry_point, max_mutants=1)
            if found:
                node_src = found[0].source.replace(found[0].name, task.entry_point)
                mutant = task.reference.replace(ast.get_source_segment(task.reference, node), node_src)
    body_indent = "    "
    return {
        "reference": task.reference,
        "mutant": mutant,
        "syntax error": task.reference.replace("def ", "def (", 1),
        "runtime error": f"def {task.entry_point}(*args, **kwargs):\n{body_indent}return undefined_name\n",
        "hangs": f"def {task.entry_point}(*args, **kwargs):\n{body_indent}while True:\n{body_indent * 2}pass\n",
    }


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from trl_unittest.data.loaders import add_reference_runtimes, load_mbpp
    from trl_unittest.execution import ExecutionPool, Limits
    from trl_unittest.rewards import SCHEMES, UnitTestReward, outcome_metrics

    from trl_unittest.data.loaders import resolve_mbpp_path
    from trl_unittest.usage import UsageError

    try:
        mbpp = resolve_mbpp_path(args.mbpp)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    console = Console()
    tasks = load_mbpp(mbpp, split="test", as_dataset=False)[: args.tasks]
    pool = ExecutionPool(sandbox=args.sandbox, limits=Limits(test_timeout=args.test_timeout))
    # per-test budgets from each reference's own runtime: a hanging program costs a fraction of a second
    tasks, failed = add_reference_runtimes(tasks, pool)
    if failed:
        console.print(f"[yellow]{len(failed)} references failed their tests (flat budgets kept): {failed}[/yellow]")
    kinds = list(_variants(tasks[0]))
    cols = {"tests": [], "entry_point": [], "test_setup": [], "context": [], "reference_runtime": []}
    prompts, completions = [], []
    for task in tasks:
        for kind, program in _variants(task).items():
            prompts.append([{"role": "user", "content": task.prompt}])  # chat-style: the completion is the program
            completions.append([{"role": "assistant", "content": f"```python\n{program}\n```"}])
            cols["tests"].append([t.to_dict() for t in task.tests])
            cols["entry_point"].append(task.entry_point)
            cols["test_setup"].append(task.test_setup)
            cols["context"].append(task.context)
            cols["reference_runtime"].append(task.reference_runtime)
    with pool:
        console.print(f"[bold]{len(tasks)} MBPP tasks x {len(kinds)} solutions[/bold], sandbox: {pool.mode}, "
                      f"{pool.num_workers} workers")
        t0 = time.perf_counter()
        reward = UnitTestReward(pool=pool)
        results = reward.results(prompts, completions, **cols)
        seconds = time.perf_counter() - t0
    from trl_unittest.rewards import score

    table = Table(title="mean reward by kind of solution and scheme")
    table.add_column("solution")
    for scheme in SCHEMES:
        table.add_column(scheme, justify="right")
    table.add_column("all tests pass", justify="right")
    for k, kind in enumerate(kinds):
        rs = results[k:: len(kinds)]
        table.add_row(kind, *(f"{sum(score(r, s) for r in rs) / len(rs):+.3f}" for s in SCHEMES),
                      f"{sum(r.all_passed for r in rs)}/{len(rs)}")
    console.print(table)
    metrics = outcome_metrics(results)
    console.print(f"{len(results)} programs in {seconds:.1f} s; compile errors {metrics['compile_error']:.0%}, "
                  f"test timeouts {metrics['test_timeout']:.0%}, sandbox errors {metrics['sandbox_error']:.0%}")
    ok = all(r.all_passed for r in results[0:: len(kinds)]) and not any(r.all_passed for r in results[2:: len(kinds)])
    return 0 if ok else 1


class OneLineParser(argparse.ArgumentParser):
    """argparse's refusals as one line (the problem and where the flags are listed), not the usage block above it:
    its subcommands' usage runs to 30 lines, which hide the one that says what is wrong."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="trl-unittest", description="Reinforcement learning from unit tests, on TRL.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors (also "
                                                             "accepted after the command)")
    sub = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(sub)
    from trl_unittest.data.cli import add_build_parser

    add_build_parser(sub)
    from trl_unittest.evaluation import add_eval_parser
    from trl_unittest.models import add_model_parser
    from trl_unittest.quickstart import add_quickstart_parser, add_train_parser

    add_train_parser(sub)
    add_eval_parser(sub)
    add_quickstart_parser(sub)
    add_model_parser(sub)
    from trl_unittest.compare import add_compare_parser

    add_compare_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    if debug:
        return int(args.func(args) or 0)
    import warnings

    # libraries' deprecation notices are for developers (--debug shows them), not lines a user can act on
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from trl_unittest.usage import Interrupted, UsageError

    name = f"trl-unittest {args.command}"
    try:
        return int(args.func(args) or 0)
    except UsageError as e:
        print(f"{name}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"{name}: {_one_line(e)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 (a bug or an environment problem: one line here, the traceback in a log)
        log = _write_traceback(args.command)
        where = f"traceback in {log}" if log else "rerun with --debug for the traceback"
        print(f"{name}: {type(e).__name__}: {_one_line(e)} ({where})", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 400 else text[:397] + "..."


def _write_traceback(command: str) -> str | None:
    import traceback

    from trl_unittest.cache import cache_root

    try:
        logs = cache_root() / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        return None
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
