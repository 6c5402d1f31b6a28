"""The papers' claims tested on our seeds, in sign and in size.

A table's `claims` list orderings the paper states (`better` row above `worse` row; lower error is better).
For each, over the seeds of the index's budget:

* the difference of our means in the claim's direction, with its 95% Welch interval, and the **sign**
  verdict: `supported` (interval above 0), `contradicted` (below), `inconclusive`, or `n < 2`;
* the paper's own difference (from the rows' published values: their mean over runs where the paper gives
  one, else the value; or the claim's `paper: [better, worse]`), and the **size** verdict: `size consistent`
  when it lies inside our interval, `size not reproduced` when outside. Where the paper's numbers are on
  other data (the table's `paper_data`, e.g. HO-ResNet's CIFAR-10 beside our MNIST runs) the size is not
  judged: `other data`;
* where the sign is undecided, the seeds per side that would decide it at the observed difference and spread
  (`stats.seeds_to_decide`: 80% power, two-sided 5%), and a permutation p-value as a check on Welch's interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from odenets.reporting.index import RunIndex, row_values
from odenets.reporting.stats import Comparison, Spread, permutation_p, seeds_to_decide, spread, welch


@dataclass(frozen=True)
class Verdict:
    claim: dict
    metric: str  # accuracy or error
    paper: tuple[float | None, float | None]  # the paper's (better, worse)
    ours: tuple[Spread | None, Spread | None]
    comparison: Comparison | None  # ours, in the claim's direction
    permutation: float | None
    seeds_needed: int | None
    paper_data: str | None = None  # the paper's numbers were measured on other data
    stale: tuple[bool, bool] = (False, False)  # a side's runs ran code that has changed since

    @property
    def text(self) -> str:
        return self.claim.get("text") or f"{self.claim['better']} above {self.claim['worse']}"

    @property
    def paper_diff(self) -> float | None:
        better, worse = self.paper
        if better is None or worse is None:
            return None
        return better - worse if self.metric != "error" else worse - better

    @property
    def sign(self) -> str:
        return self.comparison.verdict if self.comparison else "no runs yet"

    @property
    def size(self) -> str:
        c, paper = self.comparison, self.paper_diff
        if paper is None:
            return "no paper numbers"
        if self.paper_data:
            return f"other data ({self.paper_data})"
        if c is None:
            return "no runs yet"
        if c.low is None:
            return "n < 2"
        return "size consistent" if c.low <= paper <= c.high else "size not reproduced"

    @property
    def decide(self) -> str:
        """Seeds per side to settle an undecided sign, or ""."""
        if self.sign != "inconclusive" or self.seeds_needed is None:
            return ""
        n = self.seeds_needed
        return f"> {n - 1}" if n > 1000 else str(n)


def _paper_value(row: dict, metric: str) -> float | None:
    pub = row.get("published") or {}
    return pub.get(f"{metric}_mean") if pub.get(f"{metric}_mean") is not None else pub.get(metric)


def verdicts(table: dict, index: RunIndex) -> list[Verdict]:
    """Every claim of `table`, tested on the index's runs."""
    rows = {r["row"]: r for r in table["rows"]}
    metric = table.get("metric", "accuracy")
    out = []
    for claim in table.get("claims", ()):
        better, worse = rows[claim["better"]], rows[claim["worse"]]
        a, runs_a = row_values(better, index, metric)
        b, runs_b = row_values(worse, index, metric)
        paper = tuple(claim["paper"]) if claim.get("paper") else (_paper_value(better, metric),
                                                                   _paper_value(worse, metric))
        forward, backward = (a, b) if metric != "error" else (b, a)  # the claim's direction: positive = as claimed
        out.append(Verdict(
            claim, metric, paper,
            (spread(a, metric != "error") if a else None, spread(b, metric != "error") if b else None),
            welch(forward, backward) if a and b else None,
            permutation_p(forward, backward) if a and b else None,
            seeds_to_decide(forward, backward) if a and b else None,
            table.get("paper_data") if claim.get("paper") else None,
            tuple(any(r.get("stale_modules") for r in runs) for runs in (runs_a, runs_b))))
    return out
