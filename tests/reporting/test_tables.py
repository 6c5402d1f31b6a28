"""Tables from stored results: the published tables' data model, values, missing cells with their command, seeds,
budgets and what they run; the claims tested (selection-free and by the papers' protocol, Holm within a paper);
the reproduce plan; launchers; the README's block and docs/results.md against the committed records."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from helpers import REPO, cli, results_under
from odenets.config import CONF_DIR, compose_row
from odenets.errors import ConfigError
from odenets.provenance import dirty_code, imported_modules
from odenets.reporting import budget as budget_module
from odenets.reporting.budget import budget_names, load_budget
from odenets.reporting.cells import extra_params_cell
from odenets.reporting.collect import collect
from odenets.reporting.figures.forest import digest, forest_rows
from odenets.reporting.frame import frame
from odenets.reporting.index import RunIndex, selection_free
from odenets.reporting.published import load_table, parse_table, table_names
from odenets.reporting.render import MISSING, grid, p_value, to_frame, to_latex, to_markdown, verdict_grid
from odenets.reporting.report import readme_results, write_report
from odenets.reporting.reproduce import Sweep, pack, plan
from odenets.reporting.stats import holm, permutation_p, seeds_to_decide, welch
from odenets.reporting.summary import by_paper, forest_name, rendered_tables, results_summary, verdict_summary
from odenets.reporting.tables import render, write_all
from odenets.results import REPRODUCED, load_runs


def current_code() -> dict[str, str]:
    """Module digests of today's code, as a run made now would record them."""
    import odenets.models  # noqa: F401  (the modules a training run imports)
    import odenets.run.training  # noqa: F401

    return imported_modules()


def fake_run(runs: Path, overrides: list[str], seed: int, acc: float, budget: str = "paper",
             status: str = "completed", history: list[dict] | None = None, final: float | None = None,
             metric: str = "test/acc") -> None:
    """A run record whose best `metric` over epochs is `acc` and whose last is `final` (acc - 0.01)."""
    cfg = compose_row([*overrides, f"budget={budget}", f"seed={seed}"])
    run_dir = runs / f"run-{len(list(runs.glob('*')))}"
    run_dir.mkdir(parents=True)
    last = acc - 0.01 if final is None else final
    record = {"config": OmegaConf.to_container(cfg, resolve=True), "status": status, "epochs": 2,
              "metrics": {"final": {metric: last}, "best": {metric: acc}},
              "history": history or [{"epoch": 1, "time/train_s": 10.0, "train/acc": 0.5, "test/acc": acc}],
              "code": {"commit": "0123456789abcdef", "dirty": False, "modules": current_code()},
              "fingerprint": f"{overrides}{budget}{seed}{status}"}
    (run_dir / "result.json").write_text(json.dumps(record))


@pytest.fixture
def table4_runs(tmp_path):
    rows = load_table("horesnet_table4").rows
    euler, midpoint, rk4 = rows[0].overrides, rows[1].overrides, rows[2].overrides
    curve = lambda t: [{"epoch": 1, "time/train_s": t, "train/acc": 0.7}, {"epoch": 2, "time/train_s": 2 * t,
                                                                            "train/acc": 0.9}]
    fake_run(tmp_path, euler, 0, 0.9271, history=curve(40.0))
    fake_run(tmp_path, midpoint, 0, 0.9400, history=curve(20.0))
    fake_run(tmp_path, midpoint, 1, 0.9420, history=curve(20.0))  # a second seed
    fake_run(tmp_path, rk4, 0, 0.9700, budget="smoke")  # another budget: never mixed into paper cells
    fake_run(tmp_path, rk4, 1, 0.1000, status="diverged")
    return tmp_path


def test_cells_values_missing_cells_seeds_and_budgets(table4_runs):
    t = render("horesnet_table4", RunIndex(table4_runs, budget="paper"))
    rows = {row: cells for row, cells, _ in t.rows}
    euler, midpoint, rk4 = rows["Euler"], rows["Midpoint"], rows["RK-4"]
    assert euler["accuracy"].ours == pytest.approx(92.71) and euler["accuracy"].diff == pytest.approx(0.0)
    assert midpoint["accuracy"].ours == pytest.approx(94.10)  # the mean of two seeds, not the best (94.20)
    s, free = midpoint["accuracy"].spread, midpoint["accuracy"].free
    assert (s.n, round(s.mean, 2), round(s.std, 2), round(s.best, 2)) == (2, 94.10, 0.14, 94.20)
    assert midpoint["accuracy"].source == "runs" and free.mean == pytest.approx(93.10)  # the last epochs'
    assert midpoint["accuracy"].diff == pytest.approx(94.10 - 94.08)
    # RK-4: only a smoke run and a diverged one: the paper-budget cell is missing and says how to fill it
    assert rk4["accuracy"].ours is None and rk4["accuracy"].command.endswith("scheme=rk4 depth=58 budget=paper")
    assert rk4["accuracy"].left_out == "1 diverged"
    # time to 0.80 train accuracy: Euler 50 s, midpoint 25 s (linear within the epoch) -> 2x
    assert midpoint["speedup_080"].ours == pytest.approx(2.0) and euler["speedup_080"].ours == pytest.approx(1.0)
    assert rows["Ada RK-8"]["extra_params"].ours == 2
    smoke = {row: cells for row, cells, _ in render("horesnet_table4", RunIndex(table4_runs, budget="smoke")).rows}
    assert smoke["RK-4"]["accuracy"].ours == pytest.approx(97.0) and smoke["Euler"]["accuracy"].ours is None


def test_one_rendering_for_markdown_csv_latex_and_html(table4_runs, tmp_path):
    t = render("horesnet_table4", RunIndex(table4_runs, budget="paper"))
    md = to_markdown(t)
    # ours: mean ± std (n); provenance in columns: selection-free, epochs, budget note, commit
    assert re.search(r"\| Midpoint\s+\|.*\| 94\.10 ± 0\.14 \(n=2\)\s+\| 94\.08\s+\| \+0\.02\s+"
                     r"\| 93\.10 ± 0\.14\s+\| 2\s+\| the recipe as published\s+\| 0123456", md)
    assert "best of n" not in md  # Table 4's numbers are not a best of runs
    assert f"{MISSING} [a]" in md and "[a] `python train.py experiment=horesnet/cifar10 scheme=rk4" in md
    assert "Sources:" not in md
    frame_ = to_frame(t)
    assert {"table", "budget", "Row", "selection-free", "epochs", "commit"} <= set(frame_.columns)
    assert frame_.loc[frame_["Row"].str.startswith("Midpoint"), "Accuracy (%) ours"].item() == "94.10 ± 0.14 (n=2)"
    assert "\\begin{table}" in to_latex(t)
    md_path, page = write_report(tmp_path / "report", [t], tmp_path / "no-figures", "paper")
    html = page.read_text()
    assert "<table>" in html and 'title="runs"' in html and "94.10 ± 0.14" in html and md_path.is_file()


def test_a_best_of_runs_number_is_said_and_shown_beside_our_best_seed(tmp_path):
    """RKCNN's errors are the lowest of five runs: the row says so, ours is our mean, our best of n is beside it."""
    row = load_table("rkcnn_table2").row_named("RKCNN-E-2, k=24")
    for seed, acc in enumerate((0.9966, 0.9960)):
        fake_run(tmp_path, list(row.overrides), seed, acc, budget="cpu")
    t = render("rkcnn_table2", RunIndex(tmp_path, budget="cpu"), memory=False)
    g = grid(t, ["error"], trained_only=True)
    (shown,) = [r for r in g.rows if r[0].text == "RKCNN-E-2, k=24"]
    cells = dict(zip(g.columns, shown, strict=True))
    assert cells["Error (%) ours"].text == "0.37 ± 0.04 (n=2)"  # 100 - best accuracy, mean over the seeds
    assert cells["Error (%) paper"].text == "0.34 (best of 5; mean 0.384 ± 0.032)"
    assert "lowest one over five runs" in cells["Error (%) paper"].hover
    assert cells["Error (%) Δ"].text == f"{0.37 - 0.384:+.2f}"  # against the paper's mean
    assert cells["best of n"].text == "0.34" and cells["selection-free"].text == "1.37 ± 0.04"
    assert any("best of n: our best seed" in line for line in g.legend)


def test_write_all(table4_runs, tmp_path):
    out = tmp_path / "tables"
    write_all(out, RunIndex(table4_runs, budget="paper"), ("horesnet_table4", "horesnet_table2"),
              tmp_path / "no-bench.json", log=lambda _: None)
    assert {p.name for p in out.iterdir()} >= {"horesnet_table4.md", "horesnet_table4.csv", "horesnet_table4.tex",
                                               "horesnet_table2.md", "tables.csv"}
    assert "make bench" in (out / "horesnet_table2.md").read_text()


def _rows(name: str) -> dict[str, tuple[str, ...]]:
    return {r.row: r.overrides for r in load_table(name).rows}


def _verdict(verdicts, better: str, worse: str):
    return next(v for v in verdicts if (v.claim.better, v.claim.worse) == (better, worse))


def test_claims_are_tested_in_sign_and_size(tmp_path):
    rows = _rows("heunnet_results")
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.7, 98.6), (98.8, 98.5), (98.65, 98.55)]):
        fake_run(tmp_path, rows["MNIST, HeunNet"], seed, heun / 100, budget="cpu")
        fake_run(tmp_path, rows["MNIST, LSTM"], seed, lstm / 100, budget="cpu")
    fake_run(tmp_path, rows["ECG, HeunNet"], 0, 0.97, budget="cpu")  # one seed: no interval
    t = render("heunnet_results", RunIndex(tmp_path, budget="cpu"), memory=False)
    mnist = _verdict(t.verdicts, "MNIST, HeunNet", "MNIST, LSTM")
    assert mnist.sign == "supported" and mnist.free.comparison.difference == pytest.approx(0.15)
    assert mnist.free.family == 1 and mnist.free.adjusted == pytest.approx(mnist.free.comparison.p)  # alone
    assert mnist.paper_diff == pytest.approx(98.26 - 95.44) and mnist.size == "size not reproduced"
    assert _verdict(t.verdicts, "ECG, HeunNet", "ECG, LSTM").sign == "no runs yet"
    assert _verdict(t.verdicts, "MNIST, HeunNet", "MNIST, GRU").sign == "no runs yet"
    assert _verdict(t.verdicts, "MNIST, HeunNet", "MNIST, GRU").size == "no runs yet"
    md = to_markdown(t)
    assert "Claims tested on our seeds" in md and "size not reproduced" in md and "supported" in md


def test_the_verdict_never_looks_at_the_test_set_to_choose_an_epoch(tmp_path):
    """Each seed's best test value over epochs says HeunNet is above the LSTM; their last epochs' do not: the
    verdict is the last epochs' (no validation split), the papers' protocol stands beside it, flagged."""
    rows = _rows("heunnet_results")
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.7, 98.6), (98.8, 98.5), (98.65, 98.55)]):
        fake_run(tmp_path, rows["MNIST, HeunNet"], seed, heun / 100, budget="cpu", final=lstm / 100)
        fake_run(tmp_path, rows["MNIST, LSTM"], seed, lstm / 100, budget="cpu", final=heun / 100)
    t = render("heunnet_results", RunIndex(tmp_path, budget="cpu"), memory=False)
    v = _verdict(t.verdicts, "MNIST, HeunNet", "MNIST, LSTM")
    assert (v.sign, v.protocol.verdict, v.differs) == ("contradicted", "supported", True)
    assert v.free.comparison.difference == pytest.approx(-0.15)
    assert v.protocol.comparison.difference == pytest.approx(0.15)
    assert verdict_grid(t.verdicts).texts()[0][-2:] == ["+0.15", "supported ≠"]


def test_selection_free_is_the_validation_best_epochs_test_value_else_the_last():
    run = {"metrics": {"final": {"test/acc": 0.9}, "best": {"test/acc": 0.95}}}
    assert selection_free(run, "test/acc") == 0.9
    chosen = {"monitor": "val/acc", "epoch": 3, "val/acc": 0.97, "test/acc": 0.93}
    assert selection_free({**run, "metrics": {**run["metrics"], "at_val_best": chosen}}, "test/acc") == 0.93
    assert selection_free(run, "test/gen_acc") is None


def test_holm_within_a_paper_spans_its_tables_and_sets_the_seeds_to_decide(tmp_path):
    """Two HeunNet claims with runs, one per table: Holm adjusts over both (a family is a paper's claims in the
    budget), so the smaller p, below 0.05, is doubled and leaves its claim undecided; its seeds to decide are
    counted at 0.05 / 2."""
    results, alpha = _rows("heunnet_results"), _rows("heunnet_alpha")
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.7, 98.45), (98.8, 98.6), (98.62, 98.56)]):  # p = 0.038
        fake_run(tmp_path, results["MNIST, HeunNet"], seed, heun / 100, budget="cpu", final=heun / 100)
        fake_run(tmp_path, results["MNIST, LSTM"], seed, lstm / 100, budget="cpu", final=lstm / 100)
    for seed, (a8, a10) in enumerate([(0.9, 0.97), (1.0, 0.92), (0.95, 1.0), (0.98, 0.96)]):  # level
        fake_run(tmp_path, alpha["alpha = 0.8"], seed, 1.0, budget="cpu", final=a8, metric="test/gen_acc")
        fake_run(tmp_path, alpha["alpha = 1.0"], seed, 1.0, budget="cpu", final=a10, metric="test/gen_acc")
    index = RunIndex(tmp_path, budget="cpu")
    mnist = _verdict(render("heunnet_results", index, memory=False).verdicts, "MNIST, HeunNet", "MNIST, LSTM")
    one = _verdict(render("heunnet_alpha", index, memory=False).verdicts, "alpha = 0.8", "alpha = 1.0")
    p = [mnist.free.comparison.p, one.free.comparison.p]
    assert mnist.free.family == one.free.family == 2
    assert [mnist.free.adjusted, one.free.adjusted] == pytest.approx(holm(p))
    assert p[0] < 0.05 < mnist.free.adjusted == 2 * p[0] and mnist.sign == "inconclusive"  # decided alone only
    assert one.sign == "inconclusive" and one.size == "no paper numbers" and one.free.adjusted == p[1]
    a, b = mnist.free.values
    assert mnist.decide == str(seeds_to_decide(a, b, level=0.05 / 2)) != str(seeds_to_decide(a, b, level=0.05))
    low, high = mnist.free.adjusted_interval()  # at its Holm step, wider than the raw interval
    assert low < mnist.free.comparison.low and high > mnist.free.comparison.high


def test_holm_adjusts_p_values_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002]) and holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_welch_is_scipys_two_sided_t_test():
    from scipy import stats

    a, b = [97.1, 97.3, 96.9, 97.25], [97.4, 97.5, 97.2, 97.45, 97.6]
    c, ref = welch(a, b), stats.ttest_ind(a, b, equal_var=False)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert c.interval(0.9) == pytest.approx(tuple(ref.confidence_interval(0.9)), rel=1e-12)
    assert (c.low, c.high) == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-12)
    assert welch([1.0], [2.0, 3.0]).p is None and welch([1.0, 1.0], [1.0, 1.0]).p == 1.0


def test_seeds_to_decide_is_the_least_n_with_the_power():
    """Bisection finds what counting up from 2 seeds finds, and a large effect does not fail on scipy's NaN."""
    from scipy import stats

    def counted(a, b, level):
        sd = np.sqrt((np.var(a, ddof=1) * (len(a) - 1) + np.var(b, ddof=1) * (len(b) - 1)) / (len(a) + len(b) - 2))
        d = abs(np.mean(a) - np.mean(b)) / sd
        for n in range(2, 1001):
            c, df, ncp = stats.t.ppf(1 - level / 2, 2 * n - 2), 2 * n - 2, d * np.sqrt(n / 2)
            if stats.nct.sf(c, df, ncp) + np.nan_to_num(stats.nct.cdf(-c, df, ncp)) >= 0.8:
                return n
        return 1001

    cases = (([1.0, 2.0, 3.0], [2.0, 3.0, 4.5]), ([0.1, 0.3, 0.2], [0.25, 0.35, 0.3]),
             ([97.1, 97.2, 97.0], [97.3, 97.5, 97.45]))
    for (a, b), level in itertools.product(cases, (0.05, 0.003)):
        assert seeds_to_decide(a, b, level=level) == counted(a, b, level)
    assert 20 < seeds_to_decide([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], level=0.003) < 40  # d = 1: about 29, not "> 1000"


def _make_stale(runs: Path, name: str) -> None:
    path = runs / name / "result.json"
    record = json.loads(path.read_text())
    module = next(iter(record["code"]["modules"]))
    record["code"]["modules"][module] = "0" * 64  # the code it ran has changed since
    path.write_text(json.dumps(record))


def test_stale_runs_stand_in_only_where_no_current_run_covers_the_row(tmp_path):
    rows = _rows("heunnet_results")
    fake_run(tmp_path, rows["MNIST, HeunNet"], 0, 0.90, budget="cpu")  # run-0: stale, beside a current seed
    fake_run(tmp_path, rows["MNIST, HeunNet"], 1, 0.98, budget="cpu")
    fake_run(tmp_path, rows["MNIST, LSTM"], 0, 0.97, budget="cpu")  # run-2: stale, alone
    fake_run(tmp_path, rows["MNIST, LSTM"], 1, 0.96, budget="cpu")  # run-3: stale, alone
    for name in ("run-0", "run-2", "run-3"):
        _make_stale(tmp_path, name)
    heun, lstm = rows["MNIST, HeunNet"], rows["MNIST, LSTM"]
    strict, shown = RunIndex(tmp_path, budget="cpu"), RunIndex(tmp_path, budget="cpu", allow_stale=True)
    assert [r["config"]["seed"] for r in strict.runs_for(heun)] == [1] and not strict.runs_for(lstm)
    assert len(strict.stale_for(heun)) == 1 and len(strict.stale_for(lstm)) == 2
    assert [r["config"]["seed"] for r in shown.runs_for(heun)] == [1] and len(shown.runs_for(lstm)) == 2
    assert len(shown.stale_for(heun)) == 1 and not shown.stale_for(lstm) and shown.stale_left_out() == 1
    v = _verdict(render("heunnet_results", shown, memory=False).verdicts, "MNIST, HeunNet", "MNIST, LSTM")
    assert v.stale == (False, True)
    assert "95.50 ± 0.71 (n=2, STALE)" in to_markdown(render("heunnet_results", shown, memory=False))


def test_an_undecided_claim_says_how_many_seeds_would_decide_it(tmp_path):
    rows = _rows("heunnet_results")
    for seed, (heun, lstm) in enumerate([(98.6, 98.5), (98.4, 98.6), (98.8, 98.5)]):
        fake_run(tmp_path, rows["MNIST, HeunNet"], seed, heun / 100, budget="cpu")
        fake_run(tmp_path, rows["MNIST, LSTM"], seed, lstm / 100, budget="cpu")
    v = _verdict(render("heunnet_results", RunIndex(tmp_path, budget="cpu"), memory=False).verdicts,
                 "MNIST, HeunNet", "MNIST, LSTM")
    assert v.sign == "inconclusive" and int(v.decide) > 3 and 0 < v.free.permutation <= 1
    assert v.size == "size not reproduced"  # +2.82 lies far outside [-0.5, +0.6]


# --------------------------------------------------------------------------- the data model and the budgets
def test_every_published_table_loads_typed():
    tables = [load_table(name) for name in table_names()]
    assert len(tables) == 12 and sum(len(t.claims) for t in tables) == 40
    rkcnn = load_table("rkcnn_table2")
    assert rkcnn.reports.best_of_runs and rkcnn.reports.n == 5 and "lowest one over five runs" in rkcnn.reports.quote
    ecg = load_table("heunnet_results")
    assert ecg.reported(ecg.row_named("ECG, LSTM")).epoch == "best" and ecg.reports.runs == "single"
    assert load_table("horesnet_table3").reports.runs == "unstated"
    irk = rkcnn.row_named("RK-Net (5th-order IRK), k=32")
    assert irk.published.lists("flops") and irk.published.flops is None  # listed, left empty by the paper


def test_claims_read_apart():
    """Every claim names both sides in words of its own (issue 28): no two claims of a paper read alike."""
    for paper in ("heunnet", "horesnet", "rkcnn"):
        texts = [c.text for n in table_names() if load_table(n).paper == paper for c in load_table(n).claims]
        assert len(texts) == len(set(texts)), paper
    assert "α = 0.8 above α = 0.6" in [c.text for c in load_table("heunnet_alpha").claims][0]
    assert load_table("heunnet_results").claims[0].text == "HeunNet above LSTM (MNIST)"


TABLE = {"paper": "p", "table": 1, "title": "t", "source": "s", "metric": "accuracy",
         "reports": {"runs": "single", "epoch": "last", "quote": "q"},
         "rows": [{"row": "a", "overrides": ["model=lstm"], "published": {"accuracy": 1.0}},
                  {"row": "b", "published": {"accuracy": 2.0}, "note": "n"}],
         "claims": [{"better": "a", "worse": "b", "text": "a above b"}]}


@pytest.mark.parametrize("where, bad, says", [
    ("table", {"claimz": []}, "unknown key 'claimz' in the table; allowed: claims, metric, paper, paper_data"),
    ("row", {"seeds": {"cpu": 3}}, "(rows[0]): unknown key 'seeds' in a row; allowed: depth, figure, metric, note"),
    ("published", {"acuracy": 1.0}, "(rows[0].published): unknown key 'acuracy' in published; allowed: accuracy"),
    ("claim", {"better": "c"}, "(claims[0]): better='c' names no row of the table"),
    ("claim", {"txt": "x"}, "(claims[0]): unknown key 'txt' in a claim; allowed: better, paper, text, worse"),
    ("reports", {"runs": "median"}, "(reports): reports.runs='median'; allowed: best, single, unstated"),
])
def test_a_typo_in_a_published_table_is_one_line_naming_the_key_the_file_and_what_is_allowed(where, bad, says):
    node = json.loads(json.dumps(TABLE))
    target = {"table": node, "row": node["rows"][0], "published": node["rows"][0]["published"],
              "claim": node["claims"][0], "reports": node["reports"]}[where]
    target.update(bad)
    with pytest.raises(ConfigError) as e:
        parse_table(node, "mine", "published/mine.yaml")
    assert str(e.value).startswith("published/mine.yaml") and says in str(e.value) and "\n" not in str(e.value)


def test_a_published_result_must_say_what_the_papers_number_is():
    node = {k: v for k, v in json.loads(json.dumps(TABLE)).items() if k != "reports"}
    with pytest.raises(ConfigError, match="row 'a' has a published result but no `reports`"):
        parse_table(node, "mine", "mine.yaml")


def test_a_budget_defines_what_it_runs_in_one_place():
    cpu = load_budget("cpu")
    alpha = load_table("heunnet_alpha")
    assert cpu.row_seeds("heunnet_alpha", alpha.row_named("alpha = 0.8")) == tuple(range(56))
    assert cpu.row_seeds("heunnet_alpha", alpha.row_named("alpha = 0.6")) == tuple(range(8))  # `all`
    assert load_budget("paper").row_seeds("heunnet_alpha", alpha.row_named("alpha = 0.8")) is None
    planned = dict(cpu.trained_rows(["heunnet_results", "heunnet_alpha"]))
    sine = ("experiment=heunnet/sine", "model=ode_rnn", "scheme=heun_ext", "alpha=0.8")
    assert planned[sine] == tuple(range(56)) and len(planned[(*sine[:3], "alpha=0.5")]) == 8
    assert len(cpu.trained_rows()) == 65 and cpu.sweeps[0] == ("experiment=heunnet/mnist_authors", "model=lstm,ode_rnn")
    assert "heunnet/ecg" in cpu.rules and not load_budget("paper").rules
    smoke, paper = load_budget("smoke"), load_budget("paper")
    assert (smoke.tables, smoke.sweeps) == (paper.tables, paper.sweeps)  # what paper runs, tiny


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """A config folder of one budget `b` (and an experiment), for the budget loader."""
    (tmp_path / "budget").mkdir()
    (tmp_path / "experiment" / "heunnet").mkdir(parents=True)
    (tmp_path / "experiment" / "heunnet" / "sine.yaml").write_text("{}\n")
    monkeypatch.setattr(budget_module, "CONF_DIR", tmp_path)
    budget_module._load.cache_clear()
    yield tmp_path
    budget_module._load.cache_clear()


@pytest.mark.parametrize("node, says", [
    ({"tabels": ["heunnet_alpha"]}, "unknown key budget.tabels; allowed: max_epochs, name, note, seeds"),
    ({"tables": ["heunnet_alpha"], "seeds": {"heunnet_alpha": {"alpha = 0.88": 3}}},
     "budget.seeds.heunnet_alpha: 'alpha = 0.88' names no row of heunnet_alpha"),
    ({"tables": ["heunnet_alpha"], "seeds": {"heunnet_results": {"all": 3}}},
     "budget.seeds.heunnet_results: not one of the budget's tables"),
    ({"tables": ["heunnet_alpha"], "seeds": {"heunnet_alpha": {"all": "8"}}}, "allowed: a count n"),
    ({"tables": ["heunnet_tabel"]}, "unknown table 'heunnet_tabel'"),
])
def test_a_bad_budget_is_one_line(conf, node, says):
    (conf / "budget" / "b.yaml").write_text(yaml.safe_dump({"budget": {"name": "b", **node}}))
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_budget("b")


def test_rows_training_the_same_overrides_must_name_the_same_seeds(conf):
    seeds = {"heunnet_results": {"all": 8}, "heunnet_alpha": {"all": 8, "alpha = 0.8": 56}}
    (conf / "budget" / "b.yaml").write_text(yaml.safe_dump({"budget": {"tables": ["heunnet_results", "heunnet_alpha"],
                                                                        "seeds": seeds}}))
    with pytest.raises(ConfigError, match="'heunnet_results: Sine, ExtendedHeunNet alpha = 0.8' and heunnet_alpha: "
                                          "'alpha = 0.8' train the same overrides with other seeds"):
        load_budget("b").trained_rows()


def test_a_budget_rule_that_names_no_experiment_is_refused(conf):
    (conf / "budget" / "b.yaml").write_text("budget: {tables: []}\n")
    rules = conf / "budget_rules" / "b" / "heunnet"
    rules.mkdir(parents=True)
    (rules / "sine.yaml").write_text("epochs: 1\n")
    assert load_budget("b").rules == ("heunnet/sine",)
    budget_module._load.cache_clear()
    (rules / "sin.yaml").write_text("epochs: 1\n")  # Hydra would never apply it
    with pytest.raises(ConfigError, match="heunnet/sin.yaml names no experiment"):
        load_budget("b")


def test_learned_parameters_are_what_the_block_exposes():
    """HO-ResNet Table 4's "+2": the adaptive RK8's learned step sizes, counted from the blocks, not by name."""
    table = load_table("horesnet_table4")
    assert extra_params_cell(table.row_named("Ada RK-8")).ours == 2
    assert extra_params_cell(table.row_named("RK-4")).ours == 0
    from torch import nn

    from odenets.core.blocks import RKBlock

    block = RKBlock({"name": "heun_ext", "alpha": 0.8, "learn_alpha": True, "learn_h": True}, lambda: nn.Identity())
    assert sorted(block.learned_parameters()) == ["alpha", "h"] and len(block.learned) == 1


def test_a_permutation_p_that_rounds_to_zero_is_printed_as_a_bound():
    separated = permutation_p([97.1, 97.2, 97.0, 97.15], [97.4, 97.5, 97.45, 97.35]) or 0
    assert separated == 2 / 70 and p_value(separated) == "0.029"  # the smallest 4 + 4 seeds allow
    eight = permutation_p(np.arange(8.0), np.arange(8.0) + 10)
    assert eight == 2 / 12870 and p_value(eight) == "< 0.001" and p_value(None) == MISSING


def test_the_readme_notebook_example_runs_on_the_committed_records(monkeypatch):
    monkeypatch.chdir(REPO)
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
               if "import frame" in b]
    lines = code.strip().splitlines()
    namespace: dict = {}
    exec("\n".join(lines[:-1]), namespace)
    table = eval(lines[-1], namespace)
    assert len(table) >= 3 and (table["count"] >= 1).all() and table["mean"].between(0, 1).all()


def test_results_frame_has_one_row_per_run(table4_runs):
    runs = frame(table4_runs)
    assert len(runs) == 5 and {"status", "seed", "best.test/acc", "final.test/acc", "commit", "stale"} <= set(runs)
    assert sorted(runs["status"]) == ["completed"] * 4 + ["diverged"]


def test_pack_rows_into_sweeps():
    rows = [("experiment=x", "scheme=euler", "depth=10"), ("experiment=x", "scheme=rk4", "depth=10"),
            ("experiment=x", "scheme=euler", "depth=18"), ("experiment=x", "scheme=rk4", "depth=18"),
            ("experiment=x", "scheme=rk4", "depth=26"), ("model.channels=[1,2]", "model=a"),
            ("model.channels=[3,4]", "model=a")]
    sweeps = pack([(r, None) for r in rows])
    assert Sweep(("experiment=x", "scheme=euler"), "depth", ("10", "18")) in sweeps
    assert Sweep(("experiment=x", "scheme=rk4"), "depth", ("10", "18", "26")) in sweeps
    assert sum(s.key is None for s in sweeps) == 2  # list values are never swept with commas
    grouped = pack([(("model.layers=2", "model=a"), None), (("model.layers=2", "model=b"), None)])
    assert [s.key for s in grouped] == [None, None]  # a group is never swept beside keys inside it
    assert Sweep(("a=1",), "b", ("2", "3")).overrides("smoke", [0, 1], "joblib") == \
        ["a=1", "b=2,3", "budget=smoke", "seed=0,1", "hydra/launcher=joblib"]


def test_plan_covers_every_trained_row_once():
    rows = [r for r, _ in load_budget("paper").trained_rows()]
    assert len(rows) == len(set(rows))
    assert ("experiment=horesnet/cifar10", "scheme=rk8_adaptive", "depth=58") in rows
    assert not any("model.method=dopri5" in " ".join(r) for r in rows)  # the IRK row is not trainable (paper)
    commands = plan("smoke", [0], "basic")
    assert ["experiment=horesnet/lr_robustness", "budget=smoke"] in commands
    assert all("budget=smoke" in c for c in commands)


@pytest.mark.parametrize("budget", budget_names())
def test_every_planned_multirun_composes(budget):
    """Hydra composes a multirun's base config before expanding its sweeps: each command must compose."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for command in plan(budget, [0, 1], "basic"):
            try:
                loader.load_configuration("config", command, run_mode=RunMode.MULTIRUN)
            except Exception as error:
                raise AssertionError(f"{command}: {error}") from error


def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    out = cli("-m", "hydra/launcher=submitit_local", "scheme=euler,midpoint", "depth=6", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert sorted(r["config"]["scheme"]["name"] for r in results_under(tmp_path).values()) == ["euler", "midpoint"]


def test_readme_and_results_doc_are_the_committed_records():
    """The README's verdicts and docs/results.md are what the committed cpu records render to, the forest plots
    beside them draw those verdicts (what they draw is hashed into their metadata), and every row the cpu budget
    trains without a current result is named in docs/results.md as still to run."""
    from PIL import Image

    index = RunIndex(REPRODUCED / "cpu", budget="cpu", allow_stale=True)
    budget = load_budget("cpu")
    tables = rendered_tables(budget.tables, index)
    readme = verdict_summary(budget.tables, index, tables, "docs/verdicts")
    assert readme_results((REPO / "README.md").read_text()) == readme.strip("\n")
    assert results_summary(budget.tables, index, tables, "verdicts") in (REPO / "docs" / "results.md").read_text()
    for paper, verdicts in by_paper(v for t in tables for v in t.verdicts).items():
        png = REPO / "docs" / "verdicts" / f"{forest_name(paper, 'cpu')}.png"
        assert f"](docs/verdicts/{png.name})" in readme
        assert f"forest data {digest(forest_rows(verdicts))}" in Image.open(png).info["Description"], png
    current = {" ".join(r) for r, _ in budget.trained_rows()
               if any(not run["stale_modules"] for run in index.runs_for(r))}
    listed = set(re.findall(r"^- `(.+)`$", (REPO / "docs" / "results.md").read_text(), re.M))
    untrained = {" ".join(r) for r, _ in budget.trained_rows()} - current
    assert untrained <= listed, f"rows without a current result, not listed as still to run: {untrained - listed}"


def test_no_committed_record_ran_uncommitted_code():
    """A reader can check out the code of every committed record (issue 21: no cell shows `+dirty`)."""
    assert not [r["run_name"] for r in load_runs(REPRODUCED) if dirty_code(r)]


def test_collecting_refuses_runs_of_uncommitted_code_unless_told(tmp_path):
    fake_run(tmp_path / "runs", ["experiment=heunnet/sine", "model=lstm"], 0, 0.9, budget="cpu")
    fake_run(tmp_path / "runs", ["experiment=heunnet/sine", "model=lstm"], 1, 0.9, budget="cpu")
    dirty = tmp_path / "runs" / "run-1" / "result.json"
    record = json.loads(dirty.read_text())
    record["code"].update(dirty=True, dirty_paths=["src/odenets/core/blocks.py", "README.md"])
    dirty.write_text(json.dumps(record | {"run_name": "dirty"}))
    clean = tmp_path / "runs" / "run-0" / "result.json"
    clean.write_text(json.dumps(json.loads(clean.read_text()) | {"run_name": "clean"}))

    def collected(out: str, allow_dirty: bool) -> tuple[int, list[str]]:
        done = collect(tmp_path / "runs", "cpu", tmp_path / out, allow_dirty)
        return done.dirty, sorted(p.name for p in (tmp_path / out).iterdir())

    assert collected("refused", False) == (1, ["clean.json"])
    assert collected("allowed", True) == (0, ["clean.json", "dirty.json"])


def test_collecting_removes_the_stale_records_current_ones_supersede(tmp_path):
    for seed in (0, 1):
        fake_run(tmp_path / "old", ["experiment=heunnet/sine", "model=lstm"], seed, 0.9, budget="cpu")
    fake_run(tmp_path / "old", ["experiment=heunnet/sine", "model=gru"], 0, 0.9, budget="cpu")
    committed = tmp_path / "reproduced" / "cpu"
    committed.mkdir(parents=True)
    for run in ("run-0", "run-1", "run-2"):
        _make_stale(tmp_path / "old", run)
        (committed / f"{run}.json").write_text((tmp_path / "old" / run / "result.json").read_text())
    fake_run(tmp_path / "new", ["experiment=heunnet/sine", "model=lstm"], 0, 0.95, budget="cpu")
    new = tmp_path / "new" / "run-0" / "result.json"
    new.write_text(json.dumps(json.loads(new.read_text()) | {"run_name": "current", "finished": "2026"}))
    assert collect(tmp_path / "new", "cpu", committed).pruned == 2
    assert sorted(p.name for p in committed.iterdir()) == ["current.json", "run-2.json"]  # gru: nothing newer


def test_a_stale_record_from_before_a_new_option_is_superseded_by_its_overrides(tmp_path):
    """A config key added since a record ran changes its stored config's key, not the experiment its overrides
    name today; overrides that no longer compose keep the record."""
    sine_lstm = ["experiment=heunnet/sine", "model=lstm"]
    fake_run(tmp_path / "old", sine_lstm, 0, 0.9, budget="cpu")
    fake_run(tmp_path / "old", sine_lstm, 1, 0.9, budget="cpu")
    committed = tmp_path / "reproduced" / "cpu"
    committed.mkdir(parents=True)
    for run, overrides in (("run-0", sine_lstm), ("run-1", ["experiment=heunnet/sine", "model=no_such_model"])):
        _make_stale(tmp_path / "old", run)
        record = json.loads((tmp_path / "old" / run / "result.json").read_text())
        record["config"]["model"].popitem()  # an option the model gained since
        record["overrides"] = [*overrides, "budget=cpu", f"seed={run[-1]}"]
        (committed / f"{run}.json").write_text(json.dumps(record))
    fake_run(tmp_path / "new", sine_lstm, 0, 0.95, budget="cpu")
    new = tmp_path / "new" / "run-0" / "result.json"
    new.write_text(json.dumps(json.loads(new.read_text()) | {"run_name": "current", "finished": "2026"}))
    assert collect(tmp_path / "new", "cpu", committed).pruned == 1
    assert sorted(p.name for p in committed.iterdir()) == ["current.json", "run-1.json"]


def test_committed_records_are_read_from_a_relative_path_too(monkeypatch):
    monkeypatch.chdir(REPO)
    relative = load_runs(REPRODUCED.relative_to(REPO) / "cpu")
    assert relative and len(relative) == len(load_runs(REPRODUCED / "cpu"))


def test_readme_without_a_results_block_is_one_line_and_exit_2(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no results here\n")
    out = subprocess.run([sys.executable, "scripts/tables.py", "--budget", "cpu", "--no-memory", "--tables",
                          "heunnet_table1", "--out", str(tmp_path / "t"), "--report", str(tmp_path / "r"),
                          "--readme", str(readme)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no results block" in out.stderr, out.stderr
    assert readme.read_text() == "# no results here\n"
