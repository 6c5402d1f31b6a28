"""Everything a run is built from a config: data module, model, task, and the Trainer with its loggers,
checkpoints (`odenets.run.checkpoints`) and per-epoch history."""

from __future__ import annotations

import logging
import random
import socket
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from odenets.config import fingerprint
from odenets.data import build_datamodule
from odenets.data.base import TensorDataModule
from odenets.models import build_model
from odenets.run.checkpoints import BEST, CHECKPOINTS, AtomicCheckpointIO, LastCheckpoint
from odenets.seeding import derive_seed
from odenets.tasks import TASKS
from odenets.tasks.base import Task

log = logging.getLogger("odenets")

def quiet_lightning(info: bool = True) -> None:
    """Silence Lightning's advertising and deprecation chatter, which says nothing about the run (and, with
    `info=False`, its GPU/TPU availability lines too)."""
    chatter = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    chatter.addFilter(lambda r: "litlogger" not in r.getMessage())
    if not info:
        chatter.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging interval")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # ours: resumed


quiet_lightning()


class RandomState(L.Callback):
    """Keeps the random number generators' states in checkpoints, so a resumed run continues their
    streams (dropout, and anything else drawn from the global generators) exactly where they were.
    Data order and augmentation need no state: they are functions of (seed, epoch, batch). The states are
    tensors and plain numbers, so a checkpoint loads as data (`odenets.run.checkpoints.load_checkpoint`)."""

    def state_dict(self) -> dict:
        _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()  # ("MT19937", uint32[624], ...)
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                           "cached_gaussian": cached_gaussian}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["torch"])
        numpy_state = state["numpy"]
        if isinstance(numpy_state, dict):  # else numpy's own tuple, in checkpoints written before it was a tensor
            numpy_state = ("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                           numpy_state["has_gauss"], numpy_state["cached_gaussian"])
        np.random.set_state(numpy_state)
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class History(L.Callback):
    """Metrics after every evaluation (once per epoch, or every `trainer.val_check_interval` steps; `val/*`
    beside `test/*` with a validation split), with the epoch (fractional between epoch ends), optimiser step,
    learning rate and cumulative training time; saved in checkpoints so resumes keep it."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.train_seconds = 0.0
        self._epoch_start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        batches = trainer.num_training_batches
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        epoch = trainer.current_epoch + (min(done, batches) / batches if batches and done < batches else 1)
        entry = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        entry.update({"epoch": round(epoch, 4) if epoch % 1 else int(epoch), "step": trainer.global_step,
                      "time/train_s": round(self.train_seconds, 3),
                      "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None})
        self.epochs.append(entry)
        self._epoch_start = time.perf_counter()

    def _pause(self) -> None:
        if self._epoch_start is not None:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._pause()

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.epochs, self.train_seconds = state["epochs"], state["train_seconds"]


def initial_network(cfg: DictConfig) -> tuple[TensorDataModule, torch.nn.Module]:
    """The data module and the untrained network, seeded as a run starts (what `odenets-diagnose` rebuilds for
    a run's initial weights)."""
    L.seed_everything(derive_seed(cfg.seed, "init") % 2**32, workers=True, verbose=False)
    datamodule = build_datamodule(cfg.dataset, seed=cfg.seed)
    return datamodule, build_model(cfg.model, cfg.budget.width_scale)


def run_stamp(cfg: DictConfig, overrides=()) -> dict:
    """What a run's checkpoints and result carry to say whose they are: its fingerprint and the command line's
    overrides (`odenets.run.checkpoints.resume_point`, `foreign`)."""
    return {"fingerprint": fingerprint(cfg), "overrides": list(overrides)}


def build(cfg: DictConfig, run_dir: Path, stamp: dict | None = None
          ) -> tuple[TensorDataModule, Task, L.Trainer, History]:
    """Seed and build what `python train.py` runs from a validated `cfg` (`odenets.run.validation.validate`):
    data module, model, task, Trainer, whose checkpoints carry `stamp` (`run_stamp`; by default that of `cfg`
    with no overrides). Nothing is loaded or trained yet; the benchmark builds its runs the same way."""
    datamodule, net = initial_network(cfg)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cfg.compile:
        net.compile()  # in place: state_dict keys (and so checkpoints) stay those of the plain model
    task = TASKS[datamodule.task](net, optimizer=instantiate(cfg.optimizer),
                                  scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
                                  validation=datamodule.val_fraction is not None, **datamodule.task_kwargs())
    trainer, history = build_trainer(cfg, run_dir, task, stamp or run_stamp(cfg))
    return datamodule, task, trainer, history


def build_trainer(cfg: DictConfig, run_dir: Path, task: Task, stamp: dict) -> tuple[L.Trainer, History]:
    history = History()
    ckpt_dir = Path(run_dir) / CHECKPOINTS
    callbacks = [
        history,
        RandomState(),
        # best.ckpt: the task's monitor, `val/<metric>` with a validation split (ties: the earliest evaluation)
        ModelCheckpoint(dirpath=ckpt_dir, filename=Path(BEST).stem, monitor=task.monitor, mode=task.mode,
                        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False),
        LastCheckpoint(ckpt_dir, stamp, every_n_steps=cfg.checkpoint_every_n_steps),
    ]
    plugins = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():  # pre-emption and requeue are ours (odenets.run.preemption), not Lightning's
        plugins.append(SLURMEnvironment(auto_requeue=False))
    loggers = [instantiate(_reachable(name, c)) for name, c in (cfg.logger or {}).items()]
    trainer = instantiate(cfg.trainer, default_root_dir=str(run_dir), callbacks=callbacks, logger=loggers or False,
                          plugins=plugins)
    return trainer, history


def _reachable(name: str, logger_cfg: DictConfig) -> DictConfig:
    """A W&B logger asked to sync live falls back to offline, with one warning, when its server cannot be
    reached within a few seconds (rather than hanging in wandb's retries)."""
    if name != "wandb" or logger_cfg.get("offline", True):
        return logger_cfg
    try:
        socket.create_connection(("api.wandb.ai", 443), timeout=5).close()
        return logger_cfg
    except OSError as e:
        log.warning("wandb: api.wandb.ai unreachable (%s); logging offline instead (`wandb sync` later)", e)
        logger_cfg = logger_cfg.copy()
        logger_cfg.offline = True
        return logger_cfg
