"""The comparison's outputs from its finished runs: statistics per variant (``results.json``), a markdown table
(``results.md``) and the plot of held-out pass@1 against completions sampled (``pass1_vs_completions.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trl_unittest.compare.stats import bootstrap_ci, difference_ci, paired_difference_ci


def summarise(runs: dict[str, dict[int, dict[str, Any]]], variants: dict[str, dict[str, Any]],
              resamples: int = 10_000, confidence: float = 0.95) -> dict[str, dict[str, Any]]:
    """Per variant: pass@k over its seeds and the held-out tasks with bootstrap intervals, the paired difference in
    pass@1 to ``base`` (over the seeds both have), the difference to ``actor_critic`` (tasks paired, each side's
    seeds resampled on their own: the question users bring is whether ActorCritic beats the other methods), the
    curve, and speed and memory. ``runs[variant][seed]`` is a run's result."""
    base = runs.get("base", {})
    reference = {sd: r["final"]["per_task"]["pass@1"] for sd, r in runs.get("actor_critic", {}).items()}
    out: dict[str, dict[str, Any]] = {}
    for name, by_seed in runs.items():
        if not by_seed:
            continue
        seeds = sorted(by_seed)
        first = by_seed[seeds[0]]
        s: dict[str, Any] = {"method": variants.get(name, {}).get("method", first["method"]), "seeds": seeds,
                             "tasks": len(first["heldout_task_ids"])}
        for key in first["final"]["pass_at_k"]:
            matrix = np.array([by_seed[sd]["final"]["per_task"][key] for sd in seeds])
            s[key] = bootstrap_ci(matrix, resamples, confidence).to_dict()
        common = [sd for sd in seeds if sd in base]
        if name != "base" and common:
            a = np.array([by_seed[sd]["final"]["per_task"]["pass@1"] for sd in common])
            b = np.array([base[sd]["final"]["per_task"]["pass@1"] for sd in common])
            s["delta_pass@1_vs_base"] = paired_difference_ci(a, b, resamples, confidence).to_dict()
        if name not in ("actor_critic", "base") and reference:
            a = np.array([by_seed[sd]["final"]["per_task"]["pass@1"] for sd in seeds])
            s["delta_pass@1_vs_actor_critic"] = difference_ci(a, np.array(list(reference.values())), resamples,
                                                              confidence).to_dict()
        s["curve"] = _curve(by_seed, seeds, base, resamples, confidence)
        s["completions"] = first.get("completions", 0)
        rates = [by_seed[sd]["samples_per_second"] for sd in seeds if by_seed[sd].get("samples_per_second")]
        s["samples_per_second"] = float(np.mean(rates)) if rates else None
        s["train_seconds"] = float(np.mean([by_seed[sd].get("train_seconds", 0.0) for sd in seeds]))
        peaks = [by_seed[sd]["peak_memory_mib"] for sd in seeds if by_seed[sd].get("peak_memory_mib") is not None]
        s["peak_memory_mib"] = float(max(peaks)) if peaks else None
        s["peak_memory_kind"] = first.get("peak_memory_kind")
        out[name] = s
    return out


def _curve(by_seed, seeds, base, resamples, confidence) -> list[dict[str, Any]]:
    """Held-out pass@1 at each measured point, over the seeds that have it: 0 completions is the base model (every
    method starts from it), the last point is the final evaluation."""
    points: dict[int, list[list[float]]] = {}
    if any(sd in base for sd in seeds):
        points[0] = [base[sd]["final"]["per_task"]["pass@1"] for sd in seeds if sd in base]
    for sd in seeds:
        r = by_seed[sd]
        for c in r.get("curve", []):
            points.setdefault(c["completions"], []).append(c["per_task"])
        if r.get("completions"):
            points.setdefault(r["completions"], []).append(r["final"]["per_task"]["pass@1"])
    return [{"completions": c, "seeds": len(rows), **bootstrap_ci(np.array(rows), resamples, confidence).to_dict()}
            for c, rows in sorted(points.items())]


def markdown_table(summary: dict[str, dict[str, Any]], confidence: float = 0.95) -> str:
    ks = sorted({k for s in summary.values() for k in s if k.startswith("pass@")}, key=lambda k: int(k[5:]))
    pct = f"{confidence:.0%}"
    versus_ac = any("delta_pass@1_vs_actor_critic" in s for s in summary.values())
    head = ["variant", "method", "seeds", *[f"held-out {k} [{pct} CI]" for k in ks],
            f"pass@1 - base [{pct} CI]", *([f"pass@1 - actor_critic [{pct} CI]"] if versus_ac else []),
            "completions", "train s", "samples/s", "peak MiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]

    def ci(d):
        return f"{d['mean']:.3f} [{d['low']:.3f}, {d['high']:.3f}]" if d else "-"

    def delta(d):
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"

    for name, s in summary.items():
        cells = [name, s["method"], str(len(s["seeds"])), *[ci(s.get(k)) for k in ks],
                 delta(s.get("delta_pass@1_vs_base")),
                 *([delta(s.get("delta_pass@1_vs_actor_critic"))] if versus_ac else []), str(s["completions"]),
                 f"{s['train_seconds']:.0f}" if s["completions"] else "-",
                 f"{s['samples_per_second']:.1f}" if s["samples_per_second"] else "-",
                 f"{s['peak_memory_mib']:.0f}" if s["peak_memory_mib"] is not None else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Held-out pass@1 against completions sampled, one line per variant with its interval shaded; the base model
    as a dashed level across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    right = max((p["completions"] for s in summary.values() for p in s["curve"]), default=1) or 1
    for name, s in summary.items():
        curve = s["curve"]
        if s["method"] == "base":
            p = curve[0] if curve else None
            if p:
                ax.axhline(p["mean"], color="grey", ls="--", lw=1, label=f"{name} ({len(s['seeds'])} seeds)")
                ax.axhspan(p["low"], p["high"], color="grey", alpha=0.12)
            continue
        xs = [p["completions"] for p in curve]
        line, = ax.plot(xs, [p["mean"] for p in curve], "o-", ms=3, label=f"{name} ({len(s['seeds'])} seeds)")
        ax.fill_between(xs, [p["low"] for p in curve], [p["high"] for p in curve], color=line.get_color(),
                        alpha=0.18)
    ax.set_xlim(0, right * 1.02)
    ax.set_xlabel("completions sampled for training")
    ax.set_ylabel("held-out pass@1")
    ax.set_title(title or "held-out pass@1 (shaded: 95% bootstrap interval over seeds and tasks)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
