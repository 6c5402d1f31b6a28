"""Render every paper figure that has inputs (`make figures`): PNG and PDF under --out.

    python scripts/figures.py [--runs outputs/runs] [--landscapes outputs/landscapes] [--out outputs/figures]

Reads run records (`result.json`, and the sine task's `generated/*.npz`) under --runs and loss
landscapes (`*.npz`, written by scripts/landscape.py) under --landscapes; never trains. A figure
whose inputs are missing gets one line, `missing <figure>: <command that produces them>`, and the
script still exits 0. Runs of different budgets or settings are never drawn together: each group
of comparable runs (odenets.figures.runs) gets its own file, named by dataset and budget.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from odenets.figures import save
from odenets.figures.curves import (
    HEUNNET_PANELS,
    SINE_PANELS,
    latest_generated,
    plot_curves,
    plot_generated_waves,
    plot_time_to_accuracy,
)
from odenets.figures.landscape import format_ranges, landscape_ranges, load_landscape, plot_landscapes, span_of
from odenets.figures.lr_robustness import plot_lr_robustness
from odenets.figures.ode_demos import plot_heun_fig1, plot_horesnet_fig3
from odenets.figures.runs import RNN_LABELS, group_runs, provenance, run_label, scheme_key
from odenets.results import get, load_runs

SCHEME_VARIED = ("scheme", "model.scheme")
RECURRENT = ("ode_rnn", *RNN_LABELS)  # the HeunNet paper's models
MODEL_VARIED = ("model", "scheme", "alpha")
# HO-ResNet curves: depth -> (figure, schemes the paper compares)
HORESNET_CURVES = {6: ("horesnet_fig10", ("euler", "midpoint")), 10: ("horesnet_fig11", ("euler", "midpoint", "rk4")),
                   58: ("horesnet_fig12", ("euler", "midpoint", "rk4", "rk8", "rk8_adaptive"))}
LANDSCAPES = {18: "horesnet_fig4", 58: "horesnet_fig8"}
ECG = {"LSTM": "heunnet_fig5", "HeunNet": "heunnet_fig6"}
SINE = "python train.py -m experiment=heunnet/sine model=ode_rnn,lstm,phased_lstm; " \
       "python train.py experiment=heunnet/sine scheme=heun_ext alpha=0.8"
# figure -> the command that produces its inputs (printed when the figure could not be drawn)
COMMANDS = {
    "horesnet_fig4": "python scripts/landscape.py --depth 18 --schemes euler,midpoint,rk4 --dataset cifar10",
    "horesnet_fig8": "python scripts/landscape.py --depth 58 --schemes euler,midpoint,rk4,rk8 --dataset cifar10",
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
}


class Renderer:
    """Writes figures under `out` as `<figure>_<group tag>`, each name unique."""

    def __init__(self, out: Path) -> None:
        self.out, self.written = out, []

    def save(self, fig, name: str) -> None:
        base = name = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")
        n = 1
        while any(p.stem == name for p in self.written):  # groups alike in dataset and budget, unlike otherwise
            n += 1
            name = f"{base}_{n}"
        self.written.append(save(fig, self.out, name)[0])

    def wrote(self, figure: str) -> bool:
        return any(p.stem == figure or p.stem.startswith(f"{figure}_") for p in self.written)


def trained(runs: Sequence[dict], models: Sequence[str], datasets: Sequence[str] | None = None,
            where: Callable[[dict], bool] = lambda config: True) -> list[dict]:
    """Runs with a history (completed or diverged) of one of `models`, optionally on `datasets`, and `where`."""
    return [run for run in runs if run.get("history") and where(run["config"])
            and get(run["config"], "model.name") in models
            and (datasets is None or get(run["config"], "dataset.name") in datasets)]


def tag(group: Sequence[dict], sep: str = "_") -> str:
    """`<dataset><sep><budget>` of a group: `sep="_"` for file names, `", "` for titles."""
    config = group[0]["config"]
    return f"{get(config, 'dataset.name')}{sep}{provenance(config)}"


def ode_figures(r: Renderer) -> None:
    r.save(plot_heun_fig1(), "heunnet_fig1")
    r.save(plot_horesnet_fig3(), "horesnet_fig3")


def landscape_figures(r: Renderer, landscapes: Sequence[dict]) -> None:
    key = lambda ls: (ls["dataset"], ls["depth"], span_of(ls))
    for dataset, depth, span in sorted(set(map(key, landscapes))):
        figure = LANDSCAPES.get(depth, f"horesnet_landscape_d{depth}")
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
                   f"{figure}_{tag(group)}")
            if depth == 58:
                r.save(plot_time_to_accuracy(group, title=f"Time to train accuracy, {title} (HO-ResNet Fig. 13)"),
                       f"horesnet_fig13_{tag(group)}")


def lr_robustness_figures(r: Renderer, runs: Sequence[dict]) -> None:
    """Fig. 9 from the runs of experiment=horesnet/lr_robustness (recognised by its depth table)."""
    found = [run for run in runs if "lr_robustness_depths" in run["config"] and run["status"] != "running"]
    for group in group_runs(found, (*SCHEME_VARIED, "optimizer.lr", "depth", "model.depth")).values():
        title = f"HO-ResNet-86 (RK-4: 82), {tag(group, ', ')} (HO-ResNet Fig. 9)"
        r.save(plot_lr_robustness(group, title=title), f"horesnet_fig9_{tag(group)}")


def heunnet_figures(r: Renderer, runs: Sequence[dict]) -> None:
    for group in group_runs(trained(runs, RECURRENT, ("mnist",)), MODEL_VARIED).values():
        title = f"MNIST, {provenance(group[0]['config'])} (HeunNet Fig. 4)"
        r.save(plot_curves(group, HEUNNET_PANELS, title=title), f"heunnet_fig4_{tag(group)}")

    for group in group_runs(trained(runs, RECURRENT, ("mitbih", "mitbih_csv")), ()).values():
        label = run_label(group[0]["config"])
        title = f"ECG, {label}, {provenance(group[0]['config'])} (HeunNet Figs. 5-6)"
        figure = ECG.get(label, f"heunnet_ecg_{label}")
        r.save(plot_curves(group, HEUNNET_PANELS, title=title), f"{figure}_{tag(group)}")

    for group in group_runs(trained(runs, RECURRENT, ("sine",)), MODEL_VARIED).values():
        title = f"Sine wave, {provenance(group[0]['config'])}"
        r.save(plot_curves(group, SINE_PANELS, ncols=1, title=f"{title} (HeunNet Fig. 7)"),
               f"heunnet_fig7_{tag(group)}")
        if any(latest_generated(run["run_dir"]) is not None for run in group):
            r.save(plot_generated_waves(group, title=f"{title} (HeunNet Fig. 8)"), f"heunnet_fig8_{tag(group)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="outputs/runs", type=Path, help="directory searched for result.json")
    parser.add_argument("--landscapes", default="outputs/landscapes", type=Path, help="directory of landscape .npz")
    parser.add_argument("--out", default="outputs/figures", type=Path, help="where PNG and PDF files go")
    args = parser.parse_args(argv)
    r = Renderer(args.out)
    runs = load_runs(args.runs)
    ode_figures(r)
    landscape_figures(r, [load_landscape(p) for p in sorted(args.landscapes.glob("*.npz"))])
    horesnet_curve_figures(r, runs)
    lr_robustness_figures(r, runs)
    heunnet_figures(r, runs)
    for path in r.written:
        print(f"wrote {path} (+ .pdf)")
    for figure, command in COMMANDS.items():
        if not r.wrote(figure):
            print(f"missing {figure}: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
