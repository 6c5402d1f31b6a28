"""Config helpers: OmegaConf resolvers, the experiment fingerprint and run naming, compose().

The fingerprint hashes the part of the config that defines an experiment: everything except
where files live, how runs are logged and shown, the hydra node, and the top-level keys the chosen
model does not read (`unused_keys`: `scheme` for an LSTM), and the options added since runs were
recorded while they stay at the value that computes what those runs computed (`NEUTRAL`). Two runs with
the same fingerprint are the same experiment, which is how reruns find their directory, resume, and skip
completed work.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository, when running from a source checkout


def _conf_dir() -> Path:
    """conf/ of the checkout (editable install, PYTHONPATH=src), else the configs installed with the package."""
    checkout = _CHECKOUT / "conf"
    return checkout if (checkout / "config.yaml").is_file() else Path(__file__).resolve().parent / "conf"


CONF_DIR = _conf_dir()


def project_root() -> Path:
    """Where `data/` and `outputs/` live by default: the checkout; for an installed package, $ODENETS_HOME or
    the current directory (never site-packages)."""
    if CONF_DIR == _CHECKOUT / "conf":
        return _CHECKOUT
    return Path(os.environ.get("ODENETS_HOME") or os.getcwd()).resolve()

# Keys that do not change what is computed.
NON_DEFINING = {
    "hydra", "paths", "logger", "checkpoint_every_n_steps", "force", "wait_for_lock",
    "budget.note", "budget.tables", "budget.sweeps", "budget.seeds",  # what a budget says and reproduces, not what
    # a run computes (odenets.reporting.budget)
    "dataset.root", "dataset.num_workers", "dataset.eval_batch_size",
    "trainer.log_every_n_steps", "trainer.enable_model_summary", "trainer.enable_progress_bar",
}


# Options added after runs were recorded, with their neutral value: the value that computes exactly what runs
# computed before the option existed. At that value a key is left out of the defining config, so adding it to a
# config group changes no fingerprint and no comparison key (a record's stored config lacks the key; a run of
# today's config has it at its neutral value); any other value is part of the experiment. An option belongs here
# only if its neutral value reproduces the old behaviour bit for bit (tested for `dataset.val_fraction`).
NEUTRAL: dict[str, Any] = {
    "dataset.val_fraction": None,  # no validation split: train on the whole training split (the papers' protocol)
}


# Top-level keys that only some models read (through interpolations such as `model.depth: ${depth}`).
OPTIONAL_KEYS = ("scheme", "depth", "alpha", "activation_checkpointing", "checkpoint")
_REFERENCE = re.compile(r"\$\{(?:oc\.select:)?([A-Za-z_][\w]*)")


def _references(node: Any) -> set[str]:
    """Top-level keys that interpolations anywhere in `node` refer to."""
    if isinstance(node, dict):
        return set().union(*map(_references, node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    return set(_REFERENCE.findall(node)) if isinstance(node, str) else set()


def unused_keys(cfg: DictConfig) -> set[str]:
    """The optional top-level keys (`OPTIONAL_KEYS`) that nothing the run builds reads: not reachable
    through interpolations from the rest of the config (e.g. `scheme` and `depth` for `model=lstm`)."""
    raw = OmegaConf.to_container(cfg, resolve=False)
    raw.pop("hydra", None)
    refs = {key: _references(value) for key, value in raw.items()}
    reached = set()
    todo = [key for key in raw if key not in OPTIONAL_KEYS]
    while todo:
        key = todo.pop()
        for ref in refs.get(key, ()):
            if ref not in reached and ref in raw:
                reached.add(ref)
                todo.append(ref)
    return {key for key in OPTIONAL_KEYS if key in raw and key not in reached}


@functools.cache
def readers(key: str) -> tuple[str, ...]:
    """The config-group options that read top-level `key` (`scheme=heun_ext` reads `alpha`, `model=horesnet`
    reads `depth`), from conf/<group>/*.yaml."""
    pattern = re.compile(r"\$\{(?:oc\.select:)?" + re.escape(key) + r"\b")
    found = []
    for path in sorted(CONF_DIR.glob("*/*.yaml")):
        if path.parent.name not in ("experiment", "budget_rules") and pattern.search(path.read_text()):
            found.append(f"{path.parent.name}={path.stem}")
    return tuple(found)


def _strip(node: Any, prefix: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, f"{prefix}{k}.") for k, v in node.items() if not _left_out(f"{prefix}{k}", v)}
    return node


def _left_out(dotted: str, value: Any) -> bool:
    return dotted in NON_DEFINING or (dotted in NEUTRAL and value == NEUTRAL[dotted])


def defining_config(cfg: DictConfig) -> dict:
    """The resolved config without the non-defining keys, the optional keys nothing reads and the options at their
    neutral value (`NEUTRAL`)."""
    out = {}
    skip = NON_DEFINING | unused_keys(cfg)
    for key in cfg:
        if key in skip:
            continue
        node = cfg[key] if not OmegaConf.is_missing(cfg, key) else None
        if isinstance(node, (DictConfig, ListConfig)):
            node = OmegaConf.to_container(node, resolve=True)
        if not _left_out(key, node):
            out[key] = _strip(node, f"{key}.")
    return out


def fingerprint(cfg: DictConfig) -> str:
    """SHA-256 (hex) of the defining config, keys sorted."""
    blob = json.dumps(defining_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_name(cfg: DictConfig) -> str:
    """A readable, unique directory name: e.g. `cifar10-horesnet-rk4-d58-s0-1a2b3c4d`."""
    model = cfg.model
    parts = [str(cfg.dataset.name), str(model.name)]
    if "scheme" in model and isinstance(model.scheme, DictConfig):
        parts.append(str(cfg.scheme.name))
        if cfg.scheme.get("alpha") is not None:
            parts.append(f"a{cfg.scheme.alpha:g}")
    if "depth" in model:
        parts.append(f"d{model.depth}")
    parts.append(f"s{cfg.seed}")
    if cfg.get("budget") and cfg.budget.name != "paper":
        parts.append(str(cfg.budget.name))
    return "-".join(parts + [fingerprint(cfg)[:8]])


def to_kwargs(node) -> dict:
    """A config node (or mapping) as a plain dict of constructor arguments."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)


def _epoch_fractions(epochs: int, fractions) -> list[int]:
    """Milestones at fractions of the training length (the RKCNN recipe: /10 at 50% and 75%)."""
    return [max(1, round(int(epochs) * float(f))) for f in fractions]


def register_resolvers() -> None:
    resolvers = {
        "run_name": lambda *, _root_: run_name(_root_),
        "run_id": lambda *, _root_: fingerprint(_root_)[:16],
        "epoch_fractions": _epoch_fractions,
        "project_root": lambda: str(project_root()),
        "capped": lambda n, cap: n if cap is None else min(int(n), int(cap)),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def compose(overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None) -> DictConfig:
    """The config `python train.py <overrides>` would run with (for scripts and tests)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    root = project_root()
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(root)
        cfg.hydra.runtime.output_dir = str(output_dir or root / "outputs" / "compose")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


_MISSING = object()


@functools.cache
def _compose_choices(choices: tuple[str, ...]) -> DictConfig:
    return compose(list(choices))


def compose_row(overrides: list[str]) -> DictConfig:
    """`compose(overrides)` for the many rows of a table, composing each set of config-group choices
    (experiment=, model=, ...) once (composition takes a few hundred ms).

    Plain `key=value` overrides are then applied the way Hydra applies them after composing
    (`OmegaConf.update(cfg, key, value, merge=True)`); anything else (+key, ~key, @package, keys not in
    the config) goes through `compose` itself. Tested equal to `compose`.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    is_choice = lambda o: "." not in o.key_or_group and (CONF_DIR / o.key_or_group).is_dir()
    values = [o for o in parsed if not is_choice(o)]
    if any(o.is_add() or o.is_force_add() or o.is_delete() or o.package is not None for o in parsed):
        return compose(list(overrides))
    cfg = copy.deepcopy(_compose_choices(tuple(o.input_line for o in parsed if is_choice(o))))
    for o in values:
        if OmegaConf.select(cfg, o.key_or_group, default=_MISSING) is _MISSING:
            return compose(list(overrides))
        OmegaConf.update(cfg, o.key_or_group, o.value(), merge=True)
    return cfg
