"""Intervals and tests for success rates: paired differences on shared held-out seeds, and the
spread of a curve across campaign seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
"""Resamples are drawn from a fixed seed, so the same outcomes always give the same interval."""

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (then the normal's 1.96).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of the mean of `values` (e.g. one final success rate per campaign
    seed). With one value the interval is that value (nothing to estimate a spread from)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to average")
    mean = float(x.mean())
    if x.size == 1:
        return mean, mean, mean
    half = t_quantile_975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, mean - half, mean + half


def mcnemar_exact_p(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" each discordant pair (one side
    succeeded, the other failed) is equally likely to go either way."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def paired_difference(
    strata: Sequence[tuple[Sequence[bool], Sequence[bool]]],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """B's success rate minus A's on paired outcomes, pooled over `strata` (e.g. tasks), each a
    pair of equally long outcome lists (A's and B's on the same seeds, in the same order).

    The 95% interval is a percentile bootstrap that resamples seeds within each stratum (the
    pairs stay together); the p-value is the exact McNemar test on the discordant pairs.
    """
    diffs, a_total, b_total = [], 0, 0
    for a, b in strata:
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        if a.shape != b.shape:
            raise ValueError(f"paired outcomes differ in length: {a.size} and {b.size}")
        diffs.append(b - a)
        a_total, b_total = a_total + int(a.sum()), b_total + int(b.sum())
    n = sum(d.size for d in diffs)
    if n == 0:
        raise ValueError("no paired outcomes to compare")
    rng = np.random.default_rng(seed)
    boot = np.zeros(resamples, dtype=np.float64)
    for d in diffs:
        if d.size:
            boot += d[rng.integers(0, d.size, size=(resamples, d.size))].sum(axis=1)
    boot /= n
    lo, hi = np.quantile(boot, [0.025, 0.975])
    b_only = sum(int((d > 0).sum()) for d in diffs)
    a_only = sum(int((d < 0).sum()) for d in diffs)
    p = mcnemar_exact_p(a_only, b_only)
    return {
        "n": n,
        "rate_a": a_total / n,
        "rate_b": b_total / n,
        "difference": (b_total - a_total) / n,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "a_only": a_only,
        "b_only": b_only,
        "p_value": p,
        "significant": bool(p < 0.05),
    }
