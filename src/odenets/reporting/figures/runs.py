"""Run records for figures: read every `result.json`, group runs that one figure compares, label them.

A figure compares runs that differ only in the keys it varies (the scheme, the model, the seed,
the learning rate...). Everything else in the defining config (dataset, budget, epochs, optimiser,
augmentation) must agree, so results of different budgets are never drawn together: they form
separate groups, each named by its `provenance`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from odenets.reporting.figures import scheme_label, scheme_rank
from odenets.results import comparison_key, get

RNN_LABELS = {"lstm": "LSTM", "gru": "GRU", "phased_lstm": "Phased LSTM"}


def group_runs(runs: Sequence[dict], varied: Iterable[str]) -> dict[str, list[dict]]:
    """Runs grouped by `comparison_key` (insertion order of the first run of each group)."""
    varied = tuple(varied)
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[comparison_key(run["config"], varied)].append(run)
    return dict(groups)


def provenance(config: dict) -> str:
    """How a run was trained, for titles and file names: the budget's name (conf/budget), epochs (capped by
    the budget's `max_epochs`), data subsets."""
    budget = config.get("budget") if isinstance(config.get("budget"), dict) else {}
    parts = [str(budget["name"])] if budget.get("name") else []
    epochs = [e for e in (config.get("epochs"), budget.get("max_epochs")) if e is not None]
    parts.append(f"{min(epochs) if epochs else '?'} ep")
    for key in ("subset", "test_subset"):
        if get(config, f"dataset.{key}") is not None:
            parts.append(f"{key} {get(config, f'dataset.{key}')}")
    return ", ".join(parts)


def run_label(config: dict) -> str:
    """A legend label: the scheme for HO-ResNet ("RK-8 (adaptive h)" with a learned step), else the model."""
    model, scheme = get(config, "model.name"), get(config, "scheme.name")
    if model == "ode_rnn":
        if scheme == "heun":
            return "HeunNet"
        if scheme == "heun_ext":
            return f"ExtendedHeunNet (α={get(config, 'scheme.alpha'):g})"
        return f"ODE-RNN ({scheme_label(scheme)})"
    if model in RNN_LABELS:
        return RNN_LABELS[model]
    if scheme is None:
        return str(model)
    label = scheme_label(scheme)
    if get(config, "scheme.learn_h"):
        return f"{label} (adaptive h)"
    return label


def by_label(runs: Sequence[dict]) -> dict[str, list[dict]]:
    """Runs keyed by legend label, ordered by scheme order (lower order first), then label."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        groups[run_label(run["config"])].append(run)
    order = lambda item: (scheme_rank(get(item[1][0]["config"], "scheme.name", "")), item[0])
    return dict(sorted(groups.items(), key=order))
