"""Image and sequence classification: cross-entropy, accuracy and macro-F1 per epoch on train and test (and on
the validation split when there is one).

Where the data names its classes (the ECG beats: N, S, V, F, Q), the test split's per-class recall
is logged too, and `result.json` keeps the last epoch's test confusion matrix: with 83% N beats,
accuracy alone hides a model that never leaves the majority class.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from odenets.tasks.base import Task


class ClassificationTask(Task):
    """Logs `train/loss`, `train/acc`, `train/f1_macro` and the same for `test/`, once per epoch; with
    `class_names`, also `test/recall_<class>` and the confusion matrix (rows: true class).

    The papers report test accuracy after every epoch (and the best over epochs); so do we: the
    validation loop runs on the test split, and result.json keeps both final and best values. With a
    validation split (`validation=True`) it runs on that split too (`val/loss`, `val/acc`, `val/f1_macro`),
    and `val/acc` selects the best checkpoint.
    """

    monitor = "test/acc"
    val_monitor = "val/acc"
    mode = "max"

    def __init__(self, net: nn.Module, num_classes: int, class_names: list[str] | None = None, **kwargs) -> None:
        super().__init__(net, **kwargs)
        self.class_names = list(class_names) if class_names else None
        for stage in self.stages:
            self.add_metric(stage, "loss", MeanMetric())
            self.add_metric(stage, "acc", MulticlassAccuracy(num_classes, average="micro"))
            self.add_metric(stage, "f1_macro", MulticlassF1Score(num_classes, average="macro"))
        if self.class_names:
            self.recall = MulticlassAccuracy(num_classes, average=None)  # per class: recall
            self.confusion = MulticlassConfusionMatrix(num_classes)
            for m in (self.recall, self.confusion):
                m.persistent(True)
            self.last_confusion: list[list[int]] | None = None

    def higher_is_better(self) -> dict[str, bool]:
        names = {f"test/recall_{c}": True for c in self.class_names or ()}
        return {**super().higher_is_better(), **names}

    def step(self, batch, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        self.count_evaluations(stage)
        loss = F.cross_entropy(logits, y)
        self.metrics[f"{stage}_loss"].update(loss.detach(), weight=len(y))
        for name in ("acc", "f1_macro"):
            self.metrics[f"{stage}_{name}"].update(logits.detach(), y)
        if self.class_names and stage == "test":
            self.recall.update(logits.detach(), y)
            self.confusion.update(logits.detach(), y)
        return loss

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.class_names:
            return
        if self.recall.update_called and not self.trainer.sanity_checking:
            for name, value in zip(self.class_names, self.recall.compute(), strict=True):
                self.log(f"test/recall_{name}", value)
            self.last_confusion = self.confusion.compute().tolist()
        self.recall.reset()
        self.confusion.reset()

    def summary(self) -> dict:
        if not self.class_names:
            return {}
        return {"classes": self.class_names, "confusion_matrix": self.last_confusion}
