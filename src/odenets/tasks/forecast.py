"""Next-value forecasting with free-running generation (the HeunNet sine-wave task, Fig. 7-8).

Logged once per epoch:
- `train/loss`, `test/loss`: one-step mean squared error of the next value (true inputs), on the
  training and test windows (named like the classification losses, so curves draw alike);
- `test/gen_mse`, `test/gen_acc`: the free run from the seed window, scored against the true
  continuation: its MSE, and the fraction of generated points within `tolerance` of the truth;
- with a validation split (`dataset.val_fraction`: the latest training windows), `val/loss`: the same
  one-step error there. It selects the best checkpoint; the free run, scored on the test part, stays a test
  metric (without a validation split, `test/gen_mse` selects).

Each epoch's free run is also saved, for Fig. 8, as `<run dir>/generated/epoch_NNN.npz` with
arrays `times` (seed then generated part), `seed`, `target` and `generated`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from odenets.fileio import atomic_open
from odenets.tasks.base import Task


@torch.no_grad()
def generate(net: nn.Module, seed_window: Tensor, steps: int) -> Tensor:
    """Free run: predict the next value from the last `len(seed_window)` values, append it, repeat."""
    window = seed_window.reshape(1, -1)
    generated = []
    for _ in range(steps):
        nxt = net(window).reshape(1, 1)
        generated.append(nxt)
        window = torch.cat([window[:, 1:], nxt], dim=1)
    return torch.cat(generated, dim=1)[0]


def free_run_scores(generated: Tensor, target: Tensor, tolerance: float) -> dict[str, Tensor]:
    """MSE of the free run, and its accuracy: the fraction of points with |generated - target| <= tolerance."""
    error = generated - target
    return {"test/gen_mse": error.square().mean(), "test/gen_acc": (error.abs() <= tolerance).float().mean()}


class ForecastTask(Task):
    """MSE on the next value; after every validation epoch, a free run from `seed_window` scored on `target`."""

    monitor = "test/gen_mse"
    val_monitor = "val/loss"
    mode = "min"

    def __init__(self, net: nn.Module, seed_window: Tensor, target: Tensor, times: Tensor, tolerance: float,
                 **kwargs) -> None:
        super().__init__(net, **kwargs)
        self.register_buffer("seed_window", seed_window, persistent=False)
        self.register_buffer("target", target, persistent=False)
        self.register_buffer("times", times, persistent=False)
        self.tolerance = tolerance
        for stage in self.stages:
            self.add_metric(stage, "loss", MeanMetric())

    def higher_is_better(self) -> dict[str, bool]:
        return {**super().higher_is_better(), "test/gen_mse": False, "test/gen_acc": True}

    def step(self, batch, stage: str) -> Tensor:
        x, y = batch
        loss = F.mse_loss(self(x).reshape(y.shape), y)
        self.count_evaluations(stage)
        self.metrics[f"{stage}_loss"].update(loss.detach(), weight=len(y))
        return loss

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            return
        generated = generate(self.net, self.seed_window, len(self.target))
        self.log_dict(free_run_scores(generated, self.target, self.tolerance), sync_dist=True)  # equal on all ranks
        if self.trainer.is_global_zero:
            self.save_generated(generated)

    def save_generated(self, generated: Tensor) -> None:
        path = Path(self.trainer.default_root_dir) / "generated" / f"epoch_{self.current_epoch + 1:03d}.npz"
        arrays = {"times": self.times, "seed": self.seed_window, "target": self.target, "generated": generated}
        with atomic_open(path, "wb") as f:
            np.savez(f, **{k: v.detach().cpu().numpy() for k, v in arrays.items()})
