"""The LightningModule base: optimiser and schedule from the config, divergence detection.

Subclasses implement `step(batch, stage)` (returning the loss), update their torchmetrics in
`self.metrics` (keys `<stage>_<name>`, e.g. `train_acc`, for each of `self.stages`), and declare the metric
that selects the best checkpoint (`monitor`, `mode`), and the one that does with a validation split
(`val_monitor`). Stages: `train` and `test`, and with a validation split (`validation=True`,
`dataset.val_fraction`) `val` too: the validation loop's dataloader 0 is then the validation split and 1 the
test split (`odenets.data.base`), logged under plain `val/<name>` and `test/<name>`. Metrics are updated
every step but computed and logged once per epoch, as `<stage>/<name>`, after the epoch's evaluation:
logging a metric every step costs Lightning about a millisecond each. They are kept in checkpoints, so a
run resumed mid-epoch keeps the epoch's tallies. Which way is better for each logged metric comes from the
metric itself (torchmetrics' `higher_is_better`; losses and means: lower), so `result.json` picks the best
epoch without rules by name. Image batches take the net's memory format: channels_last when
`odenets.run.training.build` converted the net for `channels_last=true`.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric

from odenets.core.blocks import RKBlock
from odenets.core.order_conditions import order_of


class Task(L.LightningModule):
    monitor = "test/loss"  # selects best.ckpt; with a validation split, `val_monitor` does
    val_monitor = "val/loss"
    mode = "min"

    def __init__(self, net: nn.Module, optimizer: Callable | None = None, scheduler: Callable | None = None,
                 validation: bool = False) -> None:
        super().__init__()
        self.eval_stages = ("val", "test") if validation else ("test",)  # the validation loop's dataloaders
        self.stages = ("train", *self.eval_stages)
        if validation:
            self.monitor = self.val_monitor
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.diverged_at: int | None = None  # global step of the first non-finite loss
        self.channels_last = is_channels_last(net)
        self.metrics = nn.ModuleDict()
        # ODE functions that count their evaluations (ODE-Net, RK-Net): logged per forward pass as <stage>/nfe
        self._counted = [m for m in net.modules() if hasattr(m, "nfe")]
        # blocks that learn tableau coefficients (scheme.learn): their values and order, logged every epoch
        self._learning = [m for m in net.modules() if isinstance(m, RKBlock) and len(m.learned)]
        if self._counted:
            for stage in self.stages:
                self.add_metric(stage, "nfe", MeanMetric())

    def add_metric(self, stage: str, name: str, metric: Metric) -> Metric:
        metric.persistent(True)
        self.metrics[f"{stage}_{name}"] = metric
        return metric

    def higher_is_better(self) -> dict[str, bool]:
        """Direction of every metric this task logs, by logged key (`<stage>/<name>`)."""
        return {key.replace("_", "/", 1): bool(metric.higher_is_better) for key, metric in self.metrics.items()}

    def summary(self) -> dict:
        """What `result.json`'s `metrics` holds besides per-epoch scalars (e.g. a confusion matrix)."""
        return {}

    def on_validation_epoch_end(self) -> None:
        """Log every metric of the epoch (training and evaluation), then start the next epoch's tallies."""
        for key, metric in self.metrics.items():
            if metric.update_called and not self.trainer.sanity_checking:
                self.log(key.replace("_", "/", 1), metric.compute(), prog_bar=key == "test_acc")
            metric.reset()
        if self._learning and not self.trainer.sanity_checking:
            self.log_dict(learned_coefficients(self._learning))

    def on_test_epoch_end(self) -> None:
        """`trainer.test` (odenets.evaluate) logs what an epoch's evaluation logs."""
        self.on_validation_epoch_end()

    def forward(self, x: Tensor) -> Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        for m in self._counted:
            m.nfe = 0
        return self.net(x)

    def count_evaluations(self, stage: str) -> None:
        """After a forward pass: its number of ODE-function evaluations into `<stage>/nfe`."""
        if self._counted:
            self.metrics[f"{stage}_nfe"].update(sum(m.nfe for m in self._counted))

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

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.step(batch, self.eval_stages[dataloader_idx])

    def test_step(self, batch, batch_idx: int) -> None:
        self.step(batch, "test")

    def configure_optimizers(self):
        optimizer = (self.optimizer_factory or torch.optim.SGD)(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer)}}


def learned_coefficients(blocks: list[RKBlock]) -> dict[str, float]:
    """`scheme/<name>` for every learned tableau coefficient (`scheme/<i>.<name>` with several blocks), and
    `scheme/order`: the lowest order of accuracy the blocks' current tableaus satisfy."""
    out, orders = {}, []
    for i, block in enumerate(blocks):
        values = {name: float(p) for name, p in block.learned.items()}
        for name, value in values.items():
            out[f"scheme/{name}" if len(blocks) == 1 else f"scheme/{i}.{name}"] = value
        _, A, b = block.scheme.tableau.coefficients(**values)
        orders.append(order_of(A, b))
    out["scheme/order"] = float(min(orders))
    return out


def is_channels_last(net: nn.Module) -> bool:
    """Whether `net` was converted with `.to(memory_format=torch.channels_last)`: its 4-d weights say so."""
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in net.parameters())
