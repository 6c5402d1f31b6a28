"""Checks on the top-level config keys, run before any work starts; the model's and the dataset's keys are their
families' (each declares its ranges beside its code, `odenets.allowed`), the scheme's `scheme_from_config`'s, which
parses it once when the model is built (`odenets.models.build_model`, before any data is read).

`validate` raises one `ConfigError` line for the first value not allowed (naming the key, the value and what is
allowed), also for structural checks the owners make before any data is touched (tableaus, depth for a scheme).
`set_but_unread` *returns* the keys the command line set that the run does not read: its caller decides whether
that is an error (a single run) or a note (a multirun's job). `validate_sweep` checks a sweep's command line.
"""

from __future__ import annotations

import itertools
import os

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from odenets.allowed import BOOL, Allowed, integer, number, one_of, optional, violation
from odenets.config import OPTIONAL_KEYS, readers, unused_keys
from odenets.errors import ConfigError

BOOKKEEPING = True  # records or checks runs, computes none of their numbers (odenets.reporting.staleness)
_ABSENT = object()


PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "transformer-engine")
_positive = number(lambda v: v > 0, "a number > 0")

# the top-level keys and the groups no family owns (optimizer, scheduler, trainer): key -> what is allowed. The
# model's and the dataset's keys are their families' (`odenets.models.check_model`, `odenets.data.check_dataset`).
RULES: dict[str, Allowed] = {
    "seed": integer(0),
    "epochs": integer(1),
    "depth": integer(1, text="a positive integer (weight layers)"),
    "alpha": number(lambda v: 0 <= v <= 1, "a number in [0, 1] (HeunNet Sec. 5)"),
    "precision": Allowed(lambda v: str(v) in PRECISIONS, "one of " + ", ".join(PRECISIONS)),
    "compile": BOOL,
    "channels_last": BOOL,
    "checkpoint": BOOL,
    "activation_checkpointing": BOOL,
    "force": BOOL,
    "wait_for_lock": BOOL,
    "checkpoint_every_n_steps": optional(integer(0), "an integer >= 0 (0 or null: only at epoch ends)"),
    "optimizer.lr": _positive,
    "optimizer.momentum": number(lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "optimizer.weight_decay": number(lambda v: v >= 0, "a number >= 0"),
    "optimizer.nesterov": BOOL,
    "scheduler.gamma": number(lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "scheduler.milestones": Allowed(lambda v: isinstance(v, (list, tuple)) and all(integer(1)(m) for m in v)
                                    and list(v) == sorted(v), "an increasing list of epochs >= 1"),
    "trainer.max_epochs": integer(1),
    "trainer.accelerator": one_of("cpu", "gpu", "cuda", "mps", "auto"),
    "trainer.gradient_clip_val": optional(_positive),
    "trainer.val_check_interval": optional(_positive, "null, a fraction of an epoch or a number of steps > 0"),
    "trainer.accumulate_grad_batches": integer(1),
    "trainer.log_every_n_steps": integer(1),
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


def set_but_unread(cfg: DictConfig, overrides=()) -> dict[str, str]:
    """The top-level keys the command line set (`scheme`, `depth`, `alpha`, `checkpoint`) that the run does not
    read, each with why: such a key would change the run's name but not what it computes. The caller decides:
    a single run refuses the first (bad input); a multirun's job leaves them out (one info line each; not in its
    fingerprint), and the sweep refuses a key only when no job reads it (`validate_sweep`)."""
    unused = unused_keys(cfg)
    return {key: not_read(key, _choices(cfg), unused) for key in dict.fromkeys(_set_keys(overrides)) if key in unused}


def _choices(cfg: DictConfig) -> dict[str, str]:
    """The config-group options this run was composed from (model, scheme, ...)."""
    try:
        return {g: str(o) for g, o in HydraConfig.get().runtime.choices.items() if o is not None}
    except ValueError:  # composed without Hydra
        return {"model": str(cfg.model.get("name"))}


def validate(cfg: DictConfig, overrides=()) -> dict[str, str]:
    """Raise ConfigError for the first key whose value is not allowed: the top-level keys here (`RULES`), the
    dataset's and the model's by their families (the scheme is checked as it is parsed, by `build_model`).
    Return the keys of `overrides` the run does not read, with why (`set_but_unread`): the caller decides."""
    from odenets.data import check_dataset
    from odenets.models import check_model

    for key, allowed in RULES.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if value is not _ABSENT and (why := violation(key, value, allowed)):
            raise ConfigError(why)
    check_dataset(cfg.dataset)
    check_model(cfg.model)
    _validate_devices(cfg.trainer)
    return set_but_unread(cfg, overrides)


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
