"""Fingerprints and comparison keys across config changes (`odenets.config.NEUTRAL`): an option added at its
neutral value changes no experiment, so the committed records keep their fingerprints and their table rows."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from odenets.config import CONF_DIR, NEUTRAL, compose, compose_row, defining_config, fingerprint
from odenets.reporting.index import experiment_key
from odenets.results import REPRODUCED, comparison_key, get, load_runs


def _committed_sample() -> list[dict]:
    """One committed cpu record per experiment and dataset: every kind of run, checked in seconds."""
    chosen: dict[tuple, dict] = {}
    for run in sorted(load_runs(REPRODUCED / "cpu"), key=lambda r: r["run_name"]):
        kind = tuple(o for o in run["overrides"] if o.startswith(("experiment=", "dataset=")))
        chosen.setdefault(kind, run)
    return list(chosen.values())


def _overrides(run: dict) -> list[str]:
    return [o for o in run["overrides"] if not o.startswith(("paths.", "hydra"))]


def test_committed_records_keep_their_fingerprints_and_rows_under_todays_config():
    sample = _committed_sample()
    assert len(sample) >= 6
    for run in sample:
        assert fingerprint(compose_row(_overrides(run))) == run["fingerprint"], run["run_name"]
        assert experiment_key(_overrides(run)) == comparison_key(run["config"], ()), run["run_name"]


@pytest.mark.parametrize("dataset", sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")))
def test_every_dataset_defaults_its_new_options_to_their_neutral_value(dataset):
    cfg = compose(["experiment=heunnet/sine"] if dataset == "sine" else [f"dataset={dataset}"])  # a model it fits
    for key, neutral in NEUTRAL.items():
        assert OmegaConf.select(cfg, key, default="absent") == neutral, key
        assert get(defining_config(cfg), key, default="absent") == "absent"  # left out of the experiment


def test_only_the_neutral_value_is_left_out():
    plain = compose([])
    assert fingerprint(compose(["dataset.val_fraction=null"])) == fingerprint(plain)
    held_out = compose(["dataset.val_fraction=0.1"])
    assert fingerprint(held_out) != fingerprint(plain) and defining_config(held_out)["dataset"]["val_fraction"] == 0.1
    stored = OmegaConf.to_container(plain, resolve=True)
    del stored["dataset"]["val_fraction"]  # a record written before the option existed
    assert comparison_key(stored) == comparison_key(OmegaConf.to_container(plain, resolve=True))
    assert comparison_key(stored) != comparison_key(OmegaConf.to_container(held_out, resolve=True))
