"""Statistics over seeds, one definition for tables and figures; and the one text-table formatter.

* `spread`: the best value, the mean and the *sample* standard deviation (n - 1 in the denominator)
  of one quantity over n seeds; the figures' bands are mean +- this std too.
* `welch`: does A beat B? The difference of the means with its 95% confidence interval from Welch's
  t (unequal variances, Welch-Satterthwaite degrees of freedom). A claim is `supported` when the whole
  interval is above 0, `contradicted` when it is below, `inconclusive` otherwise, and `n < 2` when a
  side has a single seed (no interval: the difference of the two values is still shown).
* `permutation_p`: the same question without the normal assumption Welch's interval rests on: the two-sided
  p-value of the difference of the means over every relabelling of the pooled seeds (exact up to 8 + 8
  seeds: 12,870 splits; a fixed-seed sample of 20,000 beyond). Shown beside the interval as a check on it
  with few seeds; the verdicts are the interval's.
* `seeds_to_decide`: seeds per side a two-sided two-sample t-test at 5% needs for 80% power, if the true
  difference and spread were the ones observed (the standard power calculation, by the noncentral t).
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
    difference: float  # mean(A) - mean(B)
    low: float | None  # 95% interval of the difference (None with n < 2 on a side)
    high: float | None
    n_a: int
    n_b: int

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "n < 2"
        return "supported" if self.low > 0 else "contradicted" if self.high < 0 else "inconclusive"

    def describe(self, digits: int = 2) -> str:
        interval = "" if self.low is None else f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return f"{self.difference:+.{digits}f}{interval} (n={self.n_a} vs {self.n_b}): {self.verdict}"


def welch(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Comparison:
    """mean(a) - mean(b) with Welch's confidence interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff, None, None, len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Comparison(diff, diff, diff, len(a), len(b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Comparison(diff, diff - half, diff + half, len(a), len(b))


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


def seeds_to_decide(a: Sequence[float], b: Sequence[float], power: float = 0.8, level: float = 0.05,
                    most: int = 1000) -> int | None:
    """Seeds per side for a two-sided two-sample t-test at `level` to detect the observed difference of the
    means with `power`, at the observed pooled standard deviation; None without two seeds a side or a
    difference, `most` + 1 beyond `most`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    sd = math.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1)) / (len(a) + len(b) - 2))
    delta = abs(a.mean() - b.mean())
    if delta == 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, most + 1):
        df, ncp = 2 * n - 2, delta / (sd * math.sqrt(2 / n))
        critical = scipy_stats.t.ppf(1 - level / 2, df)
        if scipy_stats.nct.sf(critical, df, ncp) + scipy_stats.nct.cdf(-critical, df, ncp) >= power:
            return n
    return most + 1


def markdown_grid(rows: Sequence[Sequence], columns: Sequence[str]) -> str:
    """A Markdown table through pandas (`DataFrame.to_markdown`): what every text table here is printed with."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(columns)).to_markdown(index=False, disable_numparse=True)
