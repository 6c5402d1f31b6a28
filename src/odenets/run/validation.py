"""Checks on every user-facing config key, run before any work starts.

Each rule names a key, what is allowed and a predicate; the first violation becomes one
`ConfigError` line naming the key, the value and what is allowed. Structural checks that need
the code (scheme tableaus, depth for a scheme) are done by the code that owns them, also before
any data is touched: `scheme_from_config` and the model constructors raise `ConfigError` too.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from odenets.config import OPTIONAL_KEYS, readers, unused_keys
from odenets.core.schemes import scheme_from_config
from odenets.errors import ConfigError

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
_ABSENT = object()
log = logging.getLogger("odenets")
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "transformer-engine")


def _int(lo: int, hi: float = float("inf")) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _number(check: Callable[[float], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and check(v)


def _optional(rule: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or rule(v)


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


_bool = lambda v: isinstance(v, bool)

# key -> (predicate, what is allowed)
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": (_int(0), "an integer >= 0"),
    "epochs": (_int(1), "an integer >= 1"),
    "depth": (_int(1), "a positive integer (weight layers)"),
    "alpha": (_number(lambda v: 0 <= v <= 1), "a number in [0, 1] (HeunNet Sec. 5)"),
    "precision": (lambda v: str(v) in PRECISIONS, "one of " + ", ".join(PRECISIONS)),
    "compile": (_bool, "true or false"),
    "channels_last": (_bool, "true or false"),
    "checkpoint": (_bool, "true or false"),
    "activation_checkpointing": (_bool, "true or false"),
    "force": (_bool, "true or false"),
    "wait_for_lock": (_bool, "true or false"),
    "checkpoint_every_n_steps": (_optional(_int(0)), "an integer >= 0 (0 or null: only at epoch ends)"),
    "dataset.batch_size": (_int(1), "an integer >= 1"),
    "dataset.eval_batch_size": (_int(1), "an integer >= 1"),
    "dataset.subset": (_optional(_int(1)), "null or an integer >= 1"),
    "dataset.test_subset": (_optional(_int(1)), "null or an integer >= 1"),
    "dataset.val_fraction": (_optional(_number(lambda v: 0 < v < 1)), "null or a number in (0, 1)"),
    "dataset.num_workers": (_int(0), "an integer >= 0"),
    "dataset.crop_padding": (_int(0), "an integer >= 0 (pixels)"),
    "dataset.flip": (_bool, "true or false"),
    "dataset.autoaugment": (_bool, "true or false"),
    "dataset.pipeline": (_one_of("tensor", "torchvision"), "tensor or torchvision"),
    "model.width": (_int(1), "an integer >= 1"),
    "model.stage_weights": (_one_of("separate", "shared"), "separate or shared"),
    "optimizer.lr": (_number(lambda v: v > 0), "a number > 0"),
    "optimizer.momentum": (_number(lambda v: 0 <= v < 1), "a number in [0, 1)"),
    "optimizer.weight_decay": (_number(lambda v: v >= 0), "a number >= 0"),
    "scheduler.gamma": (_number(lambda v: 0 < v <= 1), "a number in (0, 1]"),
    "trainer.max_epochs": (_int(1), "an integer >= 1"),
    "trainer.accelerator": (_one_of("cpu", "gpu", "cuda", "mps", "auto"), "cpu, gpu, cuda, mps or auto"),
    "trainer.gradient_clip_val": (_optional(_number(lambda v: v > 0)), "null or a number > 0"),
    "trainer.val_check_interval": (_optional(_number(lambda v: v > 0)), "null, a fraction of an epoch or a "
                                                                         "number of steps > 0"),
    "trainer.accumulate_grad_batches": (_int(1), "an integer >= 1"),
    "trainer.log_every_n_steps": (_int(1), "an integer >= 1"),
    "optimizer.nesterov": (_bool, "true or false"),
    "scheduler.milestones": (lambda v: isinstance(v, (list, tuple)) and all(_int(1)(m) for m in v)
                             and list(v) == sorted(v), "an increasing list of epochs >= 1"),
    # recurrent models
    "model.hidden_size": (_int(1), "an integer >= 1"),
    "model.num_layers": (_int(1), "an integer >= 1"),
    "model.chunk": (_int(1), "an integer >= 1 (input steps read as one)"),
    "model.timescale": (_int(2), "an integer >= 2 (steps; chrono initialisation)"),
    "model.trim_padding": (_bool, "true or false"),
    "model.fused": (_bool, "true or false"),
    "model.input_scale": (_number(lambda v: v > 0), "a number > 0"),
    "model.r_on": (_number(lambda v: 0 < v <= 1), "a number in (0, 1]"),
    "model.leak": (_number(lambda v: v >= 0), "a number >= 0"),
    # RKCNN-framework and ODE models
    "model.dropout": (_number(lambda v: 0 <= v < 1), "a number in [0, 1)"),
    "model.tol": (_number(lambda v: v > 0), "a number > 0 (solver tolerance)"),
    "model.steps": (lambda v: _int(1)(v) or (isinstance(v, (list, tuple)) and all(_int(1)(x) for x in v)),
                    "an integer >= 1, or a list of them per period"),
    "model.attention": (_bool, "true or false"),
    "model.multiscale": (_bool, "true or false"),
    "model.norm": (_one_of("batch", "group"), "batch or group"),
    # data
    "dataset.test_fraction": (_number(lambda v: 0 < v < 1), "a number in (0, 1)"),
    "dataset.split_seed": (_int(0), "an integer >= 0"),
    "dataset.split": (_one_of("random", "inter_patient"), "random or inter_patient"),
    "dataset.fs": (_int(1), "an integer >= 1 (Hz)"),
    "dataset.window_s": (_number(lambda v: v > 0), "a number > 0 (seconds)"),
    "dataset.rr_factor": (_number(lambda v: v > 0), "a number > 0"),
    "dataset.beat_length": (_int(1), "an integer >= 1 (samples)"),
    "dataset.cache": (_bool, "true or false"),
    "dataset.extra": (_bool, "true or false"),
    "dataset.dt": (_number(lambda v: v > 0), "a number > 0"),
    "dataset.window": (_int(1), "an integer >= 1 (samples)"),
    "dataset.length_pi": (_number(lambda v: v > 0), "a number > 0"),
    "dataset.train_fraction": (_number(lambda v: 0 < v < 1), "a number in (0, 1)"),
    "dataset.tolerance": (_number(lambda v: v > 0), "a number > 0"),
    "dataset.horizon": (_optional(_int(1)), "null or an integer >= 1"),
}


def _available_devices(accelerator: str) -> int:
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count()
    return os.cpu_count() or 1


def _set_keys(overrides) -> list[str]:
    """Top-level keys the command line set (`scheme=rk4`, `+depth=1`, `scheme.learn_alpha=true`, ...)."""
    keys = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        keys.append(key.split(".", 1)[0].split("/", 1)[0])
    return keys


def not_read(key: str, choices: dict[str, str], unused: set[str]) -> str:
    """Why a set top-level key means nothing here: the run's choices, and the config options that would read
    it (and, where those are themselves options of a key this run does not read, what reads that key)."""
    chain, groups, todo = [], {"model"}, [key]
    while todo:
        options = readers(k := todo.pop(0))
        chain.append(f"{', '.join(options) or 'no config option'} read{'s' * (len(options) == 1)} {k}")
        for group in dict.fromkeys(o.split("=")[0] for o in options):
            groups.add(group)
            if group in unused and group != key and not any(c.endswith(f" {group}") for c in chain):
                todo.append(group)
    shown = ", ".join(f"{g}={choices[g]}" for g in sorted(groups) if choices.get(g))
    return f"this run does not read it ({shown}); {'; '.join(chain)}"


def validate_used(cfg: DictConfig, overrides=(), multirun: bool = False) -> None:
    """A top-level key the run does not read (`scheme`, `depth`, `alpha`, `checkpoint`), set on the command line,
    is bad input: it would change the run's name but not what it computes. In a multirun it is left out of the
    jobs that do not read it (one info line each; not in their fingerprint): the sweep refuses it only when no
    job reads it (`SweepReport`)."""
    unused = unused_keys(cfg)
    for key in _set_keys(overrides):
        if key in unused:
            why = not_read(key, _choices(cfg), unused)
            if not multirun:
                raise ConfigError(f"{key} is set but {why}; remove it")
            log.info("%s is left out of this job: %s", key, why)


def _choices(cfg: DictConfig) -> dict[str, str]:
    """The config-group options this run was composed from (model, scheme, ...)."""
    try:
        return {g: str(o) for g, o in HydraConfig.get().runtime.choices.items() if o is not None}
    except ValueError:  # composed without Hydra
        return {"model": str(cfg.model.get("name"))}


def validate(cfg: DictConfig, overrides=(), multirun: bool = False) -> None:
    """Raise ConfigError for the first key whose value is not allowed, or that is set and not read."""
    from odenets.data import DATASETS
    from odenets.models import MODELS

    for key, (allowed, description) in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if value is not _ABSENT and not allowed(value):
            raise ConfigError(f"{key}={value!r} is not allowed; expected {description}")
    if cfg.dataset.name not in DATASETS:
        raise ConfigError(f"dataset.name={cfg.dataset.name!r} is unknown; "
                          f"valid datasets: {', '.join(sorted(DATASETS))}")
    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name={cfg.model.name!r} is unknown; valid models: {', '.join(sorted(MODELS))}")
    _validate_devices(cfg.trainer)
    validate_used(cfg, overrides, multirun)
    if "scheme" not in unused_keys(cfg):
        scheme_from_config(cfg.scheme)


def _validate_devices(trainer: DictConfig) -> None:
    accelerator, devices = str(trainer.get("accelerator", "cpu")), trainer.get("devices", 1)
    if devices == "auto":
        return
    if not (isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1):
        raise ConfigError(f"trainer.devices={devices!r} is not allowed; expected an integer >= 1 or auto")
    available = _available_devices(accelerator)
    if devices > available:
        what = "CUDA GPUs" if accelerator in ("gpu", "cuda") else "CPU cores"
        raise ConfigError(f"trainer.devices={devices} but this machine has {available} {what}"
                          + ("; use trainer=cpu" if available == 0 else f"; use trainer.devices<={available}"))


def validate_sweep(overrides: list[str]) -> None:
    """A multirun's command line: a top-level key it sets, or that the chosen Optuna search
    (`hparams_search=<name>`, conf/hparams_search/) sweeps, that no job of the sweep reads is bad input (each job
    composed as `train.py` would compose it; an interval counts as its lower end)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    from odenets.config import CONF_DIR, compose_row

    overrides = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]  # where and how jobs run
    for o in overrides:
        if o.startswith("hparams_search="):
            search = OmegaConf.load(CONF_DIR / "hparams_search" / f"{o.split('=', 1)[1]}.yaml")
            params = OmegaConf.select(search, "hydra.sweeper.params", default={}) or {}
            overrides = [*overrides, *(f"{k}={v}" for k, v in params.items() if k not in _set_keys(overrides))]
    set_keys = [k for k in _set_keys(overrides) if k in OPTIONAL_KEYS]
    if not set_keys:
        return
    parsed = OverridesParser.create().parse_overrides(overrides)
    options = [[f"{o.get_key_element()}={o.value().start}"] if isinstance(o.value(), IntervalSweep) else
               [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
               else [o.input_line] for o in parsed]
    read: set[str] = set()
    for job in itertools.product(*options):
        try:
            job_cfg = compose_row(list(job))
        except (HydraException, OmegaConfBaseException, ConfigError):  # the job fails on its own, with its line
            continue
        read |= set(OPTIONAL_KEYS) - unused_keys(job_cfg)
        if read >= set(set_keys):
            return
    key = next(k for k in set_keys if k not in read)
    options = readers(key)
    raise ConfigError(f"{key} is set but no job of this sweep reads it ({', '.join(options) or 'no config option'} "
                      f"read{'s' * (len(options) == 1)} it); remove it")
