"""Bootstrap confidence intervals over seeds and tasks, written plainly with numpy.

A method's held-out score is a matrix ``x[seed, task]`` (per-task pass@k of the run with that seed). Its
uncertainty has two sources: which seeds were run (training noise) and which tasks were drawn (the benchmark's own
sample). The two-way bootstrap resamples both, independently and with replacement, and takes the mean of each
resampled matrix; the interval is the percentile interval of those means (Efron & Tibshirani 1993, ch. 13;
the seed-and-task resampling follows Bouthillier et al. 2021, "Accounting for variance in machine learning
benchmarks"). A difference between two methods is bootstrapped *paired*: the same resampled seeds and tasks for
both, since every method runs the same seeds on the same tasks.

Hand-written because scipy.stats.bootstrap resamples one axis (observations) only and would need the seed axis
folded into it, which makes seeds look like independent tasks and narrows the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_matrix(x) -> np.ndarray:
    m = np.asarray(x, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"expected a (seeds, tasks) matrix with at least one of each, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("the scores contain NaN or infinite values")
    return m


def _resampled_means(matrices: list[np.ndarray], resamples: int, seed: int, chunk: int = 500,
                     paired_seeds: bool = True) -> list[np.ndarray]:
    """Means of ``resamples`` two-way resamples, the same task indices for every matrix; the same seed indices too
    when ``paired_seeds``, else each matrix's seeds (their counts may differ) resampled on their own."""
    tasks = matrices[0].shape[1]
    rng = np.random.default_rng(seed)
    out = [np.empty(resamples) for _ in matrices]
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        if paired_seeds:
            seed_idx = rng.integers(0, matrices[0].shape[0], size=(b, matrices[0].shape[0]))
            task_idx = rng.integers(0, tasks, size=(b, tasks))
            seed_idxs = [seed_idx] * len(matrices)
        else:
            task_idx = rng.integers(0, tasks, size=(b, tasks))
            seed_idxs = [rng.integers(0, m.shape[0], size=(b, m.shape[0])) for m in matrices]
        for m, idx, dest in zip(matrices, seed_idxs, out):
            per_seed = m[:, task_idx].mean(axis=2)  # (seeds, b): each seed's mean over the resampled tasks
            dest[start:start + b] = per_seed[idx, np.arange(b)[:, None]].mean(axis=1)
    return out


def _interval(mean: float, draws: np.ndarray, confidence: float) -> Interval:
    """``mean`` with the percentile interval of its bootstrap ``draws``."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return Interval(float(mean), float(low), float(high))


def bootstrap_ci(x, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``x`` (a ``(seeds, tasks)`` matrix, or a vector of tasks for one seed) and its percentile bootstrap
    interval, resampling seeds and tasks. Seeded: the same input gives the same interval."""
    m = _as_matrix(x)
    (means,) = _resampled_means([m], resamples, seed)
    return _interval(m.mean(), means, confidence)


def paired_difference_ci(a, b, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``a - b`` with a paired bootstrap interval: row i of both is the same seed, column j the same task."""
    ma, mb = _as_matrix(a), _as_matrix(b)
    if ma.shape != mb.shape:
        raise ValueError(f"paired matrices must have the same (seeds, tasks) shape: {ma.shape} vs {mb.shape}")
    means_a, means_b = _resampled_means([ma, mb], resamples, seed)
    return _interval(ma.mean() - mb.mean(), means_a - means_b, confidence)


def difference_ci(a, b, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``a`` minus mean of ``b`` for two methods trained separately: tasks resampled paired (the same
    held-out tasks for both), each method's seeds resampled on their own (its runs are independent of the other's,
    and the counts may differ, e.g. a method stopped after fewer seeds)."""
    ma, mb = _as_matrix(a), _as_matrix(b)
    if ma.shape[1] != mb.shape[1]:
        raise ValueError(f"both methods must be scored on the same tasks: {ma.shape[1]} vs {mb.shape[1]} columns")
    means_a, means_b = _resampled_means([ma, mb], resamples, seed, paired_seeds=False)
    return _interval(ma.mean() - mb.mean(), means_a - means_b, confidence)
