"""``trl-unittest build``: the dataset builder on the command line.

Wire into the main CLI with ``add_build_parser(subparsers)``; the parser's default ``func`` is :func:`run_build`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_build_parser(subparsers) -> argparse.ArgumentParser:
    from trl_unittest.data.builder import BuilderConfig

    p = subparsers.add_parser(
        "build", help="mine functions from Python sources and generate their unit tests",
        description="Mine public, documented, self-contained functions and generate unit tests for them "
                    "(doctests, observe-and-record under two hash seeds, mutation adequacy).")
    p.add_argument("--source", action="append", required=True,
                   help="a folder or .py file, 'stdlib' / 'stdlib:mod1,mod2', 'dist:NAME' (an installed "
                        "distribution), or 'hf:PATH_OR_NAME[#column]' (a dataset with a code column, streamed). "
                        "Repeat for several sources.")
    p.add_argument("--out", required=True, help="output folder: shards (resumable), dataset/ (save_to_disk), "
                                                "report.json")
    p.add_argument("--column", default="content", help="code column of dataset sources (default: content)")
    p.add_argument("--format", action="append", choices=["parquet", "jsonl"], default=[],
                   help="also write OUT/tasks.parquet and/or OUT/tasks.jsonl")
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="push the dataset to the Hub")
    defaults = BuilderConfig()
    for f in dataclasses.fields(BuilderConfig):
        name = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_ = f.metadata.get("help", "") + f" (default: {default})"
        if isinstance(default, bool):
            p.add_argument(name, default=default, action=argparse.BooleanOptionalAction, help=help_)
        elif isinstance(default, tuple):
            p.add_argument(name, type=int, nargs=len(default), default=default, help=help_)
        elif default is None:
            typ = str if f.name.endswith("path") else int
            p.add_argument(name, type=typ, default=None, help=help_)
        else:
            p.add_argument(name, type=type(default), default=default, help=help_)
    p.set_defaults(func=run_build)
    return p


def run_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trl_unittest.data.builder import BuilderConfig, build_dataset, save_dataset

    cfg = BuilderConfig(**{f.name: (tuple(getattr(args, f.name)) if isinstance(getattr(args, f.name), list)
                                    else getattr(args, f.name))
                           for f in dataclasses.fields(BuilderConfig) if hasattr(args, f.name)})
    ds, report = build_dataset(args.source, cfg, out_dir=args.out, column=args.column, return_report=True)
    out = Path(args.out)
    for fmt in args.format:
        save_dataset(ds, out / f"tasks.{fmt}", fmt)
    if args.push_to_hub:
        ds.push_to_hub(args.push_to_hub)
    print(json.dumps({"tasks": len(ds), "seen": report.seen, "kept": report.kept,
                      "dropped": dict(report.dropped), "out": str(out)}), file=sys.stdout)
    return 0


def main(argv=None) -> int:  # standalone: python -m trl_unittest.data.cli build ...
    parser = argparse.ArgumentParser(prog="trl-unittest")
    sub = parser.add_subparsers(dest="command", required=True)
    add_build_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
