"""Evaluate a trained run: `odenets-eval RUN [which=best|last] [scheme=NAME] [substeps=N] [dataset.KEY=VALUE ...]`.

RUN is a run directory (`outputs/runs/<run_name>`) or one of its checkpoints. The network is rebuilt from
the run's own `result.json` config, the checkpoint's weights are loaded (`which=best`, the default, or
`last`) and the test split is evaluated, or another split of the same dataset (`dataset.split=inter_patient`,
`dataset.test_subset=1000`, `paths.data_dir=...`). `scheme=` and `substeps=` integrate the trained weights
with another tableau and/or n sub-steps per step (`odenets.run.integration`: shared-weight models only).
The result is added to `eval.json` beside `result.json` (one entry per distinct evaluation: its
metrics, the overrides, the checkpoint, provenance). Bad paths or overrides: one line, exit status 2.

    odenets-eval outputs/runs/mnist-ode_rnn-euler-s0-1a2b3c4d scheme=rk4 substeps=4
    python -m odenets.evaluate outputs/runs/... which=last
    make eval RUN=outputs/runs/... ARGS="scheme=heun substeps=2"
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
import yaml
from omegaconf import OmegaConf

from odenets.config import register_resolvers
from odenets.core.schemes import scheme_from_config
from odenets.data import build_datamodule, dataset_keys
from odenets.errors import ConfigError, exit_bad_input
from odenets.fileio import atomic_open
from odenets.models import build_model
from odenets.provenance import provenance
from odenets.results import EVAL_FILE, now, read_evaluations, read_result
from odenets.run.integration import reintegrate
from odenets.run.training import quiet_lightning
from odenets.tasks import TASKS

OPTIONS = ("which", "scheme", "substeps")


def _locate(run: str | Path, which: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) of a run directory or a checkpoint path."""
    path = Path(run)
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise ConfigError(f"checkpoint {path} not found")
        return path.parent.parent, path
    if which not in ("best", "last"):
        raise ConfigError(f"which={which!r}; allowed: best, last")
    checkpoint = path / "checkpoints" / f"{which}.ckpt"
    if not (path / "result.json").is_file():
        raise ConfigError(f"{path} is not a run directory (no result.json); give outputs/runs/<run> or a .ckpt")
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint} not found (the run has no {which} checkpoint); try which=best or which=last")
    return path, checkpoint


def evaluate(run: str | Path, which: str = "best", scheme: str | None = None, substeps: int = 1,
             overrides: list[str] = ()) -> dict:
    """Evaluate and record one evaluation; returns its `eval.json` entry."""
    run_dir, checkpoint = _locate(run, which)
    cfg = OmegaConf.create(read_result(run_dir)["config"])
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
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = task.load_state_dict(state, strict=False)
    if any(k.startswith("net.") for k in (*missing, *unexpected)):
        raise ConfigError(f"{checkpoint} does not fit the run's model (missing {missing[:2]}, unexpected "
                          f"{unexpected[:2]})")
    if scheme is not None or substeps != 1:
        reintegrate(net, scheme_from_config(scheme) if scheme else None, substeps, name=f"model={cfg.model.name}")
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
        metrics = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    trained = OmegaConf.select(cfg, "scheme.name")
    entry = {"checkpoint": checkpoint.name, "scheme": scheme or trained, "substeps": substeps,
             "trained_scheme": trained, "overrides": list(overrides), "evaluated": now(),
             "metrics": {k: float(v) for k, v in metrics.items()}, **provenance("cpu")}
    record(run_dir, entry)
    return entry


def record(run_dir: Path, entry: dict) -> None:
    """Add `entry` to the run's eval.json, replacing an earlier evaluation of the same checkpoint and settings."""
    same = lambda e: all(e.get(k) == entry[k] for k in ("checkpoint", "scheme", "substeps", "overrides"))
    entries = [e for e in read_evaluations(run_dir) if not same(e)] + [entry]
    with atomic_open(Path(run_dir) / EVAL_FILE) as f:
        f.write(json.dumps({"evaluations": entries}, indent=1) + "\n")


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    if not argv or "=" in argv[0]:
        raise ConfigError("usage: odenets-eval RUN_DIR_OR_CKPT [which=best|last] [scheme=NAME] [substeps=N] "
                          "[dataset.KEY=VALUE ...]")
    options, overrides = {}, []
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(f"{arg!r}: arguments after the run are key=value")
        if key in OPTIONS:
            options[key] = value
        else:
            overrides.append(arg)
    if "substeps" in options:
        if not options["substeps"].isdigit() or int(options["substeps"]) < 1:
            raise ConfigError(f"substeps={options['substeps']!r}; allowed: an integer >= 1")
        options["substeps"] = int(options["substeps"])
    return argv[0], options, overrides


def main(argv: list[str] | None = None) -> int:
    register_resolvers()
    quiet_lightning(info=False)
    try:
        run, options, overrides = parse(sys.argv[1:] if argv is None else argv)
        entry = evaluate(run, overrides=overrides, **options)
    except ConfigError as e:
        exit_bad_input(e)
    shown = {k: round(v, 6) for k, v in entry["metrics"].items()}
    print(f"{entry['checkpoint']}, scheme {entry['scheme']} x{entry['substeps']}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
