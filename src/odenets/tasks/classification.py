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
        for stage in ("train", "test"):
            self.add_metric(stage, "loss", MeanMetric())
            self.add_metric(stage, "acc", MulticlassAccuracy(num_classes, average="micro"))

    def step(self, batch, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.metrics[f"{stage}_loss"].update(loss.detach(), weight=len(y))
        self.metrics[f"{stage}_acc"].update(logits.detach(), y)
        return loss
