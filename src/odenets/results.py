"""Run records: per-epoch history (a callback) and `result.json`, written atomically.

`result.json` is what every table and figure is built from. Keys: `config` (resolved),
`fingerprint`, `run_name`, `status` (completed | diverged | failed | running), `params`,
`metrics` ({"final": ..., "best": ...}), `epochs`, `wall_time_s`, `history` (one entry per
epoch: metrics, learning rate, cumulative training seconds), plus `diverged_at_step`, `error`,
`versions` and timestamps.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch

from odenets.fileio import atomic_open

RESULT_FILE = "result.json"


def read_result(run_dir: Path) -> dict | None:
    """The run's result.json, or None if absent or unreadable."""
    try:
        return json.loads((Path(run_dir) / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_result(run_dir: Path, record: dict[str, Any]) -> None:
    with atomic_open(Path(run_dir) / RESULT_FILE) as f:
        f.write(json.dumps(record, indent=1, default=_jsonable) + "\n")


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else x.tolist()
    return str(x)


def best_of(history: list[dict]) -> dict[str, float]:
    """Best value of every metric over epochs: max for accuracies, min for losses and errors."""
    best: dict[str, float] = {}
    for entry in history:
        for key, value in entry.items():
            if "/" not in key or key.startswith(("time/", "lr")) or value is None:
                continue
            higher = key.split("/")[-1].endswith("acc")
            if key not in best or (value > best[key] if higher else value < best[key]):
                best[key] = value
    return best


class History(L.Callback):
    """Per-epoch metrics with cumulative training time; saved in checkpoints so resumes keep it."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []
        self.train_seconds = 0.0
        self._epoch_start: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._pause()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.training:
            self._epoch_start = time.perf_counter()

    def _pause(self) -> None:
        if self._epoch_start is not None:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._pause()
        entry = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        entry.update({"epoch": trainer.current_epoch + 1, "step": trainer.global_step,
                      "time/train_s": round(self.train_seconds, 3),
                      "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None})
        self.epochs.append(entry)

    def state_dict(self) -> dict:
        return {"epochs": self.epochs, "train_seconds": self.train_seconds}

    def load_state_dict(self, state: dict) -> None:
        self.epochs, self.train_seconds = state["epochs"], state["train_seconds"]


def environment() -> dict[str, str]:
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
            "host": platform.node()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
