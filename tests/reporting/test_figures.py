"""Figures from stored inputs: ODE demos (HeunNet Fig. 1 against the reference values), landscapes
on a tiny model, curves, time to accuracy and learning-rate robustness from fixture result.json
files, the forest plots of the claims tested, and scripts/figures.py on fixture and empty run directories."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from helpers import REPO
from odenets.config import compose, fingerprint
from odenets.models import create_model
from odenets.provenance import imported_modules
from odenets.reporting.figures import ode_demos, save
from odenets.reporting.figures.curves import plot_curves, plot_time_to_accuracy, time_to_accuracy_rows
from odenets.reporting.figures.forest import COLOURS, digest, forest_rows, plot_forest
from odenets.reporting.figures.landscape import (
    compute_landscape,
    filter_normalized_direction,
    landscape_path,
    landscape_ranges,
    load_landscape,
    plot_landscapes,
    save_landscape,
)
from odenets.reporting.figures.lr_robustness import cell_text, lr_outcomes, plot_lr_robustness
from odenets.reporting.figures.render import render_all
from odenets.reporting.figures.runs import group_runs, provenance, run_label
from odenets.reporting.published import Claim, load_table
from odenets.reporting.speed import time_to_accuracy
from odenets.reporting.stats import spread, welch
from odenets.reporting.verdicts import Test, Verdict, adjust
from odenets.results import best_of, load_runs, write_result


# --------------------------------------------------------------------------- ODE demos
@pytest.mark.parametrize("h", ["0.6", "0.9"])
def test_heunnet_fig1_values_equal_the_reference(fig1_reference, h):
    ref = fig1_reference["fig1"][h]
    sol = ode_demos.heun_fig1_solutions(float(h))
    assert set(sol["schemes"]) == {"euler", "heun", "ext_heun_alpha_0.75", "ext_heun_alpha_0.8", "ext_heun_alpha_1.0"}
    assert sol["t"] == pytest.approx(ref["t"], abs=1e-12) and sol["exact"] == pytest.approx(ref["exact"], rel=1e-13)
    for key, x in sol["schemes"].items():
        assert x.tolist() == pytest.approx(ref["schemes"][key]["x"], rel=1e-13, abs=1e-13), key


def test_equal_cost_demo_spends_28_evaluations_per_scheme():
    steps = {s: len(ode_demos.equal_cost_solution(s, 28)[0]) - 1 for s in ode_demos.EQUAL_COST_SCHEMES}
    assert steps == {"euler": 28, "midpoint": 14, "rk4": 7, "rk8": 2}  # HO-ResNet-58's blocks
    errors = [abs(ode_demos.equal_cost_solution(s, 28)[1][-1] - 49.0) for s in ode_demos.EQUAL_COST_SCHEMES]
    assert errors == sorted(errors, reverse=True)
    with pytest.raises(ValueError, match="whole number"):
        ode_demos.equal_cost_solution("rk4", 30)


# --------------------------------------------------------------------------- landscapes
def test_filter_normalized_direction_matches_filter_norms():
    params = [torch.randn(4, 3, 3, 3), torch.randn(5, 4), torch.randn(4)]
    direction = filter_normalized_direction(params, torch.Generator().manual_seed(0))
    for p, d in zip(params[:2], direction[:2], strict=True):
        assert torch.allclose(d.flatten(1).norm(dim=1), p.flatten(1).norm(dim=1), rtol=1e-5)
    assert not direction[2].any()  # 1-D parameters (biases, BN) are not moved


def test_tiny_landscape_is_stored_read_and_plotted(tmp_path):
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 3
    arrays = compute_landscape("euler", 6, x, y, num_classes=3, grid=3, span=0.5, width=4, seed=1)
    torch.manual_seed(1)
    model = create_model("horesnet", scheme="euler", depth=6, width=4, in_channels=1, num_classes=3).eval()
    with torch.no_grad():
        centre = torch.nn.functional.cross_entropy(model(x), y).item()
    assert arrays["loss"].shape == (3, 3) and arrays["loss"][1, 1] == pytest.approx(centre, rel=1e-5)
    assert np.isfinite(arrays["loss"]).all() and arrays["loss"].min() > 0

    path = landscape_path(tmp_path, "random", "euler", 18, span=0.5)
    assert path.name == "random-horesnet-euler-d18-span0.5.npz"
    save_landscape(path, {**arrays, "depth": np.array(18)}, "random")
    stored = load_landscape(path)
    assert stored["scheme"] == "euler" and stored["dataset"] == "random" and stored["batch"] == 8
    assert stored["coords"].tolist() == [-0.5, 0.0, 0.5]
    row, = landscape_ranges([stored])
    assert (row["paper_min"], row["paper_max"]) == (0.0, 43.16)  # Fig. 4, ResNet-18 Euler
    assert row["loss_min"] == pytest.approx(arrays["loss"].min())
    save(plot_landscapes([stored]), tmp_path, "landscape")


# --------------------------------------------------------------------------- fixture runs
def history(train_accs, seconds_per_epoch=10.0, diverge_at=None):
    """A result.json history; after epoch `diverge_at` the losses are NaN."""
    out = []
    for i, acc in enumerate(train_accs, start=1):
        loss = math.nan if diverge_at and i >= diverge_at else 1.0 - acc
        out.append({"epoch": i, "step": 10 * i, "lr": 0.1, "time/train_s": seconds_per_epoch * i, "train/acc": acc,
                    "train/loss": loss, "test/acc": acc - 0.02, "test/loss": loss})
    return out


def write_run(runs_dir: Path, overrides: list[str], hist: list[dict], status: str = "completed") -> Path:
    cfg = compose(overrides)
    run_dir = runs_dir / f"run-{fingerprint(cfg)[:12]}"
    final = {k: v for k, v in hist[-1].items() if "/" in k and not k.startswith("time/")}
    best = best_of(hist, {"train/acc": True, "test/acc": True})
    write_result(run_dir, {"config": OmegaConf.to_container(cfg, resolve=True), "fingerprint": fingerprint(cfg),
                           "status": status, "params": 1, "metrics": {"final": final, "best": best},
                           "code": {"commit": "0" * 40, "dirty": False, "modules": imported_modules()},
                           "epochs": len(hist), "wall_time_s": 1.0, "history": hist,
                           "diverged_at_step": 10 if status == "diverged" else None})
    return run_dir


def write_generated(run_dir: Path, epoch: int) -> None:
    times = np.arange(60) * 0.1
    (run_dir / "generated").mkdir()
    np.savez(run_dir / "generated" / f"epoch_{epoch:03d}.npz", times=times, seed=np.sin(times[:50]),
             target=np.sin(times[50:]), generated=np.sin(times[50:]) + 0.05)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for scheme, accs, seconds in [("euler", [0.5, 0.7, 0.9], 10.0), ("midpoint", [0.6, 0.84, 0.9], 10.0),
                                  ("rk4", [0.82, 0.9, 0.95], 12.0)]:
        write_run(root, ["depth=58", f"scheme={scheme}", "epochs=3"], history(accs, seconds))
    write_run(root, ["depth=58", "scheme=euler", "epochs=3", "seed=1"], history([0.5, 0.75, 0.9]))
    write_run(root, ["depth=58", "scheme=euler", "budget=smoke"], history([0.5]))  # another budget
    lr_sweep = ["experiment=horesnet/lr_robustness", "dataset=digits", "epochs=2"]
    for scheme in ("euler", "rk4"):
        for lr in (0.1, 0.4):
            diverged = scheme == "euler" and lr == 0.4
            write_run(root, [*lr_sweep, f"scheme={scheme}", f"optimizer.lr={lr}"],
                      history([0.3, 0.6], diverge_at=2 if diverged else None), "diverged" if diverged else "completed")
    for model in (["model=lstm"], ["model=ode_rnn"], ["scheme=heun_ext", "alpha=0.8"]):
        sine = write_run(root, ["experiment=heunnet/sine", "epochs=2", *model], history([0.2, 0.4]))
        write_generated(sine, 2)
    write_run(root, ["experiment=heunnet/mnist", "epochs=2"], history([0.8, 0.9]))
    write_run(root, ["experiment=heunnet/ecg", "model=lstm", "epochs=2"], history([0.8, 0.9]))
    return root


def test_time_to_accuracy_interpolates_within_the_crossing_epoch():
    hist = history([0.5, 0.7, 0.9], seconds_per_epoch=10.0)
    assert time_to_accuracy(hist, 0.8) == pytest.approx(25.0)  # halfway from (20 s, 0.7) to (30 s, 0.9)
    assert time_to_accuracy(hist, 0.7) == pytest.approx(20.0)
    assert time_to_accuracy(hist, 0.25) == pytest.approx(5.0)  # first epoch: from (0 s, 0)
    assert time_to_accuracy(hist, 0.95) is None
    hist[1]["train/acc"] = math.nan  # a non-finite entry is skipped
    assert time_to_accuracy(hist, 0.8) == pytest.approx(10 + 0.3 / 0.4 * 20)


def test_runs_are_grouped_by_budget_and_labelled(runs_dir):
    runs = load_runs(runs_dir)
    horesnet = [r for r in runs if r["config"]["model"]["name"] == "horesnet" and r["config"]["depth"] == 58]
    groups = sorted(group_runs(horesnet, ("scheme", "model.scheme")).values(), key=len)
    assert [len(g) for g in groups] == [1, 4]  # the smoke budget is never mixed with the paper's
    assert provenance(groups[0][0]["config"]).startswith("smoke, 1 ep, subset 512")
    assert provenance(groups[1][0]["config"]) == "paper, 3 ep"
    labels = {run_label(r["config"]) for r in runs}
    assert {"Euler", "RK-4", "LSTM", "HeunNet", "ExtendedHeunNet (α=0.8)"} <= labels

    rows = {row["label"]: row for row in time_to_accuracy_rows(groups[1])}
    assert rows["Euler"]["runs"] == 2 and rows["Euler"]["seconds"][0.8] == pytest.approx(np.mean([25.0, 23.333333]))
    assert rows["RK-4"]["seconds"][0.8] == pytest.approx(12 * 0.8 / 0.82)
    assert rows["Midpoint"]["speedup"][0.8] == pytest.approx(rows["Euler"]["seconds"][0.8] / (10 + 0.2 / 0.24 * 10))
    assert rows["Euler"]["speedup"][0.85] == pytest.approx(1.0)
    save(plot_curves(groups[1]), runs_dir.parent / "figs", "curves")
    save(plot_time_to_accuracy(groups[1]), runs_dir.parent / "figs", "time")


def test_lr_robustness_grid_records_divergence(runs_dir):
    sweep = [r for r in load_runs(runs_dir) if "lr_robustness_depths" in r["config"]]
    labels, lrs, cells = lr_outcomes(sweep)
    assert labels == ["Euler", "RK-4"] and lrs == [0.1, 0.4]
    assert cell_text(cells[("Euler", 0.4)]) == "diverged" and cells[("RK-4", 0.4)]["accuracy"] == pytest.approx(0.58)
    assert {cells[(label, 0.1)]["scheme"] for label in labels} == {"euler", "rk4"}
    assert cell_text(None) == "—"
    save(plot_lr_robustness(sweep), runs_dir.parent / "figs", "lr")


def test_lr_robustness_experiment_runs_the_grid_at_depth_86():
    depths = {s: compose(["experiment=horesnet/lr_robustness", f"scheme={s}"]).model.depth
              for s in ("euler", "midpoint", "rk4", "rk8")}
    assert depths == {"euler": 86, "midpoint": 86, "rk4": 82, "rk8": 86}
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        params = hydra_compose("config", ["experiment=horesnet/lr_robustness"], return_hydra_config=True).hydra.sweeper
    assert params.params["optimizer.lr"] == "0.05,0.1,0.13,0.2,0.23,0.3,0.4"
    assert compose(["experiment=horesnet/convergence", "scheme=rk8_adaptive"]).model.depth == 58


# --------------------------------------------------------------------------- scripts/figures.py
def figures_script():
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_script_renders_every_figure_with_inputs(runs_dir, tmp_path, capsys):
    landscapes = tmp_path / "landscapes"
    arrays = compute_landscape("rk4", 10, torch.randn(4, 1, 8, 8), torch.arange(4) % 2, 2, grid=3, width=2)
    save_landscape(landscapes / "random-horesnet-rk4-d18.npz", {**arrays, "depth": np.array(18)}, "random")
    out = tmp_path / "figures"
    assert figures_script().main(["--runs", str(runs_dir), "--landscapes", str(landscapes), "--out", str(out)]) == 0
    stems = {p.stem for p in out.glob("*.png")}
    assert {"heunnet_fig1", "horesnet_fig3", "horesnet_fig4_random", "horesnet_fig12_digits_paper-3-ep",
            "horesnet_fig13_digits_paper-3-ep",
            "horesnet_fig9_digits_paper-2-ep", "heunnet_fig7_sine_paper-2-ep", "heunnet_fig8_sine_paper-2-ep",
            "heunnet_fig4_mnist_paper-2-ep", "heunnet_fig5_mitbih_paper-2-ep"} <= stems
    assert any(stem.startswith("horesnet_fig12_digits_smoke-1-ep") for stem in stems)
    assert {p.stem for p in out.glob("*.pdf")} == stems
    printed = capsys.readouterr().out
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in printed.splitlines() if line.startswith("|")]
    assert any(row[:7] == ["random", "18", "RK-4", "2", "4", "3²", "±1"] for row in cells), printed
    assert "[1.99, 3.08]" in printed
    assert "missing horesnet_fig10: python train.py" in printed and "missing horesnet_fig9" not in printed
    assert "missing heunnet_fig6: python train.py experiment=heunnet/ecg\n" in printed


def test_figures_script_on_nothing_prints_the_commands(tmp_path):
    empty = tmp_path / "runs"
    empty.mkdir()
    out = subprocess.run([sys.executable, "scripts/figures.py", "--runs", str(empty), "--landscapes",
                          str(tmp_path / "none"), "--out", str(tmp_path / "figs")], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    missing = [line for line in out.stdout.splitlines() if line.startswith("missing ")]
    assert "missing horesnet_fig9: python train.py -m experiment=horesnet/lr_robustness" in missing
    assert "missing horesnet_fig4: python scripts/landscape.py --depth 18 --schemes euler,midpoint,rk4 " \
           "--dataset cifar10" in missing
    assert len(missing) == 17 and (tmp_path / "figs" / "heunnet_fig1.pdf").is_file()


# --------------------------------------------------------------------------- forest plots of the verdicts
def _tested(pairs: list[tuple[list[float], list[float]]], paper: list[float | None]) -> list[Verdict]:
    """Verdicts of claims `better above worse` with these seeds, Holm-adjusted as one family."""
    def test(a, b):
        return Test((tuple(a), tuple(b)), (spread(a), spread(b)), welch(a, b), None)

    return adjust([Verdict("heunnet", "t", Claim("a", "b", f"claim {i}"), "accuracy",
                           (p, 0.0) if p is not None else (None, None), test(a, b), test(a, b))
                   for i, ((a, b), p) in enumerate(zip(pairs, paper, strict=True))])


def test_the_forest_plot_draws_each_claims_intervals_the_papers_difference_and_the_verdict():
    verdicts = _tested([([1.0, 1.2, 1.1, 1.3], [0.2, 0.3, 0.25, 0.1]),  # supported
                        ([0.1, 0.5, 0.3], [0.2, 0.4, 0.35]),  # inconclusive
                        ([0.1, 0.2, 0.15], [0.9, 1.0, 1.05])], [0.5, None, 0.4])  # contradicted
    rows = forest_rows(verdicts)
    assert [r["verdict"] for r in rows] == ["supported", "inconclusive", "contradicted"]
    ax = plot_forest(verdicts, "title").axes[0]
    assert ax.get_xscale() == "linear"  # all within a few points
    thick = [line for line in ax.lines if line.get_linewidth() == 5]
    thin = [line for line in ax.lines if line.get_linewidth() == 1.2]
    low, high = ax.get_xlim()
    for y, (v, r) in enumerate(zip(verdicts, rows, strict=True)):
        assert list(thick[y].get_xdata()) == pytest.approx(v.free.comparison.interval())
        assert list(thick[y].get_ydata()) == [y, y] and thick[y].get_color() == COLOURS[r["verdict"]]
        a, b = v.free.adjusted_interval()
        assert list(thin[y].get_xdata()) == pytest.approx([max(a, low), min(b, high)])  # clipped at the axis
        assert a <= v.free.comparison.low and b >= v.free.comparison.high  # equal at the last Holm step
    assert not rows[0]["adjusted"][0] <= 0 <= rows[0]["adjusted"][1]  # decided: its thin bar clears zero
    diamonds = [line for line in ax.lines if line.get_marker() == "D"]
    assert [(d.get_xdata()[0], d.get_ydata()[0]) for d in diamonds] == [(0.5, 0), (0.4, 2)]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["claim 0", "claim 1", "claim 2"]
    assert digest(rows) != digest(forest_rows(verdicts[:2]))


def test_the_forest_plot_is_symmetric_log_where_differences_span_many_points():
    verdicts = _tested([([1.0, 1.2, 1.1], [0.2, 0.3, 0.25]), ([10.0, 90.0, 50.0], [80.0, 95.0, 99.0])], [None, None])
    assert plot_forest(verdicts, "wide").axes[0].get_xscale() == "symlog"


def test_make_figures_draws_a_forest_plot_per_paper_and_budget(tmp_path):
    rows = {r.row: list(r.overrides) for r in load_table("heunnet_results").rows}
    runs = tmp_path / "runs"
    for seed, (heun, lstm) in enumerate([(0.986, 0.985), (0.987, 0.984), (0.988, 0.985)]):
        for overrides, acc in ((rows["MNIST, HeunNet"], heun), (rows["MNIST, LSTM"], lstm)):
            write_run(runs, [*overrides, f"seed={seed}"], [{"epoch": 1, "time/train_s": 1.0, "test/acc": acc}])
    written, _ = render_all(tmp_path / "figures", load_runs(runs), [])
    assert "verdicts_heunnet_paper" in {p.stem for p in written}
    assert not any(p.stem.startswith(("verdicts_horesnet", "verdicts_rkcnn")) for p in written)  # no runs of theirs


def test_a_forest_plot_without_runs_on_both_sides_says_so(recwarn):
    """The report draws a paper's forest plot whenever it has claims; with no runs (all stale, left out) it says so."""
    empty = Verdict("heunnet", "t", Claim("a", "b", "claim"), "accuracy", (None, None),
                    Test(((), ()), (None, None), None, None), Test(((), ()), (None, None), None, None))
    ax = plot_forest([empty], "empty").axes[0]
    assert not forest_rows([empty]) and ax.get_ylim() == (0.5, -0.5)
    assert [t.get_text() for t in ax.texts] == ["no claim has runs on both sides yet"]
    assert not [w for w in recwarn if "singular" in str(w.message)]
