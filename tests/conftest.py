"""Shared fixtures: reference data, in-process training runs. Shared helpers live in tests/helpers."""

from __future__ import annotations

import json
import os

import pytest

from helpers import REFERENCE, quick_overrides

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


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype (comparisons to 1e-12)."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def run_inprocess(tmp_path):
    """Train a composed config through `odenets.run.lifecycle.train` (the real code path minus the CLI)."""
    from odenets.config import compose
    from odenets.run.lifecycle import train

    def run(overrides: list[str], name: str = "run") -> tuple[dict, object]:
        run_dir = tmp_path / name
        other_model = any(o.startswith("model=") and o != "model=horesnet" for o in overrides)
        quick = [o for o in quick_overrides(tmp_path) if not (other_model and o.startswith("model.width="))]
        cfg = compose(quick + ["logger=none", *overrides], output_dir=run_dir)
        return train(cfg), run_dir

    return run
