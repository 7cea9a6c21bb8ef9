"""Training seeds of `rl_heldout.py` runs pooled: held-out pass@k and its change against the base model, with 95%
intervals over seeds and tasks (the comparison's bootstrap, `trl_unittest.compare.stats`).

Each `--run LABEL=FILE[,FILE...]` names one configuration and its runs (one JSON per training seed, written by
`rl_heldout.py --out`); `--base` is the base model's run (`--steps 0`), evaluated on the same held-out tasks. Prints
a markdown table; the last line is the same figures as JSON. `--versus LABEL` adds each run's difference to that
run (tasks paired, each side's seeds resampled on their own: `trl_unittest.compare.stats.difference_ci`).

    python benchmarks/rl_seeds.py --base base.json --run default=s0.json,s1.json,s2.json --run w0.1=a0.json,a1.json
    python benchmarks/rl_seeds.py --base base.json --run ac=a0.json,a1.json,a2.json --run grpo=g0.json,g1.json \
        --versus ac
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trl_unittest.compare.stats import bootstrap_ci, difference_ci, paired_difference_ci  # noqa: E402


def rows_of(path: str) -> dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {path}: cannot read it as JSON ({e}); pass files written by rl_heldout.py --out")
    if "heldout_rows" not in data:
        raise SystemExit(f"error: {path} is not a result of rl_heldout.py (no heldout_rows); rerun it with --out")
    return {r["task_id"]: r for r in data["heldout_rows"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="rl_heldout.py JSON of the base model (--steps 0)")
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=FILE[,FILE...]",
                    help="one configuration and its seeds' JSON files (repeatable)")
    ap.add_argument("--k", default="1,10", help="pass@k columns, comma-separated (each must be in every file)")
    ap.add_argument("--versus", default=None, metavar="LABEL",
                    help="also give each run's difference to this run's label (e.g. the method under test)")
    args = ap.parse_args(argv)
    ks = [f"pass@{k.strip()}" for k in args.k.split(",") if k.strip()]
    for spec in args.run:
        if "=" not in spec or not spec.split("=", 1)[1]:
            ap.error(f"--run {spec!r}: expected LABEL=FILE[,FILE...]")
    labels = [spec.split("=", 1)[0] for spec in args.run]
    if args.versus is not None and args.versus not in labels:
        ap.error(f"--versus {args.versus!r}: not one of the --run labels ({', '.join(labels)})")
    base = rows_of(args.base)
    tasks = sorted(base)
    missing = [k for k in ks if k not in base[tasks[0]]]
    if missing:
        ap.error(f"--k: {', '.join(missing)} not in {args.base}; rerun rl_heldout.py with --eval-k")
    table = {"base": {"seeds": 1, **{k: bootstrap_ci([base[t][k] for t in tasks]).to_dict() for k in ks}}}
    matrices: dict[str, dict[str, list[list[float]]]] = {}
    for spec in args.run:
        label, files = spec.split("=", 1)
        files = files.split(",")
        runs = [rows_of(f) for f in files]
        for f, r in zip(files, runs):
            if sorted(r) != tasks:
                ap.error(f"{f}: its held-out tasks differ from {args.base}'s; evaluate both on the same tasks")
        entry = {"seeds": len(runs)}
        matrices[label] = {k: [[r[t][k] for t in tasks] for r in runs] for k in ks}
        for k, mine in matrices[label].items():
            entry[k] = bootstrap_ci(mine).to_dict()
            entry[k + " change"] = paired_difference_ci(mine, [[base[t][k] for t in tasks]] * len(runs)).to_dict()
        table[label] = entry
    if args.versus is not None:
        for label in labels:
            if label != args.versus:
                for k in ks:
                    table[label][f"{k} - {args.versus}"] = difference_ci(matrices[label][k],
                                                                         matrices[args.versus][k]).to_dict()

    def cell(ci):
        return f"{ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"

    head = ["run", "seeds"] + [c for k in ks for c in (k, "change [95%]")]
    if args.versus is not None:
        head += [f"{k} - {args.versus} [95%]" for k in ks]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, e in table.items():
        cells = [label, str(e["seeds"])]
        for k in ks:
            cells += [f"{e[k]['mean']:.3f}", cell(e[k + " change"]) if k + " change" in e else ""]
        if args.versus is not None:
            cells += [cell(e[f"{k} - {args.versus}"]) if f"{k} - {args.versus}" in e else "" for k in ks]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps({"tasks": len(tasks), "table": table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
