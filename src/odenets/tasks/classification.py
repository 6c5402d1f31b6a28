"""Image and sequence classification: cross-entropy, accuracy per epoch on train and test."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from odenets.tasks.base import Task


class ClassificationTask(Task):
    """Logs `train/loss`, `train/acc`, `test/loss`, `test/acc` once per epoch.

    The papers report test accuracy after every epoch (and the best over epochs); so do we: the
    validation loop runs on the test split, and result.json keeps both final and best values.
    """

    monitor = "test/acc"
    mode = "max"

    def __init__(self, net: nn.Module, num_classes: int, **kwargs) -> None:
        super().__init__(net, **kwargs)
        self.metrics = nn.ModuleDict()
        for stage in ("train", "test"):
            self.metrics[f"{stage}_loss"] = MeanMetric()
            self.metrics[f"{stage}_acc"] = MulticlassAccuracy(num_classes, average="micro")
        for metric in self.metrics.values():
            metric.persistent(True)  # in checkpoints: a run resumed mid-epoch keeps the epoch's tallies

    def step(self, batch, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        loss_metric, acc_metric = self.metrics[f"{stage}_loss"], self.metrics[f"{stage}_acc"]
        loss_metric.update(loss.detach(), weight=len(y))
        acc_metric.update(logits.detach(), y)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=stage == "test")
        return loss
