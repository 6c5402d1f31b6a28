"""Statistics over seeds, one definition for tables and figures; and the one text-table formatter.

* `spread`: the best value, the mean and the *sample* standard deviation (n - 1 in the denominator)
  of one quantity over n seeds; the figures' bands are mean +- this std too.
* `welch`: does A beat B? The difference of the means with its 95% confidence interval from Welch's
  t (unequal variances, Welch-Satterthwaite degrees of freedom). A claim is `supported` when the whole
  interval is above 0, `contradicted` when it is below, `inconclusive` otherwise, and `n < 2` when a
  side has a single seed (no interval: the difference of the two values is still shown).
"""

from __future__ import annotations

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


def markdown_grid(rows: Sequence[Sequence], columns: Sequence[str]) -> str:
    """A Markdown table through pandas (`DataFrame.to_markdown`): what every text table here is printed with."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(columns)).to_markdown(index=False, disable_numparse=True)
