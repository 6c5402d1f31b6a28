"""Every registered model, found through the registry (timm's test_models pattern): it has a YAML in
conf/model, builds from it through the config as `train.py` would, runs forward and backward on a tiny
input, and counts its parameters. A new `@register_model` with a YAML is tested without touching this file."""

from __future__ import annotations

import pytest
import torch

from odenets.config import CONF_DIR, compose
from odenets.models import allowed_options, build_model, count_params, list_models

# The smallest dataset each kind of model trains on here: images (digits, 8x8) or signals (sine windows).
SIGNAL_MODELS = {"lstm", "gru", "ode_rnn", "phased_lstm"}
TINY = {"width": 4, "channels": [4], "hidden_size": 4}


@pytest.mark.parametrize("name", list_models())
def test_every_model_has_a_config(name):
    assert (CONF_DIR / "model" / f"{name}.yaml").is_file(), f"conf/model/{name}.yaml is missing"


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_runs_and_learns(name):
    dataset = "sine" if name in SIGNAL_MODELS else "digits"
    cfg = compose([f"model={name}", f"dataset={dataset}"])
    overrides = {k: v for k, v in TINY.items() if k in cfg.model}
    if name in ("preact_resnet", "rknet", "rknn", "odenet", "densenet", "cliquenet", "rkcnn"):
        overrides["preprocessor"] = "cliquenet"
    torch.manual_seed(0)
    net = build_model({**cfg.model, **overrides})
    x = torch.randn(3, 50) if dataset == "sine" else torch.rand(3, 1, 8, 8)
    out = net(x)
    assert out.shape == (3, 1 if dataset == "sine" else 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert count_params(net) == sum(p.numel() for p in net.parameters() if p.requires_grad) > 0


@pytest.mark.parametrize("name", list_models())
def test_yaml_defaults_agree_with_the_constructor(name):
    """A default is written in the constructor and in conf/model/<name>.yaml: they may not drift apart."""
    import inspect

    from omegaconf import OmegaConf

    from odenets.models import MODELS

    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml"), resolve=False)
    signature = inspect.signature(MODELS[name]).parameters
    for key, value in raw.items():
        default = signature[key].default if key in signature else inspect.Parameter.empty
        if default is inspect.Parameter.empty or (isinstance(value, str) and "${" in value):
            continue
        assert (list(default) if isinstance(default, tuple) else default) == value, key


# -- each family is the only validator of its options (odenets.allowed) ----------------------------------------
# the model keys run/validation.py checked for every model before the families declared them: a model taking one
# must still have its range
CHECKED_BEFORE = {"width", "stage_weights", "hidden_size", "num_layers", "chunk", "timescale", "trim_padding",
                  "fused", "input_scale", "r_on", "leak", "dropout", "tol", "steps", "attention", "multiscale", "norm"}
CANDIDATES = (0, -1, 1, 1.5, 2, "x", None, True, [0], [2, 1])  # the first its range refuses is the bad value


def bad_value(allowed):
    return next(v for v in CANDIDATES if not allowed(v))


@pytest.mark.parametrize("name", list_models())
def test_every_option_checked_before_has_a_range_declared_by_its_family(name):
    from odenets.models import model_options

    assert CHECKED_BEFORE & set(model_options(name)) <= set(allowed_options(name)), name


@pytest.mark.parametrize("name,key", [(n, k) for n in list_models() for k in allowed_options(n)])
def test_each_family_refuses_a_value_out_of_its_range_in_one_line(name, key):
    """From the constructor (`create_model`, nothing built) and from the config (`validate`, before any data)."""
    import re

    from omegaconf import open_dict

    from odenets.config import compose_row
    from odenets.errors import ConfigError
    from odenets.models import create_model
    from odenets.run.validation import validate

    allowed = allowed_options(name)[key]
    bad = bad_value(allowed)
    line = rf"^model\.{key}={re.escape(repr(bad))} is not allowed; expected {re.escape(allowed.text)}$"
    with pytest.raises(ConfigError, match=line):
        create_model(name, **{key: bad})
    cfg = compose_row([f"model={name}", f"dataset={'sine' if name in SIGNAL_MODELS else 'digits'}"])
    with open_dict(cfg):
        cfg.model[key] = bad
    with pytest.raises(ConfigError, match=line):
        validate(cfg)


@pytest.mark.parametrize("name", list_models())
def test_every_model_config_passes_its_familys_check(name):
    from odenets.config import compose_row
    from odenets.models import check_model

    cfg = compose_row([f"model={name}", f"dataset={'sine' if name in SIGNAL_MODELS else 'digits'}"])
    check_model(cfg.model)
    assert all(allowed(cfg.model[k]) for k, allowed in allowed_options(name).items() if k in cfg.model)


def test_a_declared_range_names_an_option_of_its_family():
    """No stale declaration: every key a family module's `ALLOWED` lists is an option some model of it takes."""
    import importlib

    from odenets.models import MODELS

    used = set().union(*(allowed_options(n) for n in MODELS))
    for module in {importlib.import_module(fn.__module__) for fn in MODELS.values()}:
        assert set(getattr(module, "ALLOWED", {})) <= used, module.__name__


@pytest.mark.parametrize("model", ["horesnet", "ode_rnn"])
def test_a_run_parses_its_scheme_once(model, monkeypatch):
    """Validation and the build read the scheme's config once (`build_model`); the model and its blocks get the
    parsed `Scheme` (issue 27)."""
    from odenets.config import compose_row
    from odenets.core import schemes
    from odenets.models import build_model
    from odenets.run.validation import validate

    looked_up = []
    get_tableau = schemes.get_tableau
    monkeypatch.setattr(schemes, "get_tableau", lambda *a, **k: looked_up.append(a) or get_tableau(*a, **k))
    cfg = compose_row([f"model={model}", f"dataset={'sine' if model in SIGNAL_MODELS else 'digits'}", "scheme=rk4",
                       "depth=10" if model == "horesnet" else "model.hidden_size=4"])
    validate(cfg)
    build_model(cfg.model)
    assert looked_up == [("rk4",)]
