"""The model registry (timm-style): constructors registered by name, listed, built from a config node.

Families import `register_model` from here; `odenets.models` imports every family so that they register."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

from odenets.allowed import Allowed, check
from odenets.config import to_kwargs
from odenets.core.schemes import scheme_from_config
from odenets.errors import ConfigError

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model constructor under its function name (a name can be registered once)."""
    if fn.__name__ in MODELS and MODELS[fn.__name__] is not fn:
        raise ValueError(f"model {fn.__name__!r} is already registered (by {MODELS[fn.__name__].__module__})")
    MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern`, sorted."""
    return sorted(fnmatch.filter(MODELS, pattern))


def _returned_class(name: str) -> type | None:
    fn = MODELS[name]
    cls = getattr(inspect.getmodule(fn), str(inspect.signature(fn).return_annotation), None)
    return cls if inspect.isclass(cls) else None


def _constructor_chain(name: str) -> list[Callable]:
    """A model's constructor, then the __init__ of the class it returns and of its base classes while each passes
    **kwargs along: the functions whose keyword arguments are the model's options."""
    cls = _returned_class(name)
    chain = [MODELS[name], *(c.__init__ for c in (cls.__mro__ if cls else ()) if "__init__" in vars(c))]
    for i, f in enumerate(chain):
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(f).parameters.values()):
            return chain[:i + 1]
    return chain


def model_options(name: str) -> list[str]:
    """The keyword arguments a model's constructor takes, following **kwargs into the class it returns
    and on through its base classes' __init__ while they pass **kwargs along."""
    names: list[str] = []
    for f in _constructor_chain(name):
        names += [p.name for p in inspect.signature(f).parameters.values()
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names and p.name != "self"]
    return names


def allowed_options(name: str) -> dict[str, Allowed]:
    """The ranges of a model's options, as its family declares them (`ALLOWED` of the constructor's module and of
    the modules of the class it returns and that class's bases; `odenets.allowed`), for the options it takes."""
    cls = _returned_class(name)
    modules = [inspect.getmodule(c) for c in reversed(cls.__mro__ if cls else ())] + [inspect.getmodule(MODELS[name])]
    declared: dict[str, Allowed] = {}
    for module in dict.fromkeys(modules):  # base classes' families first: the model's own family has the last word
        declared.update(getattr(module, "ALLOWED", {}))
    options = model_options(name)
    return {key: rule for key, rule in declared.items() if key in options}


def check_options(name: str, kwargs: dict) -> None:
    """One ConfigError line for an unknown model, an argument it does not take, or a value out of its range."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    unknown = sorted(set(kwargs) - set(model_options(name)))
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not an option of model {name!r}; its options: "
                          f"{', '.join(model_options(name))}")
    check(kwargs, allowed_options(name), prefix="model.")


def check_model(model_cfg) -> None:
    """`check_options` on a `conf/model/*.yaml` node, before anything is built (`odenets.run.validation`)."""
    kwargs = to_kwargs(model_cfg)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise ConfigError(f"model.name={name!r} is unknown; valid models: {', '.join(list_models())}")
    check_options(name, kwargs)


def create_model(name: str, **kwargs) -> nn.Module:
    """The model `name` built with `kwargs`; an argument it does not take or out of its range is one ConfigError."""
    check_options(name, kwargs)
    return MODELS[name](**kwargs)


WIDTH_ARGUMENTS = ("width", "channels", "hidden_size")  # what a budget's width_scale scales, in every family


def scale_width(value, scale: float):
    """A width (or list of widths) times `scale`, rounded to a multiple of 4 (at least 4)."""
    if isinstance(value, (list, tuple)):
        return [scale_width(v, scale) for v in value]
    return value if scale == 1 else max(4, 4 * round(value * scale / 4))


def build_model(model_cfg, width_scale: float = 1.0) -> nn.Module:
    """The network a `conf/model/*.yaml` node describes: `name` plus the constructor's arguments,
    with its width arguments scaled by the budget's `width_scale`. The run's scheme is parsed here, once
    (`scheme_from_config`): the model and its blocks receive the `Scheme`."""
    kwargs = to_kwargs(model_cfg)
    if "scheme" in kwargs:
        kwargs["scheme"] = scheme_from_config(kwargs["scheme"])
    for key in WIDTH_ARGUMENTS:
        if kwargs.get(key) is not None:
            kwargs[key] = scale_width(kwargs[key], width_scale)
    return create_model(kwargs.pop("name"), **kwargs)


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
