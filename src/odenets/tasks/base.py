"""The LightningModule base: optimiser and schedule from the config, divergence detection.

Subclasses implement `step(batch, stage)` (returning the loss) and declare the metric that
selects the best checkpoint (`monitor`, `mode`).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn


class Task(L.LightningModule):
    monitor = "test/loss"
    mode = "min"

    def __init__(self, net: nn.Module, optimizer: Callable | None = None, scheduler: Callable | None = None) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.diverged_at: int | None = None  # global step of the first non-finite loss

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def step(self, batch, stage: str) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        loss = self.step(batch, "train")
        if self._non_finite(loss):  # a NaN/inf loss ends the run as `diverged`, on every rank at once
            self.diverged_at = self.global_step
            self.trainer.should_stop = True
            return None
        return loss

    def _non_finite(self, loss: Tensor) -> bool:
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        return bad

    def validation_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    test_step = validation_step

    def configure_optimizers(self):
        optimizer = (self.optimizer_factory or torch.optim.SGD)(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}
