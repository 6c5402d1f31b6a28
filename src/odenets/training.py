"""Everything a run is built from a config: data module, model, task, and the Trainer with its loggers,
checkpoints (best and last, written atomically) and history."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from odenets.data import build_datamodule
from odenets.data.base import TensorDataModule
from odenets.fileio import atomic_open
from odenets.models import build_model
from odenets.results import History
from odenets.tasks import TASKS
from odenets.tasks.base import Task
from odenets.validation import validate

CHECKPOINTS = "checkpoints"

# Lightning's advertising and deprecation chatter says nothing about the run.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "litlogger" not in r.getMessage())
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically: a kill during a save leaves the previous one intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


class ResumeCheckpoint(L.Callback):
    """`last.ckpt` every `every_n_steps` optimiser steps and after every epoch's evaluation, with
    the random number generators' states, so a killed run resumes where it stopped and, in
    deterministic mode, ends exactly as an uninterrupted run would (the data order is restored by
    the stateful `TensorBatches`, metric accumulators by the task)."""

    def __init__(self, path: Path, every_n_steps: int | None) -> None:
        self.path, self.every_n_steps = Path(path), every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["rng_states"] = _collect_rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if "rng_states" in checkpoint:
            _set_rng_states(checkpoint["rng_states"])


def last_checkpoint(run_dir: Path) -> str | None:
    """`last.ckpt` of an interrupted run in `run_dir`, to resume from."""
    path = Path(run_dir) / CHECKPOINTS / "last.ckpt"
    return str(path) if path.is_file() else None


def build(cfg: DictConfig, run_dir: Path) -> tuple[TensorDataModule, Task, L.Trainer, History]:
    """Validate `cfg`, seed, and build what `python train.py` runs: data module, model, task, Trainer.

    Nothing is loaded or trained yet; the benchmark builds its runs the same way.
    """
    validate(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.dataset, seed=cfg.seed)
    net = build_model(cfg.model, cfg.budget.width_scale)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cfg.compile:
        net.compile()  # in place: state_dict keys (and so checkpoints) stay those of the plain model
    task = TASKS[datamodule.task](net, optimizer=instantiate(cfg.optimizer),
                                  scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                                  **datamodule.task_kwargs())
    trainer, history = build_trainer(cfg, run_dir, task)
    return datamodule, task, trainer, history


def build_trainer(cfg: DictConfig, run_dir: Path, task: Task) -> tuple[L.Trainer, History]:
    history = History()
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    callbacks = [
        history,
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=task.monitor, mode=task.mode, save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False),
        ResumeCheckpoint(ckpt_dir / "last.ckpt", cfg.checkpoint_every_n_steps),
    ]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    trainer = instantiate(cfg.trainer, default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers or False,
                          plugins=[AtomicCheckpointIO()])
    return trainer, history
