"""Model registry (timm-style): one family per module, constructors registered by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from odenets.config import to_kwargs
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


WIDTH_ARGUMENTS = ("width", "channels", "hidden_size")  # what a budget's width_scale scales, in every family


def scale_width(value, scale: float):
    """A width (or list of widths) times `scale`, rounded to a multiple of 4 (at least 4)."""
    if isinstance(value, (list, tuple)):
        return [scale_width(v, scale) for v in value]
    return value if scale == 1 else max(4, 4 * round(value * scale / 4))


def build_model(model_cfg, width_scale: float = 1.0) -> nn.Module:
    """The network a `conf/model/*.yaml` node describes: `name` plus the constructor's arguments,
    with its width arguments scaled by the budget's `width_scale`."""
    kwargs = to_kwargs(model_cfg)
    for key in WIDTH_ARGUMENTS:
        if kwargs.get(key) is not None:
            kwargs[key] = scale_width(kwargs[key], width_scale)
    return create_model(kwargs.pop("name"), **kwargs)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Model families register themselves on import.
from odenets.models import (  # noqa: E402,F401
    cliquenet,
    densenet,
    horesnet,
    lm_resnet,
    momentum_resnet,
    odenet,
    preact_resnet,
    recurrent,
    rkcnn,
    rknet,
)
