"""Tiny end-to-end runs of the recurrent experiments."""

from __future__ import annotations

import subprocess
from pathlib import Path

from helpers import cli

TINY = ["epochs=1", "dataset.subset=64", "dataset.test_subset=32", "dataset.batch_size=32", "model.hidden_size=8",
        "trainer.enable_progress_bar=false", "logger=csv"]


def train_cli(*args: str, tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python train.py <args>` with tiny budgets, runs under tmp_path/outputs."""
    return cli(f"paths.output_dir={tmp_path}/outputs", *TINY, *args, tmp_path=tmp_path, timeout=timeout, quick=False)
