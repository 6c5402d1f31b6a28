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
* A checkpoint is data, never code: every read (evaluation, the check above, Lightning's resume through
  `AtomicCheckpointIO`) is `load_checkpoint`, torch's `weights_only` unpickler, which builds tensors and plain
  containers only. Lightning's own entries need nothing more (loops, callbacks, optimizer state; MultiStepLR's
  `milestones` is a `collections.Counter`, which torch allows); `ALLOWED_GLOBALS` adds numpy's array rebuild for
  the numpy RNG state checkpoints held before they became tensors. Anything else (a pickled object that would
  call code) is refused, naming the file and what it asks for; nothing in it runs.
"""

from __future__ import annotations

import logging
import pickle
import struct
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from odenets.errors import ConfigError, one_line
from odenets.fileio import atomic_open
from odenets.run import preemption

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
CHECKPOINTS = "checkpoints"
LAST, PREVIOUS, BEST = "last.ckpt", "last.prev.ckpt", "best.ckpt"
STAMP = "odenets"  # checkpoint["odenets"] = {"fingerprint": ..., "overrides": [...]}
log = logging.getLogger("odenets")

_reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuild, in numpy._core (numpy 2) or numpy.core (1.x)
# The globals a checkpoint may name beyond torch's own allow-list (tensors, containers, Counter, OrderedDict):
# numpy's uint32 array, the RandomState callback's numpy state in checkpoints written before it became a tensor
# (under either numpy's module name, so a numpy 1.x checkpoint loads under numpy 2). Rebuilding an array runs no
# code: its values, like everything else in the file, come through the weights_only unpickler.
ALLOWED_GLOBALS = (*((_reconstruct, f"numpy.{core}.multiarray._reconstruct") for core in ("_core", "core")),
                   np.ndarray, np.dtype, type(np.dtype(np.uint32)))


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used (torn, truncated, not a checkpoint): the message names the file and why."""


class UnsafeCheckpoint(CheckpointError):
    """A file that is not plain data (it would call code to load): refused, nothing in it run."""

    def __init__(self, path: Path, error: pickle.UnpicklingError) -> None:
        try:
            names = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - _allowed_names())
        except (pickle.UnpicklingError, ValueError, EOFError, RuntimeError, OSError):  # too broken to list
            names = []
        reason = _first_sentence(str(error).partition("WeightsUnpickler error: ")[2]) or "refused by torch's unpickler"
        what = f"it calls {', '.join(names)}" if names else reason
        super().__init__(f"{path} is refused: it is not plain data ({what}); a checkpoint holds tensors and plain "
                         f"containers only, and nothing in this file was run")


def _allowed_names() -> set[str]:
    return {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}


def _first_sentence(text: str) -> str:
    return text.strip().splitlines()[0].split(". ")[0].rstrip(".") if text.strip() else ""


def load_checkpoint(path: str | Path, *, mmap: bool = False, map_location="cpu") -> dict:
    """The one way a checkpoint is read. Its zip records' checksums are checked first (a torn or damaged file
    is a `CheckpointError`), then it is unpickled by torch's `weights_only` unpickler with `ALLOWED_GLOBALS`, so a
    file that would run code is refused (`UnsafeCheckpoint`) before anything in it runs. `mmap` maps the tensors
    instead of reading them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} not found")
    try:  # a zip archive: what Lightning writes (torch's older format takes another, looser path)
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, ValueError, NotImplementedError, OSError) as e:  # torn, a damaged directory
        raise CheckpointError(f"{path} is unreadable ({one_line(e)})") from e
    if damaged:
        raise CheckpointError(f"{path} is unreadable (record {damaged} fails its checksum)")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(path, e) from None
    except (RuntimeError, ValueError, LookupError, EOFError, TypeError, AttributeError, struct.error) as e:
        # intact records torch still cannot read (what its reader and unpickler raise on a malformed header)
        raise CheckpointError(f"{path} is unreadable ({_first_sentence(str(e)) or type(e).__name__})") from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not a checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically: a kill during a save leaves the previous one intact, and a new
    `last.ckpt` keeps the one it replaces as `last.prev.ckpt`."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        with atomic_open(path, "wb", what="checkpoint",
                         previous=path.with_name(PREVIOUS) if path.name == LAST else None) as f:
            torch.save(checkpoint, f)

    def load_checkpoint(self, path, map_location=lambda storage, loc: storage, weights_only=None) -> dict:
        """Lightning's resume reads through `load_checkpoint` too: data only, whatever it asks for."""
        return load_checkpoint(path, map_location=map_location)


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
        except CheckpointError as e:  # torn, truncated, not a checkpoint, not plain data: say so and fall back
            unusable.append(str(e))
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
    """(optimiser step, stamp) of a checkpoint, checked without reading its tensors into memory: its zip
    records' checksums, then its header (memory-mapped); a `CheckpointError` says what is wrong."""
    checkpoint = load_checkpoint(path, mmap=True)
    missing = sorted({"global_step", "state_dict", "loops"} - set(checkpoint))
    if missing:
        raise CheckpointError(f"{path} is unreadable (not a training checkpoint: no {', '.join(missing)})")
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
