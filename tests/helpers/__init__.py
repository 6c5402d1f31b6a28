"""What tests share besides fixtures: paths, the reference data's location, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The checked reference data and real datasets: `$ODENETS_SHARED`, else `../shared` beside the repository.
# Tests that need them skip, saying so, where none is found.
SHARED = Path(os.environ.get("ODENETS_SHARED") or REPO.parent / "shared")
REFERENCE = SHARED / "reference"


def quick_overrides(tmp_path: Path) -> list[str]:
    """Overrides that keep an in-process or subprocess training run to a few seconds."""
    return [f"paths.output_dir={tmp_path}/outputs", "trainer.enable_progress_bar=false", "epochs=1",
            "dataset.subset=64", "dataset.test_subset=32", "dataset.batch_size=32", "model.width=8"]


def cli(*args: str, tmp_path: Path, timeout: int = 300, module: bool = False, quick: bool = True,
        popen: bool = False, entry: list[str] | None = None):
    """Run `python train.py` (or `-m odenets.train`, or `entry`) in a subprocess with `args` after the quick
    overrides."""
    entry = entry or (["-m", "odenets.train"] if module else ["train.py"])
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    command = [sys.executable, *entry, *flags, *(quick_overrides(tmp_path) if quick else []), *overrides]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def results_under(tmp_path: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").glob("*/result.json")}


def run_if(min_gpus: int = 0):
    """lightning-hydra-template's RunIf: skip, saying why, unless the machine has `min_gpus` CUDA devices."""
    import pytest
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(count < min_gpus, reason=f"needs {min_gpus} CUDA GPU(s); this machine has {count}")
