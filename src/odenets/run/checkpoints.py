"""A run's checkpoints: written atomically, stamped with the experiment they belong to, checked before a
resume, and `last.ckpt` owned by one callback.

* `checkpoints/last.ckpt` (what a rerun resumes from) is written every `checkpoint_every_n_steps` optimiser
  steps, after every epoch (its evaluation included), and at the step a stop signal arrives
  (`odenets.run.preemption`). The version it replaces is kept as `last.prev.ckpt`. `best.ckpt` is Lightning's
  `ModelCheckpoint` on the task's monitored metric.
* Every checkpoint carries the run's fingerprint and overrides (`STAMP`), so a directory that holds another
  experiment is refused instead of resumed.
* Before a resume each candidate (`last`, `last.prev`, `best`) is checked without loading its tensors: the
  zip records' checksums, then the pickled header (memory-mapped). A torn or unreadable file is named in one
  warning with what the run fell back to; with none usable the run starts from scratch.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from odenets.errors import ConfigError, one_line
from odenets.fileio import atomic_open
from odenets.run import preemption

CHECKPOINTS = "checkpoints"
LAST, PREVIOUS, BEST = "last.ckpt", "last.prev.ckpt", "best.ckpt"
STAMP = "odenets"  # checkpoint["odenets"] = {"fingerprint": ..., "overrides": [...]}
log = logging.getLogger("odenets")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically: a kill during a save leaves the previous one intact, and a new
    `last.ckpt` keeps the one it replaces as `last.prev.ckpt`."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        with atomic_open(path, "wb", what="checkpoint",
                         previous=path.with_name(PREVIOUS) if path.name == LAST else None) as f:
            torch.save(checkpoint, f)


class LastCheckpoint(Checkpoint):
    """Owns `last.ckpt`: every `every_n_steps` optimiser steps, at every epoch's end (after its evaluation),
    and, when a stop signal was received, at the next step, after which it raises `Preempted`. Stamps every
    checkpoint the run writes with its identity."""

    def __init__(self, dirpath: str | Path, stamp: dict, every_n_steps: int | None = None) -> None:
        self.path, self.stamp, self.every = Path(dirpath) / LAST, stamp, every_n_steps or None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[STAMP] = self.stamp

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        preemption.install()  # Lightning put its own SIGTERM handler in place while fit started
        signum = self._stop_signal(trainer)
        if signum:
            raise preemption.Preempted(signum, trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        signum = self._stop_signal(trainer)
        if signum or (self.every and trainer.global_step % self.every == 0):
            trainer.save_checkpoint(self.path, weights_only=False)
        if signum:
            raise preemption.Preempted(signum, trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        signum = self._stop_signal(trainer)
        if signum:
            raise preemption.Preempted(signum, trainer.global_step)

    @staticmethod
    def _stop_signal(trainer: L.Trainer) -> int:
        """The stop signal any rank received (all ranks stop at the same step), or 0."""
        signum = preemption.requested() or 0
        if trainer.world_size > 1:
            signum = int(trainer.strategy.reduce(torch.tensor(signum, device=trainer.strategy.root_device),
                                                 reduce_op="max"))
        return signum


def resume_point(run_dir: Path, stamp: dict) -> tuple[str | None, int | None]:
    """(checkpoint, step) to resume this experiment from: `last.ckpt`, else `last.prev.ckpt`, else `best.ckpt`,
    the first that is intact; (None, None) to start from scratch. A checkpoint of another experiment is a
    `ConfigError` naming both."""
    unusable = []
    for name in (LAST, PREVIOUS, BEST):
        path = Path(run_dir) / CHECKPOINTS / name
        if not path.is_file():
            continue
        try:
            step, owner = inspect(path)
        except Exception as e:  # torn, truncated, not a checkpoint: say so and fall back
            unusable.append(f"{path} is unreadable ({one_line(e)})")
            continue
        if owner and owner.get("fingerprint") != stamp["fingerprint"]:
            raise foreign(run_dir, owner, stamp)
        if unusable:
            log.warning("%s; resuming from %s at step %d instead", "; ".join(unusable), path.name, step)
        return str(path), step
    if unusable:
        log.warning("%s; no usable checkpoint left: starting from scratch", "; ".join(unusable))
    return None, None


def inspect(path: Path) -> tuple[int, dict | None]:
    """(optimiser step, stamp) of a checkpoint, checked without reading its tensors into memory."""
    with zipfile.ZipFile(path) as archive:
        damaged = archive.testzip()
    if damaged:
        raise ValueError(f"record {damaged} fails its checksum")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)  # our own file
    missing = sorted({"global_step", "state_dict", "loops"} - set(checkpoint))
    if missing:
        raise ValueError(f"not a training checkpoint: no {', '.join(missing)}")
    return int(checkpoint["global_step"]), checkpoint.get(STAMP)


def foreign(run_dir: Path, other: dict, stamp: dict) -> ConfigError:
    """The one line refusing to mix two experiments in one directory: both fingerprints, and the overrides that
    differ."""
    there, here = other.get("overrides") or [], stamp.get("overrides") or []
    only = lambda a, b: " ".join(o for o in a if o not in b) or "none"
    return ConfigError(f"{run_dir} holds another experiment: fingerprint {other['fingerprint'][:8]} there, "
                       f"{stamp['fingerprint'][:8]} here (overrides only there: {only(there, here)}; only here: "
                       f"{only(here, there)}); choose another hydra.run.dir, or force=true to start over there")


def discard(run_dir: Path) -> None:
    """Remove a run directory's checkpoints (force=true starts over)."""
    for name in (LAST, PREVIOUS, BEST):
        (Path(run_dir) / CHECKPOINTS / name).unlink(missing_ok=True)
