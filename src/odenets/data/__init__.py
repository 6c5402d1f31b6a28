"""Data module registry: `conf/dataset/<file>.yaml` names one of these by its `name` key."""

from __future__ import annotations

from odenets.config import to_kwargs
from odenets.data.base import TensorDataModule
from odenets.data.ecg import MITBIHCSVDataModule, MITBIHDataModule
from odenets.data.sine import SineDataModule
from odenets.data.vision import VisionDataModule
from odenets.errors import ConfigError

DATASETS: dict[str, type[TensorDataModule]] = {
    name: VisionDataModule for name in ("digits", "mnist", "cifar10", "cifar100", "svhn")
}
DATASETS["mitbih"] = MITBIHDataModule
DATASETS["mitbih_csv"] = MITBIHCSVDataModule
DATASETS["sine"] = SineDataModule


def build_datamodule(dataset_cfg, seed: int = 0) -> TensorDataModule:
    """The data module a `conf/dataset/*.yaml` node describes."""
    kwargs = to_kwargs(dataset_cfg)
    name = kwargs["name"]
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](seed=seed, **kwargs)
