"""Statistics over seeds, one definition for tables and figures (the text-table formatter: `odenets.formatting`).

* `spread`: the best value, the mean and the *sample* standard deviation (n - 1 in the denominator)
  of one quantity over n seeds; the figures' bands are mean +- this std too.
* `welch`: does A beat B? The difference of the means, Welch's t-test of it (unequal variances,
  Welch-Satterthwaite degrees of freedom): its two-sided p-value and its confidence interval at any level
  (`Comparison.interval`). With a single seed on a side there is no test (the difference is still shown).
* `holm`: Holm's step-down adjustment of a family's p-values (`odenets.reporting.verdicts` decides a claim on it).
* `permutation_p`: the same question without the normal assumption Welch's test rests on: the two-sided
  p-value of the difference of the means over every relabelling of the pooled seeds (exact up to 8 + 8
  seeds: 12,870 splits; a fixed-seed sample of 20,000 beyond). Shown beside Welch's p as a check on it with
  few seeds; the verdicts are Welch's.
* `seeds_to_decide`: seeds per side a two-sided two-sample t-test at a given level needs for 80% power, if the
  true difference and spread were the ones observed (the standard power calculation, by the noncentral t).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Spread:
    best: float
    mean: float
    std: float | None  # sample std; None for a single value
    n: int

    def describe(self, digits: int = 2) -> str:
        if self.n < 2:
            return "n=1 seed"
        return f"mean {self.mean:.{digits}f} ± {self.std:.{digits}f} (sample std, n={self.n})"


def spread(values: Sequence[float], higher_is_better: bool = True) -> Spread:
    values = [float(v) for v in values]
    best = max(values) if higher_is_better else min(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Spread(best, statistics.fmean(values), std, len(values))


def band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std along `axis` (std 0 where there is one value): the figures' mean +- std bands."""
    n = values.shape[axis]
    return values.mean(axis=axis), values.std(axis=axis, ddof=1) if n > 1 else np.zeros_like(values.mean(axis=axis))


@dataclass(frozen=True)
class Comparison:
    """mean(A) - mean(B) and Welch's test of it: the standard error, the Welch-Satterthwaite degrees of freedom
    and the two-sided p-value (all None with n < 2 on a side)."""

    difference: float
    n_a: int
    n_b: int
    se: float | None = None
    df: float | None = None
    p: float | None = None

    def interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        """Welch's confidence interval of the difference at `confidence`; None with n < 2 on a side."""
        if self.se is None:
            return None
        if self.se == 0:
            return self.difference, self.difference
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.difference - half, self.difference + half

    @property
    def low(self) -> float | None:
        return None if self.se is None else self.interval()[0]

    @property
    def high(self) -> float | None:
        return None if self.se is None else self.interval()[1]


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """mean(a) - mean(b) with Welch's t-test (unequal variances)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # every seed equal on both sides: the difference is exact
        return Comparison(diff, len(a), len(b), 0.0, None, 1.0 if diff == 0 else 0.0)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return Comparison(diff, len(a), len(b), se, df, float(2 * scipy_stats.t.sf(abs(diff) / se, df)))


def holm(p: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest p times (m - k + 1), made
    non-decreasing in that order and capped at 1. Rejecting where the adjusted p is below alpha controls the
    family-wise error rate at alpha under any dependence (Holm 1979)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [1.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def permutation_p(a: Sequence[float], b: Sequence[float], samples: int = 20000) -> float | None:
    """Two-sided permutation p-value of mean(a) - mean(b); None with fewer than 2 values on a side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    pooled, n = np.concatenate([a, b]), len(a)
    observed = abs(a.mean() - b.mean())
    if math.comb(len(pooled), n) <= samples:
        splits = np.array(list(itertools.combinations(range(len(pooled)), n)))
    else:
        rng = np.random.default_rng(0)
        splits = np.array([rng.permutation(len(pooled))[:n] for _ in range(samples)])
    first = pooled[splits].mean(axis=1)
    second = (pooled.sum() - first * n) / (len(pooled) - n)
    return float(np.mean(np.abs(first - second) >= observed - 1e-12))


def seeds_to_decide(a: Sequence[float], b: Sequence[float], level: float = 0.05, power: float = 0.8,
                    most: int = 1000) -> int | None:
    """Seeds per side for a two-sided two-sample t-test at `level` to detect the observed difference of the
    means with `power`, at the observed pooled standard deviation; None without two seeds a side or a
    difference, `most` + 1 beyond `most`. The power grows with n, so the least such n is found by bisection."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    sd = math.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1)) / (len(a) + len(b) - 2))
    delta = abs(a.mean() - b.mean())
    if delta == 0:
        return None
    if sd == 0:
        return 2

    def enough(n: int) -> bool:
        df, ncp = 2 * n - 2, delta / (sd * math.sqrt(2 / n))
        critical = scipy_stats.t.ppf(1 - level / 2, df)
        wrong_side = scipy_stats.nct.cdf(-critical, df, ncp)  # NaN where it underflows (a large ncp): 0 then
        return scipy_stats.nct.sf(critical, df, ncp) + (0.0 if math.isnan(wrong_side) else wrong_side) >= power

    if not enough(most):
        return most + 1
    low, high = 2, most  # enough(high); find the least n that is
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low
