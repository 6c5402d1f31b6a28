"""Data module registry: `conf/dataset/<file>.yaml` names one of these by its `name` key."""

from __future__ import annotations

import inspect

from odenets.allowed import Allowed, check
from odenets.config import to_kwargs
from odenets.data.base import TensorDataModule
from odenets.data.ecg import MITBIHCSVDataModule, MITBIHDataModule
from odenets.data.sine import SineDataModule
from odenets.data.vision import VisionDataModule
from odenets.errors import ConfigError

DATASETS: dict[str, type[TensorDataModule]] = {
    name: VisionDataModule for name in ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
}
DATASETS["mitbih"] = MITBIHDataModule
DATASETS["mitbih_csv"] = MITBIHCSVDataModule
DATASETS["sine"] = SineDataModule


# Keys of a dataset node that the models read (through interpolations), not the data module.
MODEL_KEYS = {"num_classes", "in_channels", "image_size"}


def dataset_keys(name: str) -> list[str]:
    """The keys a dataset node may hold: its data module's arguments (up the class chain) and `MODEL_KEYS`."""
    keys = []
    for cls in DATASETS[name].__mro__:
        if "__init__" in vars(cls) and cls is not object:
            keys += [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs", "options")]
    return sorted(set(keys) | MODEL_KEYS)


def allowed_keys(name: str) -> dict[str, Allowed]:
    """What each key of dataset `name` allows: the `ALLOWED` its data module class and its bases declare."""
    allowed: dict[str, Allowed] = {}
    for cls in reversed(DATASETS[name].__mro__):
        allowed.update(vars(cls).get("ALLOWED", {}))
    return allowed


def check_dataset(dataset_cfg) -> dict:
    """One ConfigError line for an unknown dataset, a key its data module does not read or a value out of its
    range, before any data is touched; the node's values, resolved."""
    kwargs = to_kwargs(dataset_cfg)
    name = kwargs.get("name")
    if name not in DATASETS:
        raise ConfigError(f"dataset.name={name!r} is unknown; valid datasets: {', '.join(sorted(DATASETS))}")
    unknown = sorted(set(kwargs) - set(dataset_keys(name)) - {"seed"})
    if unknown:
        raise ConfigError(f"dataset.{unknown[0]} is not read by dataset {name!r}; "
                          f"its keys: {', '.join(dataset_keys(name))}")
    check(kwargs, allowed_keys(name), prefix="dataset.")
    return kwargs


def build_datamodule(dataset_cfg, seed: int = 0) -> TensorDataModule:
    """The data module a `conf/dataset/*.yaml` node describes (checked by `check_dataset`)."""
    kwargs = check_dataset(dataset_cfg)
    return DATASETS[kwargs["name"]](seed=seed, **kwargs)
