"""The Trainer a config asks for: loggers, checkpoints (best and last, written atomically), history."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig

from odenets.fileio import atomic_open
from odenets.results import History
from odenets.tasks.base import Task

CHECKPOINTS = "checkpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically: a kill during a save leaves the previous one intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_open(path, "wb") as f:
            torch.save(checkpoint, f)


def last_checkpoint(run_dir: Path) -> str | None:
    """`last.ckpt` of an interrupted run in `run_dir`, to resume from."""
    path = Path(run_dir) / CHECKPOINTS / "last.ckpt"
    return str(path) if path.is_file() else None


def build_trainer(cfg: DictConfig, run_dir: Path, task: Task) -> tuple[L.Trainer, History]:
    history = History()
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    callbacks = [
        history,
        ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=task.monitor, mode=task.mode, save_top_k=1,
                        auto_insert_metric_name=False, enable_version_counter=False),
        ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=0, save_last=True,
                        every_n_train_steps=cfg.checkpoint_every_n_steps or None, enable_version_counter=False),
    ]
    loggers = [instantiate(c) for c in (cfg.logger or {}).values()]
    trainer = instantiate(cfg.trainer, default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers or False,
                          plugins=[AtomicCheckpointIO()])
    return trainer, history
