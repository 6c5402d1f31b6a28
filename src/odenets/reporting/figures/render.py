"""Every paper figure that has inputs, from stored results only: run records and loss landscapes.

`render_all` draws each figure family for every group of comparable runs (odenets.reporting.figures.runs), so runs
of different budgets or settings are never drawn together; each file is named by figure, dataset and
budget, and each title says the dataset and budget; the commits the runs ran at are in each file's metadata
and in `provenance.json` beside the figures, which the report shows. A figure whose inputs are missing is
listed with the command that produces them (`missing`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from odenets.reporting.budget import budget_names, load_budget
from odenets.reporting.figures import LANDSCAPE_FIGURES, landscape_command, save
from odenets.reporting.figures.curves import (
    HEUNNET_PANELS,
    SINE_PANELS,
    latest_generated,
    plot_accuracy_vs_depth,
    plot_curves,
    plot_generated_waves,
    plot_time_to_accuracy,
)
from odenets.reporting.figures.forest import plot_forest
from odenets.reporting.figures.integration import evaluations, plot_step_sweep
from odenets.reporting.figures.landscape import format_ranges, landscape_ranges, plot_landscapes, span_of
from odenets.reporting.figures.lr_robustness import plot_lr_robustness
from odenets.reporting.figures.ode_demos import plot_heun_fig1, plot_horesnet_fig3
from odenets.reporting.figures.order import orders, plot_measured_order
from odenets.reporting.figures.runs import RNN_LABELS, group_runs, provenance, run_label
from odenets.reporting.figures.stability import diagnostics, plot_regions, plot_stability
from odenets.reporting.index import RunIndex
from odenets.reporting.published import load_table
from odenets.reporting.speed import scheme_key
from odenets.reporting.summary import PAPERS, by_paper, forest_name
from odenets.reporting.verdicts import runs_of, test_claims
from odenets.results import commits, get

SCHEME_VARIED = ("scheme", "model.scheme")
RECURRENT = ("ode_rnn", *RNN_LABELS)  # the HeunNet paper's models
MODEL_VARIED = ("model", "scheme", "alpha")
# HO-ResNet curves: depth -> (figure, schemes the paper compares)
HORESNET_CURVES = {6: ("horesnet_fig10", ("euler", "midpoint")), 10: ("horesnet_fig11", ("euler", "midpoint", "rk4")),
                   58: ("horesnet_fig12", ("euler", "midpoint", "rk4", "rk8", "rk8_adaptive"))}
ECG = {"LSTM": "heunnet_fig5", "HeunNet": "heunnet_fig6"}
SINE = "python train.py -m experiment=heunnet/sine model=ode_rnn,lstm,phased_lstm; " \
       "python train.py experiment=heunnet/sine scheme=heun_ext alpha=0.8"
# figure -> the command that produces its inputs (printed when the figure could not be drawn)
COMMANDS = {
    **{figure: landscape_command(depth) for depth, (figure, _) in LANDSCAPE_FIGURES.items()},
    "horesnet_fig9": "python train.py -m experiment=horesnet/lr_robustness",
    "horesnet_fig10": "python train.py -m experiment=horesnet/cifar10 dataset.autoaugment=false depth=6 "
                      "scheme=euler,midpoint",
    "horesnet_fig11": "python train.py -m experiment=horesnet/cifar10 dataset.autoaugment=false depth=10 "
                      "scheme=euler,midpoint,rk4",
    "horesnet_fig12": "python train.py -m experiment=horesnet/convergence",
    "horesnet_fig13": "python train.py -m experiment=horesnet/convergence",
    "heunnet_fig4": "python train.py -m experiment=heunnet/mnist model=ode_rnn,lstm",
    "heunnet_fig5": "python train.py experiment=heunnet/ecg model=lstm epochs=100",
    "heunnet_fig6": "python train.py experiment=heunnet/ecg",
    "heunnet_fig7": SINE,
    "heunnet_fig8": SINE,
    "heunnet_authors": "python train.py -m experiment=heunnet/mnist_authors model=lstm,ode_rnn",
    "horesnet_orderings": "make reproduce-tables BUDGET=cpu TABLES=horesnet_orderings",
    "ode_integration": "python scripts/integration_sweep.py outputs/runs/<shared-weight runs>",
    "ode_stability": "odenets-diagnose outputs/runs/<run>",
    "ode_order": "odenets-diagnose outputs/runs/<shared-weight run>",
}


class Renderer:
    """Writes figures under `out` as `<figure>_<group tag>`, each name unique, with the commits of the runs drawn
    in the files' metadata and in `provenance` (written to `provenance.json` beside them for the report)."""

    def __init__(self, out: Path) -> None:
        self.out, self.written, self.provenance = out, [], {}

    def save(self, fig, name: str, runs: Sequence[dict] = ()) -> None:
        base = name = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")
        n = 1
        while any(p.stem == name for p in self.written):  # groups alike in dataset and budget, unlike otherwise
            n += 1
            name = f"{base}_{n}"
        about = commits(runs) if runs else "no runs (computed from the tableaus or stored arrays)"
        self.written.append(save(fig, self.out, name, about)[0])
        self.provenance[name] = {"commits": about, "runs": len(runs),
                                 "seeds": len({get(r, "config.seed") for r in runs})}

    def wrote(self, figure: str) -> bool:
        return any(p.stem == figure or p.stem.startswith(f"{figure}_") for p in self.written)


def trained(runs: Sequence[dict], models: Sequence[str], datasets: Sequence[str] | None = None,
            where: Callable[[dict], bool] = lambda config: True) -> list[dict]:
    """Runs with a history (completed or diverged) of one of `models`, optionally on `datasets`, and `where`."""
    return [run for run in runs if run.get("history") and where(run["config"])
            and get(run["config"], "model.name") in models
            and (datasets is None or get(run["config"], "dataset.name") in datasets)]


def tag(group: Sequence[dict], sep: str = "_") -> str:
    """`<dataset><sep><budget>` of a group: `sep="_"` for file names, `", "` for titles. The commits the runs ran
    at go into the figure's metadata and the report (`Renderer.save`), not the title."""
    config = group[0]["config"]
    return f"{get(config, 'dataset.name')}{sep}{provenance(config)}"


def ode_figures(r: Renderer) -> None:
    r.save(plot_heun_fig1(), "heunnet_fig1")
    r.save(plot_horesnet_fig3(), "horesnet_fig3")


def landscape_figures(r: Renderer, landscapes: Sequence[dict]) -> None:
    key = lambda ls: (ls["dataset"], ls["depth"], span_of(ls))
    for dataset, depth, span in sorted(set(map(key, landscapes))):
        figure = LANDSCAPE_FIGURES.get(depth, (f"horesnet_landscape_d{depth}",))[0]
        suffix = "" if span == 1 else f"_span{span:g}"
        r.save(plot_landscapes([ls for ls in landscapes if key(ls) == (dataset, depth, span)]),
               f"{figure}_{dataset}{suffix}")
    if landscapes:
        table = format_ranges(landscape_ranges(sorted(landscapes, key=key)))
        (r.out / "horesnet_landscape_ranges.md").write_text(table + "\n")
        print(table)


def horesnet_curve_figures(r: Renderer, runs: Sequence[dict]) -> None:
    for depth, (figure, schemes) in HORESNET_CURVES.items():
        found = trained(runs, ("horesnet",), where=lambda config, d=depth: get(config, "model.depth") == d)
        for group in group_runs(found, SCHEME_VARIED).values():
            absent = sorted(set(schemes) - {scheme_key(run["config"]) for run in group})
            note = f" (no runs yet: {', '.join(absent)})" if absent else ""
            title = f"HO-ResNet-{depth}, {tag(group, ', ')}{note}"
            r.save(plot_curves(group, title=f"{title} (HO-ResNet Fig. {figure[len('horesnet_fig'):]})"),
                   f"{figure}_{tag(group)}", group)
            if depth == 58:
                r.save(plot_time_to_accuracy(group, title=f"Time to train accuracy, {title} (HO-ResNet Fig. 13)"),
                       f"horesnet_fig13_{tag(group)}", group)


def lr_robustness_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """Fig. 9 from the runs of experiment=horesnet/lr_robustness (recognised by its depth table)."""
    found = [run for run in runs if "lr_robustness_depths" in run["config"] and run["status"] != "running"]
    for group in group_runs(found, (*SCHEME_VARIED, "optimizer.lr", "depth", "model.depth")).values():
        title = f"HO-ResNet-86 (RK-4: 82), {tag(group, ', ')} (HO-ResNet Fig. 9)"
        r.save(plot_lr_robustness(group, title=title), f"horesnet_fig9_{tag(group)}", group)


def orderings_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """Ours: HO-ResNet's best test accuracy against depth, one line per scheme (experiment=horesnet/orderings)."""
    found = trained(runs, ("horesnet",), where=lambda config: "orderings_flip" in config)
    for group in group_runs(found, (*SCHEME_VARIED, "depth", "model.depth")).values():
        title = f"HO-ResNet orderings (ours, not the paper's data), {tag(group, ', ')}"
        r.save(plot_accuracy_vs_depth(group, title=title), f"horesnet_orderings_{tag(group)}", group)


def heunnet_figures(r: Renderer, runs: Sequence[dict]) -> None:
    authors = lambda config: get(config, "trainer.val_check_interval") is not None
    for group in group_runs(trained(runs, RECURRENT, ("mnist",), lambda c: not authors(c)), MODEL_VARIED).values():
        title = f"MNIST, {tag(group, ', ')} (HeunNet Fig. 4)"
        r.save(plot_curves(group, HEUNNET_PANELS, title=title), f"heunnet_fig4_{tag(group)}", group)
    for group in group_runs(trained(runs, RECURRENT, ("mnist",), authors), MODEL_VARIED).values():
        title = f"MNIST, the authors' recipe (test every 500 steps), {tag(group, ', ')}"
        r.save(plot_curves(group, HEUNNET_PANELS, title=title), f"heunnet_authors_{tag(group)}", group)

    for group in group_runs(trained(runs, RECURRENT, ("mitbih", "mitbih_csv")), ()).values():
        label = run_label(group[0]["config"])
        title = f"ECG, {label}, {tag(group, ', ')} (HeunNet Figs. 5-6)"
        figure = ECG.get(label, f"heunnet_ecg_{label}")
        r.save(plot_curves(group, HEUNNET_PANELS, title=title), f"{figure}_{tag(group)}", group)

    for group in group_runs(trained(runs, RECURRENT, ("sine",)), MODEL_VARIED).values():
        title = f"Sine wave, {tag(group, ', ')}"
        r.save(plot_curves(group, SINE_PANELS, ncols=1, title=f"{title} (HeunNet Fig. 7)"),
               f"heunnet_fig7_{tag(group)}", group)
        if any(latest_generated(run) is not None for run in group):
            r.save(plot_generated_waves(group, title=f"{title} (HeunNet Fig. 8)"), f"heunnet_fig8_{tag(group)}", group)


def integration_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """Ours: trained weights evaluated with other schemes and step sizes (scripts/integration_sweep.py)."""
    found = [run for run in runs if evaluations(run)]
    for group in group_runs(found, MODEL_VARIED).values():
        title = f"{tag(group, ', ')}: trained weights, other integrations (ours, not the papers')"
        r.save(plot_step_sweep(group, title=title), f"ode_integration_{tag(group)}", group)


def verdict_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """The claims tested, one forest plot per paper and budget (`figures.forest`), on the runs given (those to draw:
    the caller left out the stale ones or not), within each budget's families (`verdicts.test_claims`)."""
    for budget in budget_names():
        index = RunIndex.of(runs, budget, allow_stale=True)
        if not index.runs():
            continue
        tested = test_claims([load_table(name) for name in load_budget(budget).tables], index)
        for paper, verdicts in by_paper(v for vs in tested.values() for v in vs).items():
            drawn = runs_of(verdicts)
            if drawn:
                r.save(plot_forest(verdicts, f"{PAPERS[paper]}: the claims tested on our seeds (budget {budget})"),
                       forest_name(paper, budget), drawn)


def stability_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """Ours: the schemes' stability regions, and the diagnosed runs' h lambda and measured order (odenets-diagnose)."""
    r.save(plot_regions(), "stability_regions")
    for group in group_runs([run for run in runs if diagnostics(run)], MODEL_VARIED).values():
        r.save(plot_stability(group, title=f"{tag(group, ', ')}: trained blocks against their stability region"),
               f"ode_stability_{tag(group)}", group)
        if any(orders(run) for run in group):
            r.save(plot_measured_order(group, title=f"{tag(group, ', ')}: the measured order"),
                   f"ode_order_{tag(group)}", group)


def render_all(out: Path, runs: Sequence[dict], landscapes: Sequence[dict]) -> tuple[list[Path], dict[str, str]]:
    """Draw every figure with inputs under `out`; returns the PNGs written and {missing figure: command}."""
    r = Renderer(Path(out))
    ode_figures(r)
    landscape_figures(r, landscapes)
    horesnet_curve_figures(r, runs)
    lr_robustness_figures(r, runs)
    orderings_figures(r, runs)
    heunnet_figures(r, runs)
    integration_figures(r, runs)
    stability_figures(r, runs)
    verdict_figures(r, runs)
    (Path(out) / "provenance.json").write_text(json.dumps(r.provenance, indent=1, sort_keys=True) + "\n")
    return r.written, {figure: command for figure, command in COMMANDS.items() if not r.wrote(figure)}
