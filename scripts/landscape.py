"""Loss landscapes of untrained HO-ResNets (HO-ResNet Figs. 4 and 8), stored as .npz for scripts/figures.py.

    python scripts/landscape.py --depth 18 --schemes euler,midpoint,rk4 --dataset digits --grid 21 --batch 64
    python scripts/landscape.py --depth 58 --schemes euler,midpoint,rk4,rk8 --dataset cifar10
    python scripts/landscape.py --figures --dataset cifar10          # both of the paper's figures

The batch is the first N training images of `--dataset` (any conf/dataset/*.yaml name, normalised,
no augmentation), the same images for every scheme. One file per scheme:
`<out>/<dataset>-horesnet-<scheme>-d<depth>[-span<s>].npz` (see odenets.reporting.figures.landscape). Prints each loss
range beside the paper's.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from odenets.config import compose
from odenets.data import build_datamodule
from odenets.errors import ConfigError
from odenets.reporting.figures import LANDSCAPE_FIGURES
from odenets.reporting.figures.landscape import (
    compute_landscape,
    format_ranges,
    landscape_path,
    landscape_ranges,
    load_landscape,
    save_landscape,
)


def first_images(dataset: str, n: int, overrides: list[str]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(x, y, num_classes): the first n training images of `dataset`, as the network sees them in evaluation."""
    cfg = compose([f"dataset={dataset}", *overrides])
    datamodule = build_datamodule(cfg.dataset)
    datamodule.setup()
    return (datamodule.transform(datamodule.train.x[:n], train=False), datamodule.train.y[:n],
            int(cfg.dataset.num_classes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, help="weight layers (18: Fig. 4, 58: Fig. 8)")
    parser.add_argument("--schemes", default="euler,midpoint,rk4", help="comma-separated scheme names")
    parser.add_argument("--figures", action="store_true", help="the paper's two figures (depths and schemes of "
                                                               "odenets.reporting.figures.LANDSCAPE_FIGURES)")
    parser.add_argument("--dataset", default="digits", help="a conf/dataset name (cifar10 for the paper)")
    parser.add_argument("--grid", type=int, default=21, help="points per direction on [-span, span]")
    parser.add_argument("--span", type=float, default=1.0, help="half-width of the grid (1 in Li et al. 2018)")
    parser.add_argument("--batch", type=int, default=64, help="number of images the loss is averaged over")
    parser.add_argument("--width", type=int, default=64, help="channels (64 in the paper)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialisation and the directions")
    parser.add_argument("--out", default="outputs/landscapes", help="directory of the .npz files")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. paths.data_dir=/data")
    args = parser.parse_args(argv)
    if args.depth is None and not args.figures:
        parser.error("give --depth (and --schemes) or --figures")
    jobs = [(d, schemes) for d, (_, schemes) in LANDSCAPE_FIGURES.items()] if args.figures else \
        [(args.depth, args.schemes)]
    try:
        x, y, num_classes = first_images(args.dataset, args.batch, args.overrides)
        paths = []
        for depth, scheme in ((d, s) for d, schemes in jobs for s in schemes.split(",")):
            start = time.perf_counter()
            arrays = compute_landscape(scheme, depth, x, y, num_classes, grid=args.grid, span=args.span,
                                       width=args.width, seed=args.seed)
            paths.append(landscape_path(args.out, args.dataset, scheme, depth, args.span))
            save_landscape(paths[-1], arrays, args.dataset)
            print(f"{paths[-1]} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_ranges(landscape_ranges([load_landscape(p) for p in paths])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
