"""Training curves from result.json histories, time to an accuracy, and generated sine waves.

- HO-ResNet Figs. 10-12: train/test accuracy and loss per scheme against epochs (2 x 2 panels:
  training on top, testing below, as Fig. 12).
- HO-ResNet Fig. 13 / Table 4: wall-clock training time to reach 0.80 and 0.85 training accuracy
  (`time_to_accuracy`), and its ratio to Euler's (the paper's "ratio of time cost": Euler's time
  over the scheme's, so larger is faster).
- HeunNet Figs. 4-7: loss and accuracy per model against iterations (= epochs), train solid, test
  dashed; Fig. 8: the free-running generated sine wave of each model's last epoch.

Runs of one label (several seeds) are drawn as their mean with a +-1 std band over the epochs all of
them reached; a run that diverged is marked in the legend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from odenets.reporting.figures.runs import by_label, run_label
from odenets.reporting.published import Published, load_table
from odenets.reporting.speed import SPEED_THRESHOLDS, scheme_key, speedup_over_euler, time_to_accuracy
from odenets.reporting.stats import band
from odenets.results import get

HORESNET_PANELS = (("train accuracy", ("train/acc",)), ("train loss", ("train/loss",)),
                   ("test accuracy", ("test/acc",)), ("test loss", ("test/loss",)))
HEUNNET_PANELS = (("loss", ("train/loss", "test/loss")), ("accuracy", ("train/acc", "test/acc")))
SINE_PANELS = (("loss (one-step MSE)", ("train/loss", "test/loss")),)
LINESTYLES = {"train": "-", "test": "--"}
THRESHOLDS = tuple(SPEED_THRESHOLDS.values())


def mean_std(runs: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, sample std) of `key` over the runs, on the epochs every run reached (`stats.band`)."""
    length = min(len(run["history"]) for run in runs)
    values = np.array([[entry.get(key, np.nan) for entry in run["history"][:length]] for run in runs], dtype=float)
    epochs = np.array([entry["epoch"] for entry in runs[0]["history"][:length]])
    return (epochs, *band(values))


def legend_label(label: str, runs: Sequence[dict]) -> str:
    """`label, n seeds`: seeds per point (per depth where the runs span depths: "2-4 seeds" if they differ)."""
    per_point: dict[object, set] = {}
    for run in runs:
        per_point.setdefault(get(run["config"], "model.depth"), set()).add(get(run["config"], "seed"))
    counts = sorted({len(s) for s in per_point.values()})
    seeds = "" if counts == [1] else f", {counts[0]}{'-' + str(counts[-1]) if len(counts) > 1 else ''} seeds"
    diverged = sum(run["status"] == "diverged" for run in runs)
    return label + seeds + (f" ({diverged} diverged)" if diverged else "")


def plot_curves(runs: Sequence[dict], panels=HORESNET_PANELS, ncols: int = 2, title: str = "") -> Figure:
    """One panel per (title, metric keys); one colour per run label, line style by split."""
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    groups = by_label([run for run in runs if run.get("history")])
    for ax, (panel_title, keys) in zip(axes, panels, strict=False):
        for i, (label, group) in enumerate(groups.items()):
            for key in keys:
                epochs, mean, std = mean_std(group, key)
                name = legend_label(label, group) if key == keys[0] else None
                ax.plot(epochs, mean, LINESTYLES[key.split("/")[0]], color=f"C{i % 10}", lw=1.3, label=name)
                if len(group) > 1:
                    ax.fill_between(epochs, mean - std, mean + std, color=f"C{i % 10}", alpha=0.2, lw=0)
        split = " (solid: train, dashed: test)" if len(keys) > 1 else ""
        ax.set(title=panel_title + split, xlabel="epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def published_speedups() -> dict[str, Published]:
    """conf/scheme name -> HO-ResNet Table 4's published numbers (speedup_080, speedup_085, ...)."""
    scheme_of = lambda row: next(o.split("=", 1)[1] for o in row.overrides if o.startswith("scheme="))
    return {scheme_of(row): row.published for row in load_table("horesnet_table4").rows}


def time_to_accuracy_rows(runs: Sequence[dict], thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """Per label: mean seconds to each threshold over the runs that reached it, and Euler's time over it."""
    rows = []
    for label, group in by_label(runs).items():
        times = {}
        for threshold in thresholds:
            reached = [t for run in group if (t := time_to_accuracy(run["history"], threshold)) is not None]
            times[threshold] = float(np.mean(reached)) if reached else None
        rows.append({"label": label, "scheme": scheme_key(group[0]["config"]), "runs": len(group), "seconds": times})
    for threshold in thresholds:
        speedups = speedup_over_euler({row["label"]: (row["scheme"], row["seconds"][threshold]) for row in rows})
        for row in rows:
            row.setdefault("speedup", {})[threshold] = speedups[row["label"]]
    return rows


def plot_time_to_accuracy(runs: Sequence[dict], thresholds: Sequence[float] = THRESHOLDS, title: str = "") -> Figure:
    """Bars of training time to each threshold per scheme, annotated with ours/paper speed-up over Euler."""
    rows, paper = time_to_accuracy_rows(runs, thresholds), published_speedups()
    fig = Figure(figsize=(max(6.0, 1.6 * len(rows)), 4), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(thresholds)
    for i, threshold in enumerate(thresholds):
        xs = np.arange(len(rows)) + (i - (len(thresholds) - 1) / 2) * width
        heights = [row["seconds"][threshold] or 0.0 for row in rows]
        bars = ax.bar(xs, heights, width, label=f"to {threshold:.2f} train accuracy")
        for bar, row in zip(bars, rows, strict=True):
            ours = row["speedup"][threshold]
            pub = paper.get(row["scheme"], {}).get(f"speedup_{round(threshold * 100):03d}")
            text = ("not reached" if row["seconds"][threshold] is None
                    else f"{ours:.2f}x" if ours else "")
            text += f"\npaper {pub:g}x" if pub is not None else ""
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(np.arange(len(rows)), [row["label"] for row in rows])
    ax.set(ylabel="training time (s)", title=title)
    ax.margins(y=0.25)
    ax.legend(fontsize=8)
    return fig


def plot_accuracy_vs_depth(runs: Sequence[dict], key: str = "test/acc", title: str = "") -> Figure:
    """Best `key` over epochs against depth, one line per scheme: mean over seeds with +-1 sample std bars."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for i, (label, group) in enumerate(by_label([run for run in runs if get(run, f"metrics.best.{key}")]).items()):
        by_depth: dict[int, list[float]] = {}
        for run in group:
            by_depth.setdefault(int(get(run["config"], "model.depth")), []).append(100 * run["metrics"]["best"][key])
        depths = sorted(by_depth)
        means, stds = zip(*(band(np.array(by_depth[d])) for d in depths), strict=True)
        ax.errorbar(depths, means, yerr=stds, marker="o", capsize=3, color=f"C{i % 10}",
                    label=legend_label(label, group))
    ax.set(xlabel="depth (weight layers)", ylabel=f"best {key} (%)", title=title)
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def latest_generated(run: dict) -> dict[str, np.ndarray] | None:
    """The last epoch's free run of a sine-task run (times, seed, target, generated, epoch), or None: kept
    inline by committed records, else the forecast task's `<run dir>/generated/epoch_NNN.npz`."""
    if run.get("generated"):
        return {k: np.asarray(v) if isinstance(v, list) else v for k, v in run["generated"].items()}
    files = sorted(Path(run["run_dir"], "generated").glob("epoch_*.npz"))
    if not files:
        return None
    with np.load(files[-1]) as z:
        return {k: z[k] for k in z.files} | {"epoch": int(files[-1].stem.split("_")[1])}


def plot_generated_waves(runs: Sequence[dict], title: str = "") -> Figure:
    """One panel per model: the true wave (seed window, then the continuation) and the generated one."""
    ordered = [run for group in by_label(runs).values() for run in group]
    waves = [(run, wave) for run in ordered if (wave := latest_generated(run)) is not None]
    fig = Figure(figsize=(9, 2.2 * len(waves)), layout="constrained")
    for ax, (run, wave) in zip(fig.subplots(len(waves), 1, squeeze=False)[:, 0], waves, strict=True):
        times, n_seed = wave["times"], len(wave["seed"])
        ax.plot(times, np.concatenate([wave["seed"], wave["target"]]), color="k", lw=1, label="sin(t)")
        ax.plot(times[n_seed:], wave["generated"], color="C3", lw=1.3, label="generated")
        ax.axvline(times[n_seed], color="grey", ls=":", lw=1)
        acc = get(run, "metrics.final.test/gen_acc")
        acc_text = "" if acc is None else f", free-run accuracy {100 * acc:.1f}%"
        ax.set_title(f"{run_label(run['config'])} (epoch {wave['epoch']}{acc_text})", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    fig.supxlabel("t")
    fig.suptitle(title)
    return fig
