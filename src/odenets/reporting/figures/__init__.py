"""Figures of the three papers, drawn from stored results only (result.json histories, .npz arrays).

One module per figure family: `ode_demos` (HeunNet Fig. 1, HO-ResNet Fig. 3), `landscape` (HO-ResNet
Figs. 4 and 8), `curves` (HO-ResNet Figs. 10-13, HeunNet Figs. 4-8), `lr_robustness` (HO-ResNet
Fig. 9); `runs` reads and groups run records. Figures are built as `matplotlib.figure.Figure`
objects (no pyplot state; PNG is rendered by Agg) and written by `save`.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

# HO-ResNet Figs. 4 and 8: depth -> (figure, schemes), the one list the Makefile, reproduce and figures use.
LANDSCAPE_FIGURES = {18: ("horesnet_fig4", "euler,midpoint,rk4"), 58: ("horesnet_fig8", "euler,midpoint,rk4,rk8")}


def landscape_command(depth: int, dataset: str = "cifar10") -> str:
    """The command computing one landscape figure's inputs."""
    return f"python scripts/landscape.py --depth {depth} --schemes {LANDSCAPE_FIGURES[depth][1]} --dataset {dataset}"


SCHEME_ORDER = ("euler", "midpoint", "heun", "ralston", "rk3", "rk4", "rk4_38", "dopri5", "rk8")
SCHEME_LABELS = {"euler": "Euler", "midpoint": "Midpoint", "heun": "Heun", "rk4": "RK-4", "rk8": "RK-8"}


def scheme_label(name: str) -> str:
    return SCHEME_LABELS.get(name, name)


def scheme_rank(name: str) -> int:
    """Position in the papers' order (lower order first); unknown schemes last."""
    return SCHEME_ORDER.index(name) if name in SCHEME_ORDER else len(SCHEME_ORDER)


def save(fig: Figure, out_dir: str | Path, name: str, about: str = "", formats: tuple[str, ...] = ("png", "pdf")
         ) -> list[Path]:
    """Write `name`.png (150 dpi) and `name`.pdf (or the `formats` given) under `out_dir`, `about` (the commits
    behind it) in their metadata; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{ext}" for ext in formats]
    for path in paths:
        key = "Description" if path.suffix == ".png" else "Subject"
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata={key: about} if about else None)
    return paths
