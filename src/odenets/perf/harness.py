"""The benchmark's harness: sizes, device and clock, interleaved timing, and the plain training step it times.

Absolute times on a shared machine drift, so candidates run in one process, round-robin
(`interleave`: a round times every candidate once, the first one rotating), and a figure is a median
over rounds; a ratio is the median of the per-round ratios, so drift slower than a round cancels.
Models and optimisers are built from the config `python train.py <overrides>` would run with
(`config.compose`), on random data of CIFAR's format.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from odenets.config import compose
from odenets.data.base import Split
from odenets.errors import ConfigError
from odenets.models import build_model
from odenets.provenance import cpu_model


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run: `QUICK` to develop the benchmark, `FULL` for the table."""

    width: int  # HO-ResNet channels
    image: int  # side of the square random images the models train on
    batch: int  # training batch (overhead, schemes, scaling, utilisation)
    rounds: int  # interleaved repeats
    overhead_steps: int  # paired Lightning / plain steps after the warm-up
    input_images: int  # random CIFAR-sized uint8 training set of the input section
    input_batches: int  # batches each input pipeline delivers per round
    matmul: int  # side of the square matrices of the peak-FLOP/s reference
    warmup: int = 2  # untimed calls of every candidate first
    depths: tuple[int, ...] = (30, 58)
    scaling_depths: tuple[int, ...] = (10, 26, 42, 58, 74, 86)
    input_batch: int = 128


QUICK = Settings(width=16, image=16, batch=8, rounds=3, overhead_steps=8, input_images=10_000, input_batches=8,
                 matmul=1024, warmup=1)
FULL = Settings(width=64, image=32, batch=32, rounds=5, overhead_steps=20, input_images=50_000, input_batches=40,
                matmul=2048)


# --------------------------------------------------------------------------- device and clock
@dataclass(frozen=True)
class Machine:
    """Where to measure, and with which clock.

    `wall` (time.perf_counter) is what a user waits for. `cpu` (time.process_time) counts only the
    CPU time of this process, so time taken by other processes on a shared machine drops out; use
    it with one intra-op thread (`--threads 1`: several threads also count their spin-waits). The
    input section always uses the wall clock: DataLoader workers are other processes.
    """

    device: str = "cpu"
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "cpu"):
            raise ConfigError(f"clock={self.clock!r}; allowed: wall, cpu")

    def now(self) -> float:
        """Seconds on this machine's clock, once the device has finished its queued work."""
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() if self.clock == "wall" else time.process_time()

    def environment(self, rounds: int) -> dict:
        return {"device": self.device, "device_name": self.device_name(), "clock": self.clock,
                "torch": torch.__version__, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                "rounds": rounds}

    def device_name(self) -> str:
        if torch.device(self.device).type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return cpu_model()


# --------------------------------------------------------------------------- timing
@dataclass
class Timings:
    """Seconds per call of each candidate, one entry per round."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of this round's time of `name` over that of `baseline`."""
        return statistics.median(a / b for a, b in zip(self.seconds[name], self.seconds[baseline], strict=True))


def interleave(candidates: dict[str, Callable[[], object]], rounds: int, number: int = 1, warmup: int = 1,
               machine: Machine = Machine(), rotate: bool = True) -> Timings:
    """Time every candidate (`number` calls in a row) once per round, the first one rotating unless not `rotate`.

    Hand-rolled rather than `torch.utils.benchmark.Timer`, whose `timeit` runs two warm-up calls
    per measurement: three times the cost for multi-second training steps.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names, timings = list(candidates), Timings({name: [] for name in candidates})
    for r in range(rounds):
        first = r % len(names) if rotate else 0
        for name in names[first:] + names[:first]:
            start = machine.now()
            for _ in range(number):
                candidates[name]()
            timings.seconds[name].append((machine.now() - start) / number)
    return timings


# --------------------------------------------------------------------------- a plain training step
class TrainStep:
    """One plain PyTorch training step on a fixed batch in memory: zero_grad, forward, cross-entropy, backward, step."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
        self.net, self.optimizer, self.x, self.y = net, optimizer, x, y

    def loss(self) -> Tensor:
        return F.cross_entropy(self.net(self.x), self.y)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()


def train_step(cfg: DictConfig, s: Settings, device: str, net: nn.Module | None = None) -> TrainStep:
    """The step of `cfg`'s model (or `net`) and optimiser on a random batch of `s.batch` images."""
    torch.manual_seed(cfg.seed)
    net = (net or build_model(cfg.model, cfg.budget.width_scale)).to(device).train()
    x = torch.randn(s.batch, int(cfg.dataset.in_channels), s.image, s.image, device=device)
    y = torch.randint(0, int(cfg.dataset.num_classes), (s.batch,), device=device)
    return TrainStep(net, instantiate(cfg.optimizer)(params=net.parameters()), x, y)


def bench_config(overrides: list[str], s: Settings, device: str, output_dir: str | Path | None = None) -> DictConfig:
    """`config.compose` of HO-ResNet on cifar10 at the benchmark's width and batch, on `device`'s trainer."""
    trainer = "gpu" if torch.device(device).type == "cuda" else "cpu"
    return compose(["dataset=cifar10", f"trainer={trainer}", f"model.width={s.width}",
                    f"dataset.batch_size={s.batch}", *overrides], output_dir=output_dir)


def random_split(n: int, image: int, channels: int = 3, classes: int = 10, seed: int = 0) -> Split:
    """`n` random uint8 images with labels, the format the vision data modules keep in memory."""
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, channels, image, image), dtype=torch.uint8, generator=g),
                 torch.randint(0, classes, (n,), generator=g))
