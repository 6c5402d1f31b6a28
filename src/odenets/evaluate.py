"""Evaluate a trained run: `odenets-eval RUN [which=best|last] [scheme=NAME] [substeps=N] [dataset.KEY=VALUE ...]`.

RUN is a run directory (`outputs/runs/<run_name>`) or one of its checkpoints. The network is rebuilt from
the run's own `result.json` config, the checkpoint's weights are loaded (`which=best`, the default, or
`last`) and the test split is evaluated, or another split of the same dataset (`dataset.split=inter_patient`,
`dataset.test_subset=1000`, `paths.data_dir=...`). `scheme=` and `substeps=` integrate the trained weights
with another tableau and/or n sub-steps per step (`odenets.run.integration`: shared-weight models only).
The result is added to `eval.json` beside `result.json` (one entry per distinct evaluation: its
metrics, the overrides, the checkpoint, provenance). Bad paths or overrides, and a checkpoint that is not
plain data (`odenets.run.checkpoints.load_checkpoint`: nothing in it runs): one line, exit status 2; an eval.json
that cannot be written: one line, status 4 (`odenets.cli`).
`load_trained` is the one place a trained run is rebuilt (evaluation, diagnostics).

    odenets-eval outputs/runs/mnist-ode_rnn-euler-s0-1a2b3c4d scheme=rk4 substeps=4
    python -m odenets.evaluate outputs/runs/... which=last
    make eval RUN=outputs/runs/... ARGS="scheme=heun substeps=2"
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from odenets.cli import run_and_options, run_command
from odenets.config import register_resolvers
from odenets.core.schemes import scheme_from_config
from odenets.data import build_datamodule, dataset_keys
from odenets.data.base import TensorDataModule
from odenets.errors import ConfigError
from odenets.fileio import atomic_open
from odenets.models import build_model
from odenets.provenance import provenance
from odenets.results import EVAL_FILE, RESULT_FILE, now, read_evaluations, read_result
from odenets.run.checkpoints import CHECKPOINTS, CheckpointError, load_checkpoint
from odenets.run.integration import reintegrate
from odenets.run.training import quiet_lightning
from odenets.tasks import TASKS
from odenets.tasks.base import Task

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
OPTIONS = ("which", "scheme", "substeps")
USAGE = "usage: odenets-eval RUN_DIR_OR_CKPT [which=best|last] [scheme=NAME] [substeps=N] [dataset.KEY=VALUE ...]"


def _locate(run: str | Path, which: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) of a run directory or a checkpoint path."""
    path = Path(run)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} not found")
        return path.parent.parent, path
    if which not in ("best", "last"):
        raise ConfigError(f"which={which!r}; allowed: best, last")
    checkpoint = path / CHECKPOINTS / f"{which}.ckpt"
    if not (path / RESULT_FILE).is_file():
        raise ConfigError(f"{path} is not a run directory (no result.json); give outputs/runs/<run> or a .ckpt")
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint} not found (the run has no {which} checkpoint); try which=best or which=last")
    return path, checkpoint


@dataclass(frozen=True)
class Trained:
    """A trained run rebuilt: the network and task of its config with the checkpoint's weights loaded, and the
    data module (with any dataset overrides applied to `cfg`)."""

    run_dir: Path
    checkpoint: Path
    cfg: DictConfig
    datamodule: TensorDataModule
    net: nn.Module
    task: Task


def load_trained(run: str | Path, which: str = "best", overrides: Sequence[str] = ()) -> Trained:
    """Rebuild a run (directory or checkpoint) from its `result.json` config and load its `which` checkpoint's
    weights, read as data only; `overrides` change keys of its dataset or `paths.data_dir`. Bad input, or a
    checkpoint that is unreadable or not plain data: `ConfigError`."""
    run_dir, checkpoint = _locate(run, which)
    state = load_checkpoint(checkpoint).get("state_dict")  # first: a refused file costs no data loading
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint} holds no model weights (no state_dict)")
    result = read_result(run_dir)
    if not isinstance(result, dict) or not isinstance(result.get("config"), dict):
        raise ConfigError(f"{run_dir / RESULT_FILE} is missing or unreadable: the run's config comes from it")
    cfg = OmegaConf.create(result["config"])
    for override in overrides:
        key, _, value = override.partition("=")
        field = key.split(".", 1)[1] if key.startswith("dataset.") else None
        if not (key == "paths.data_dir" or (field in dataset_keys(cfg.dataset.name) and field != "name")):
            raise ConfigError(f"{override}: evaluation can change the keys of the run's dataset (another split or "
                              f"subset: {', '.join(k for k in dataset_keys(cfg.dataset.name) if k != 'name')}) "
                              f"and paths.data_dir")
        OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None, merge=True)
    datamodule = build_datamodule(cfg.dataset, seed=cfg.seed)
    net = build_model(cfg.model, OmegaConf.select(cfg, "budget.width_scale", default=1.0))
    task = TASKS[datamodule.task](net, **datamodule.task_kwargs())
    missing, unexpected = task.load_state_dict(state, strict=False)
    if any(k.startswith("net.") for k in (*missing, *unexpected)):
        raise ConfigError(f"{checkpoint} does not fit the run's model (missing {missing[:2]}, unexpected "
                          f"{unexpected[:2]})")
    return Trained(run_dir, checkpoint, cfg, datamodule, net, task)


def evaluate(run: str | Path, which: str = "best", scheme: str | None = None, substeps: int = 1,
             overrides: list[str] = ()) -> dict:
    """Evaluate and record one evaluation; returns its `eval.json` entry."""
    trained = load_trained(run, which, overrides)
    if scheme is not None or substeps != 1:
        reintegrate(trained.net, scheme_from_config(scheme) if scheme else None, substeps,
                    name=f"model={trained.cfg.model.name}")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
        metrics = trainer.test(trained.task, datamodule=trained.datamodule, verbose=False)[0]
    trained_scheme = OmegaConf.select(trained.cfg, "scheme.name")
    entry = {"checkpoint": trained.checkpoint.name, "scheme": scheme or trained_scheme, "substeps": substeps,
             "trained_scheme": trained_scheme, "overrides": list(overrides), "evaluated": now(),
             "metrics": {k: float(v) for k, v in metrics.items()}, **provenance("cpu")}
    record(trained.run_dir, entry)
    return entry


def record(run_dir: Path, entry: dict) -> None:
    """Add `entry` to the run's eval.json, replacing an earlier evaluation of the same kind (a test evaluation has
    none; `odenets-diagnose`'s are `diagnostics`), checkpoint and settings."""
    same = lambda e: all(e.get(k) == entry.get(k) for k in ("kind", "checkpoint", "scheme", "substeps", "overrides"))
    entries = [e for e in read_evaluations(run_dir) if not same(e)] + [entry]
    with atomic_open(Path(run_dir) / EVAL_FILE) as f:
        f.write(json.dumps({"evaluations": entries}, indent=1) + "\n")


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    run, options, overrides = run_and_options(argv, USAGE, OPTIONS)
    if "substeps" in options:
        if not options["substeps"].isdigit() or int(options["substeps"]) < 1:
            raise ConfigError(f"substeps={options['substeps']!r}; allowed: an integer >= 1")
        options["substeps"] = int(options["substeps"])
    return run, options, overrides


def _evaluate_and_say(argv: list[str]) -> int:
    run, options, overrides = parse(argv)
    entry = evaluate(run, overrides=overrides, **options)
    shown = {k: round(v, 6) for k, v in entry["metrics"].items()}
    print(f"{entry['checkpoint']}, scheme {entry['scheme']} x{entry['substeps']}: {shown}")
    return 0


def main(argv: list[str] | None = None) -> int:
    register_resolvers()
    quiet_lightning(info=False)
    return run_command(lambda: _evaluate_and_say(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
