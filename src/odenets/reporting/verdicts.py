"""The papers' claims tested on our seeds, in sign and in size, with a correction for testing many at once.

A table's `claims` list orderings the paper states (`better` row above `worse` row; lower error is better).
Each is tested twice over the seeds of the index's budget (`Test`): on the **selection-free** values, which no
look at the test split chose (`index.selection_free`: at the validation-best epoch, else the last epoch's), the
verdict; and by the **papers' protocol** (each seed's best test value over epochs), beside it, labelled, with the
claims whose verdict differs between the two flagged (`Verdict.differs`). For each statistic:

* the difference of our means in the claim's direction and Welch's two-sided p-value (`stats.welch`), with the
  permutation p-value as a check on its normal assumption (`stats.permutation_p`);
* **multiplicity**: the family is one paper's claims within one budget (one statistic); over the claims of the
  family that have a p-value (m: two seeds or more a side), Holm's adjusted p (`stats.holm`). A claim is
  *decided* only when its adjusted p is below `ALPHA` = 0.05: `supported` when our difference is positive,
  `contradicted` when negative; otherwise `inconclusive` (`n < 2` with one seed on a side, `no runs yet`);
* the intervals: Welch's 95% interval (the raw one) and the Holm-adjusted one, at the level of the claim's own
  Holm step, 1 - ALPHA / (m - k + 1) for the claim ranked k-th by p: it excludes 0 whenever the claim is decided;
* the **size** verdict: the paper's own difference (from the rows' published values: their mean over runs where
  the paper gives one, else the value; or the claim's `paper: [better, worse]`) inside the adjusted interval,
  `size consistent`, or outside it, `size not reproduced`. Where the paper's numbers are on other data (the
  table's `paper_data`, e.g. HO-ResNet's CIFAR-10 beside our MNIST runs) the size is not judged: `other data`;
* where the sign is undecided, the seeds per side that would decide it at the observed difference and spread
  (`stats.seeds_to_decide`: 80% power, two-sided) at Bonferroni's ALPHA / m, the least Holm's first step asks:
  a claim whose p falls below it is decided whatever the family's other p-values are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache

from odenets.reporting.index import RunIndex, row_values
from odenets.reporting.published import Claim, Row, Table
from odenets.reporting.stats import Comparison, Spread, holm, permutation_p, seeds_to_decide, spread, welch

ALPHA = 0.05
_permutation_p = cache(permutation_p)  # the two statistics coincide on rows whose protocol is the last epoch
STATISTICS = {"free": "selection-free (validation-best or last epoch)",
              "protocol": "papers' protocol (best epoch)"}


@dataclass(frozen=True)
class Test:
    """One statistic's test of a claim: ours per side, Welch's comparison in the claim's direction (positive = as
    claimed), the permutation p, and, once the family is known (`adjust`), Holm's adjusted p and the level."""

    values: tuple[tuple[float, ...], tuple[float, ...]]  # per seed, in the claim's direction: (better, worse)
    ours: tuple[Spread | None, Spread | None]  # (better, worse) as the rows read
    comparison: Comparison | None
    permutation: float | None
    adjusted: float | None = None  # Holm's p within the family
    level: float | None = None  # ALPHA / (m - k + 1): the claim's Holm step
    family: int = 0  # m, the claims of the family with a p-value

    @property
    def verdict(self) -> str:
        c = self.comparison
        if c is None:
            return "no runs yet"
        if c.p is None:
            return "n < 2"
        if self.adjusted is not None and self.adjusted < ALPHA:
            return "supported" if c.difference > 0 else "contradicted"
        return "inconclusive"

    def adjusted_interval(self) -> tuple[float, float] | None:
        """Welch's interval at the claim's Holm step, 1 - `level`."""
        c = self.comparison
        return None if c is None or c.p is None or self.level is None else c.interval(1 - self.level)

    def seeds_needed(self) -> int | None:
        """Seeds per side to decide the sign at ALPHA / m (None unless it is undecided with two seeds a side)."""
        if self.verdict != "inconclusive" or not self.family:
            return None
        return seeds_to_decide(*self.values, level=ALPHA / self.family)


@dataclass(frozen=True)
class Verdict:
    paper_name: str  # the family: one paper's claims (of one budget)
    table: str
    claim: Claim
    metric: str  # accuracy or error
    paper: tuple[float | None, float | None]  # the paper's (better, worse)
    free: Test  # the verdict's statistic
    protocol: Test  # the papers' protocol, beside it
    paper_data: str | None = None  # the paper's numbers were measured on other data
    stale: tuple[bool, bool] = (False, False)  # a side's runs ran code that has changed since
    runs: tuple[dict, ...] = ()  # both sides' runs

    @property
    def text(self) -> str:
        return self.claim.text

    @property
    def paper_diff(self) -> float | None:
        better, worse = self.paper
        if better is None or worse is None:
            return None
        return better - worse if self.metric != "error" else worse - better

    @property
    def sign(self) -> str:
        return self.free.verdict

    @property
    def differs(self) -> bool:
        """The papers' protocol reaches another verdict on the same claim."""
        return self.free.verdict != self.protocol.verdict

    @property
    def size(self) -> str:
        paper, interval = self.paper_diff, self.free.adjusted_interval()
        if paper is None:
            return "no paper numbers"
        if self.paper_data:
            return f"other data ({self.paper_data})"
        if self.free.comparison is None:
            return "no runs yet"
        if interval is None:
            return "n < 2"
        return "size consistent" if interval[0] <= paper <= interval[1] else "size not reproduced"

    @property
    def decide(self) -> str:
        """Seeds per side to settle an undecided sign, or ""."""
        n = self.free.seeds_needed()
        return "" if n is None else f"> {n - 1}" if n > 1000 else str(n)


def _paper_value(row: Row, metric: str) -> float | None:
    mean = row.published.mean(metric)
    return mean if mean is not None else row.published.get(metric)


def _test(better: Sequence[float], worse: Sequence[float], metric: str) -> Test:
    higher = metric != "error"
    forward, backward = (tuple(better), tuple(worse)) if higher else (tuple(worse), tuple(better))
    ours = (spread(better, higher) if better else None, spread(worse, higher) if worse else None)
    if not (better and worse):
        return Test((forward, backward), ours, None, None)
    return Test((forward, backward), ours, welch(forward, backward), _permutation_p(forward, backward))


def claim_tests(table: Table, index: RunIndex) -> list[Verdict]:
    """Every claim of `table` tested on the index's runs, unadjusted (`adjust` corrects a family)."""
    out = []
    for claim in table.claims:
        better, worse = table.row_named(claim.better), table.row_named(claim.worse)
        a, b = row_values(better, index, table.metric), row_values(worse, index, table.metric)
        paper = claim.paper or (_paper_value(better, table.metric), _paper_value(worse, table.metric))
        out.append(Verdict(
            table.paper, table.name, claim, table.metric, paper, _test(a.free, b.free, table.metric),
            _test(a.protocol, b.protocol, table.metric), table.paper_data if claim.paper else None,
            tuple(any(r.get("stale_modules") for r in side.runs) for side in (a, b)), a.runs + b.runs))
    return out


def adjust(family: Sequence[Verdict]) -> list[Verdict]:
    """The verdicts of one family (one paper's claims, one budget) with Holm's correction, per statistic."""
    out = list(family)
    for statistic in STATISTICS:
        tested = [i for i, v in enumerate(out) if getattr(v, statistic).comparison is not None
                  and getattr(v, statistic).comparison.p is not None]
        p = [getattr(out[i], statistic).comparison.p for i in tested]
        for i, value, adjusted in zip(tested, p, holm(p), strict=True):
            rank = sum(q < value for q in p)  # 0-based; tied p-values share the first (strictest) step
            test = replace(getattr(out[i], statistic), adjusted=adjusted, family=len(tested),
                           level=ALPHA / (len(tested) - rank))
            out[i] = replace(out[i], **{statistic: test})
    return out


def test_claims(tables: Sequence[Table], index: RunIndex) -> dict[str, list[Verdict]]:
    """The claims of `tables` tested on the index's runs, Holm-corrected within each paper's claims; by table."""
    by_paper: dict[str, list[Verdict]] = defaultdict(list)
    for table in tables:
        by_paper[table.paper] += claim_tests(table, index)
    out: dict[str, list[Verdict]] = {t.name: [] for t in tables}
    for family in by_paper.values():
        for v in adjust(family):
            out[v.table].append(v)
    return out


def runs_of(verdicts: Sequence[Verdict]) -> list[dict]:
    """The runs behind `verdicts`, each once."""
    return list({id(r): r for v in verdicts for r in v.runs}.values())
