"""Every registered model, found through the registry (timm's test_models pattern): it has a YAML in
conf/model, builds from it through the config as `train.py` would, runs forward and backward on a tiny
input, and counts its parameters. A new `@register_model` with a YAML is tested without touching this file."""

from __future__ import annotations

import pytest
import torch

from odenets.config import CONF_DIR, compose
from odenets.models import build_model, count_params, list_models

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
