"""HO-ResNet Figs. 4 and 8: 2-D loss landscapes of untrained HO-ResNet-18 and -58 per scheme.

Li et al. 2018 ("Visualizing the Loss Landscape of Neural Nets"): the loss of a fixed batch at
theta + a d1 + b d2 on a grid of (a, b) in [-span, span]^2 (span 1 in Li et al.), where d1, d2 are Gaussian directions
normalised filter by filter, d_ij <- d_ij / ||d_ij|| * ||theta_ij|| (their eq. 1; a filter is one
output slice of a weight), and zero on 1-D parameters (biases and BN affine parameters: their
default `--xignore biasbn`). The network is evaluated in eval mode, as in their code: an untrained
BatchNorm then holds its initial statistics (mean 0, variance 1) and normalises nothing, so growth
of the features through the depth shows in the loss (Fig. 8's explosion of Euler at depth 58).

`compute_landscape` returns arrays that `save_landscape` stores as `.npz` (scripts/landscape.py);
`plot_landscapes` only reads them, and `landscape_ranges` puts each loss range beside the paper's
(`src/odenets/reporting/published/horesnet_landscapes.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from torch import Tensor, nn

from odenets.fileio import atomic_open
from odenets.formatting import markdown_grid
from odenets.reporting.figures import scheme_label, scheme_rank
from odenets.reporting.published import load_table

PUBLISHED = "horesnet_landscapes"


def filter_normalized_direction(params: Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
    """A random direction shaped like `params`, each filter scaled to its parameter filter's norm."""
    direction = []
    for p in params:
        if p.dim() <= 1:
            direction.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        scale = p.detach().flatten(1).norm(dim=1) / (d.flatten(1).norm(dim=1) + 1e-10)
        direction.append(d * scale.view(-1, *[1] * (p.dim() - 1)))
    return direction


@torch.no_grad()
def loss_surface(model: nn.Module, x: Tensor, y: Tensor, directions: tuple[list[Tensor], list[Tensor]],
                 coords: np.ndarray) -> np.ndarray:
    """Cross-entropy of (x, y) at theta + a d1 + b d2; rows index b, columns a (image layout).

    The parameters are restored afterwards."""
    params = list(model.parameters())
    origin = [p.detach().clone() for p in params]
    model.eval()
    loss = np.empty((len(coords), len(coords)))
    try:
        for i, b in enumerate(coords):
            for j, a in enumerate(coords):
                for p, p0, d1, d2 in zip(params, origin, *directions, strict=True):
                    p.copy_(p0 + float(a) * d1 + float(b) * d2)
                loss[i, j] = F.cross_entropy(model(x), y).item()
    finally:
        for p, p0 in zip(params, origin, strict=True):
            p.copy_(p0)
    return loss


def compute_landscape(scheme: str, depth: int, x: Tensor, y: Tensor, num_classes: int, grid: int = 21,
                      span: float = 1.0, width: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """The landscape of an untrained `horesnet(scheme, depth)` (He init, seeded) on the batch (x, y),
    on a grid x grid lattice of [-span, span]^2."""
    from odenets.models import create_model  # here: the model registry imports torchvision, which plots never need

    torch.manual_seed(seed)
    model = create_model("horesnet", scheme=scheme, depth=depth, width=width, in_channels=x.shape[1],
                         num_classes=num_classes)
    generator = torch.Generator().manual_seed(seed + 1)
    params = list(model.parameters())
    directions = (filter_normalized_direction(params, generator), filter_normalized_direction(params, generator))
    coords = np.linspace(-span, span, grid)
    return {"coords": coords, "loss": loss_surface(model, x, y, directions, coords), "scheme": np.array(scheme),
            "depth": np.array(depth), "width": np.array(width), "batch": np.array(len(y)), "seed": np.array(seed)}


def span_of(landscape: dict) -> float:
    return float(landscape["coords"][-1])


def landscape_path(out_dir: str | Path, dataset: str, scheme: str, depth: int, span: float = 1.0) -> Path:
    """`<dataset>-horesnet-<scheme>-d<depth>.npz`, with `-span<span>` unless the span is Li et al.'s 1."""
    suffix = "" if span == 1 else f"-span{span:g}"
    return Path(out_dir) / f"{dataset}-horesnet-{scheme}-d{depth}{suffix}.npz"


def save_landscape(path: str | Path, arrays: dict[str, np.ndarray], dataset: str) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, dataset=np.array(dataset), **arrays)


def load_landscape(path: str | Path) -> dict:
    """A stored landscape: `coords`, `loss` as arrays, the rest (scheme, depth, dataset, ...) as scalars."""
    with np.load(path) as z:
        return {k: z[k] if z[k].ndim else z[k].item() for k in z.files}


def published_ranges() -> dict[tuple[str, int], tuple[float, float]]:
    """(scheme, depth) -> the (min, max) loss of the paper's Fig. 4 / Fig. 8 caption."""
    return {(r.scheme, r.depth): (r.published.loss_min, r.published.loss_max) for r in load_table(PUBLISHED).rows}


def landscape_ranges(landscapes: Sequence[dict]) -> list[dict]:
    """One row per landscape: our loss range beside the paper's (None where it published none)."""
    paper = published_ranges()
    rows = []
    for ls in landscapes:
        pub = paper.get((ls["scheme"], ls["depth"]), (None, None))
        rows.append({"dataset": ls["dataset"], "depth": ls["depth"], "scheme": ls["scheme"], "width": ls["width"],
                     "batch": ls["batch"], "grid": len(ls["coords"]), "span": span_of(ls),
                     "loss_min": float(ls["loss"].min()),
                     "loss_max": float(ls["loss"].max()), "paper_min": pub[0], "paper_max": pub[1]})
    return rows


def format_ranges(rows: Sequence[dict]) -> str:
    """The ranges as a Markdown table."""
    fmt = lambda v: "—" if v is None else f"{v:.4g}"
    grid = [[r["dataset"], r["depth"], scheme_label(r["scheme"]), r["width"], r["batch"], f"{r['grid']}²",
             f"±{r['span']:g}", f"[{fmt(r['loss_min'])}, {fmt(r['loss_max'])}]",
             f"[{fmt(r['paper_min'])}, {fmt(r['paper_max'])}]"] for r in rows]
    return markdown_grid(grid, ["dataset", "ResNet", "scheme", "width", "batch", "grid", "span", "ours [min, max]",
                                "paper [min, max]"])


def plot_landscapes(landscapes: Sequence[dict]) -> Figure:
    """Each landscape as a log-scaled image with contours (one panel per scheme, own scale: the ranges span
    decades), its range beside the paper's in the title."""
    landscapes = sorted(landscapes, key=lambda ls: scheme_rank(ls["scheme"]))
    paper = published_ranges()
    fig = Figure(figsize=(4.2 * len(landscapes), 3.8), layout="constrained")
    for ax, ls in zip(fig.subplots(1, len(landscapes), squeeze=False)[0], landscapes, strict=True):
        loss, coords = ls["loss"], ls["coords"]
        extent = (coords[0], coords[-1], coords[0], coords[-1])
        image = ax.imshow(loss, extent=extent, origin="lower", norm=LogNorm(), cmap="viridis", interpolation="bilinear")
        ax.contour(coords, coords, loss, levels=np.geomspace(loss.min(), loss.max(), 12)[1:-1], colors="k",
                   linewidths=0.4)
        fig.colorbar(image, ax=ax, label="loss (log scale)")
        title = f"{scheme_label(ls['scheme'])}-{ls['depth']}: [{loss.min():.3g}, {loss.max():.3g}]"
        pub = paper.get((ls["scheme"], ls["depth"]))
        ax.set_title(title + (f"\npaper: [{pub[0]:.4g}, {pub[1]:.4g}]" if pub else ""), fontsize=10)
        ax.set_xlabel("direction 1")
        ax.set_ylabel("direction 2")
        ax.set_aspect("equal")
    ls = landscapes[0]
    paper_figure = {18: "; HO-ResNet Fig. 4", 58: "; HO-ResNet Fig. 8"}.get(ls["depth"], "")
    fig.suptitle(f"Untrained HO-ResNet-{ls['depth']} loss landscapes ({ls['dataset']}, batch {ls['batch']}, "
                 f"width {ls['width']}, span ±{span_of(ls):g}{paper_figure})")
    return fig
