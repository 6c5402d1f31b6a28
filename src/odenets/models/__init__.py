"""Model registry (timm-style): one family per module, constructors registered by name."""

from __future__ import annotations

from collections.abc import Callable

from omegaconf import OmegaConf
from torch import nn

from odenets.errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model constructor under its function name."""
    MODELS[fn.__name__] = fn
    return fn


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def build_model(model_cfg) -> nn.Module:
    """The network a `conf/model/*.yaml` node describes: `name` plus the constructor's arguments."""
    kwargs = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    return create_model(kwargs.pop("name"), **kwargs)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


from odenets.models import horesnet  # noqa: E402,F401  (registers its models)
from odenets.models import rkcnn  # noqa: E402,F401
from odenets.models import recurrent  # noqa: E402,F401  (registers its models)
from odenets.models import preact_resnet  # noqa: E402,F401
from odenets.models import rknet  # noqa: E402,F401
from odenets.models import odenet  # noqa: E402,F401
from odenets.models import densenet  # noqa: E402,F401
from odenets.models import cliquenet  # noqa: E402,F401
