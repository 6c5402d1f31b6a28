"""Shared fixtures: reference data, composed configs, in-process training runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The checked reference data and real datasets beside the repository (`../shared`); ODENETS_SHARED
# points elsewhere. Tests that need them skip, saying so, where none is found.
SHARED = next((p for p in (Path(os.environ.get("ODENETS_SHARED", REPO.parent / "shared")), Path("/work/shared"))
               if p.is_dir()), REPO.parent / "shared")
REFERENCE = SHARED / "reference"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def butcher_reference() -> dict:
    path = REFERENCE / "butcher_tableaus.json"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    return {s["id"]: s for s in json.loads(path.read_text())["schemes"]}


@pytest.fixture(scope="session")
def fig1_reference() -> dict:
    path = REFERENCE / "heun_fig1_values.json"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    return json.loads(path.read_text())


def quick_overrides(tmp_path: Path) -> list[str]:
    """Overrides that keep an in-process or subprocess training run to a few seconds."""
    return [f"paths.output_dir={tmp_path}/outputs", "trainer.enable_progress_bar=false", "epochs=1",
            "dataset.subset=64", "dataset.test_subset=32", "dataset.batch_size=32", "model.width=8"]


@pytest.fixture
def run_inprocess(tmp_path):
    """Train a composed config through `odenets.train.train` (the real code path minus the CLI)."""
    from odenets.config import compose
    from odenets.train import train

    def run(overrides: list[str], name: str = "run") -> tuple[dict, Path]:
        run_dir = tmp_path / name
        cfg = compose(quick_overrides(tmp_path) + ["logger=none", *overrides], output_dir=run_dir)
        return train(cfg), run_dir

    return run


def cli(*args: str, tmp_path: Path, timeout: int = 300, module: bool = False, quick: bool = True,
        popen: bool = False):
    """Run `python train.py` (or `-m odenets.train`) in a subprocess with `args` after the quick overrides."""
    entry = ["-m", "odenets.train"] if module else ["train.py"]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    command = [sys.executable, *entry, *flags, *(quick_overrides(tmp_path) if quick else []), *overrides]
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def results_under(tmp_path: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "outputs" / "runs").glob("*/result.json")}
