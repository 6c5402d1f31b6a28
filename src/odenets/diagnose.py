"""Stability diagnostics of a run: `odenets-diagnose RUN [which=best|last] [init=true|false] [batch=N] [k=K]
[order=true|false] [schemes=euler,heun,rk4] [substeps=1,2,4,8,16] [reference=64] [dataset.KEY=VALUE ...]`.

RUN is a run directory or one of its checkpoints, rebuilt by `odenets.evaluate.load_trained`. On the first
`batch` test samples, every ODE block is diagnosed (`odenets.run.stability`): the leading eigenvalues of each
stage sub-network's Jacobian (`k` per kind: largest magnitude, largest and smallest real part), h lambda against
the block's stability region, and the spectral norm of the block's step. `init=true` (the default) does the same
for the run's initial weights, rebuilt from its seed as training builds them (`run.training.initial_network`);
their BatchNorm statistics, still 0 and 1, are set to the batch's, as the train-mode network normalises at its
first step. For weight-shared networks, `order=true` (the default) also measures the order: the hidden states'
error with n = `substeps` sub-steps of each of `schemes` (and the trained scheme) against `reference` sub-steps
of the highest-order one. Spectra are computed in the network's float32, the order in float64.

The entry (kind `diagnostics`, with its settings, products and seconds, and provenance) is added to the run's
`eval.json` through `odenets.evaluate.record`, replacing an earlier diagnosis of the same checkpoint; `make
figures` draws it (`ode_stability_*`, `ode_order_*`). Bad paths or options: one line, exit status 2 (an
eval.json that cannot be written: 4; `odenets.cli`).

    odenets-diagnose outputs/runs/mnist-ode_rnn-heun-s0-cpu-58038fb0
    odenets-diagnose outputs/runs/mnist-horesnet-rk8-d30-s0-cpu-... batch=2 init=false
    make diagnose RUN=outputs/runs/... ARGS="batch=8"
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from odenets.cli import run_and_options, run_command
from odenets.config import register_resolvers
from odenets.core.schemes import TABLEAUS, ButcherTableau, scheme_from_config
from odenets.data.base import TensorDataModule
from odenets.errors import ConfigError
from odenets.evaluate import load_trained, record
from odenets.provenance import provenance
from odenets.results import now
from odenets.run.integration import ode_blocks
from odenets.run.stability import REFERENCE_SUBSTEPS, SUBSTEPS, bn_statistics_of, diagnose, measured_order
from odenets.run.training import initial_network, quiet_lightning

SCHEMES = ("euler", "heun", "rk4")


def test_batch(datamodule: TensorDataModule, n: int) -> Tensor:
    """The first `n` samples of the test split, transformed as evaluation transforms them."""
    datamodule.setup("test")
    datamodule.eval_batch_size = n
    x, _ = next(iter(datamodule.test_dataloader()))
    return datamodule.transform(x, train=False)


def order_schemes(schemes: Sequence[str], net: nn.Module) -> list[str]:
    """`schemes`, and the scheme the network was trained with where it is a fixed registered tableau."""
    trained = [b.scheme.name for b in ode_blocks(net) if hasattr(b, "scheme")]
    extra = [s for s in trained[:1] if isinstance(TABLEAUS.get(s), ButcherTableau) and s not in schemes]
    return [*schemes, *extra]


def diagnose_state(net: nn.Module, x: Tensor, k: int, order: bool, schemes: Sequence[str], substeps: Sequence[int],
                   reference: int) -> dict:
    """The blocks' diagnoses of one set of weights and, if asked and possible, the measured order."""
    start, cpu = time.perf_counter(), time.process_time()
    out = diagnose(net, x, k=k)
    if order:
        try:
            out["order"] = measured_order(copy.deepcopy(net).double(), x.double(), order_schemes(schemes, net),
                                          substeps, reference)
        except ConfigError as e:  # separate sub-nets per stage: sub-steps would reuse them out of place
            out["order"] = {"skipped": str(e)}
    out["seconds"], out["cpu_seconds"] = round(time.perf_counter() - start, 3), round(time.process_time() - cpu, 3)
    return out


def diagnose_run(run: str | Path, which: str = "best", init: bool = True, batch: int = 4, k: int = 2,
                 order: bool = True, schemes: Sequence[str] = SCHEMES, substeps: Sequence[int] = SUBSTEPS,
                 reference: int = REFERENCE_SUBSTEPS, overrides: Sequence[str] = ()) -> dict:
    """Diagnose a run's trained (and initial) weights and record the entry in its eval.json; returns the entry."""
    began = time.perf_counter()
    trained = load_trained(run, which, overrides)
    x = test_batch(trained.datamodule, batch)
    name = f"model={trained.cfg.model.name}"
    states = {"trained": trained.net.eval()}
    if init:
        states["initial"] = initial_network(trained.cfg)[1]
        bn_statistics_of(states["initial"], x)
    diagnosed = {}
    for state, net in states.items():
        try:
            diagnosed[state] = diagnose_state(net, x, k, order, schemes, substeps, reference)
        except ConfigError as e:
            raise ConfigError(f"{name}: {e}") from None
    products = sum(sum(b["products"] for b in d["blocks"]) + (d["stack"]["norm"]["products"] if d["stack"] else 0)
                   for d in diagnosed.values())
    trained_scheme = OmegaConf.select(trained.cfg, "scheme.name")
    entry = {"kind": "diagnostics", "checkpoint": trained.checkpoint.name, "scheme": trained_scheme, "substeps": 1,
             "trained_scheme": trained_scheme, "overrides": list(overrides), "evaluated": now(),
             "model": trained.cfg.model.name,
             "settings": {"batch": len(x), "inputs": f"the first {len(x)} test samples", "k": k, "init": init,
                          "order": order, "schemes": list(schemes), "substeps": list(substeps), "reference": reference,
                          "spectra_dtype": "float32", "order_dtype": "float64"},
             "states": diagnosed,
             "cost": {"products": products, "seconds": round(sum(d["seconds"] for d in diagnosed.values()), 3),
                      "cpu_seconds": round(sum(d["cpu_seconds"] for d in diagnosed.values()), 3),
                      "threads": torch.get_num_threads(),
                      "with_loading_seconds": round(time.perf_counter() - began, 3)},  # + checkpoint, data, init
             **provenance("cpu")}
    record(trained.run_dir, entry)
    return entry


# --------------------------------------------------------------------------- the command line
def _bool(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{key}={value!r}; allowed: true, false")
    return value.lower() == "true"


def _int(key: str, value: str, low: int = 1) -> int:
    if not value.isdigit() or int(value) < low:
        raise ConfigError(f"{key}={value!r}; allowed: an integer >= {low}")
    return int(value)


def _schemes(key: str, value: str) -> tuple[str, ...]:
    names = tuple(s for s in value.split(",") if s)
    for s in names:
        scheme_from_config(s)  # an unknown name: one line listing the valid ones
    if not names:
        raise ConfigError(f"{key}={value!r}; allowed: scheme names separated by commas (euler,heun,rk4)")
    return names


def _substeps(key: str, value: str) -> tuple[int, ...]:
    steps = tuple(_int(key, s) for s in value.split(","))
    if list(steps) != sorted(set(steps)) or len(steps) < 3:
        raise ConfigError(f"{key}={value!r}; allowed: at least three increasing integers >= 1 (1,2,4,8,16)")
    return steps


PARSERS = {"which": lambda k, v: v, "init": _bool, "order": _bool, "batch": _int, "k": _int, "schemes": _schemes,
           "substeps": _substeps, "reference": _int}


USAGE = ("usage: odenets-diagnose RUN_DIR_OR_CKPT [which=best|last] [init=true|false] [batch=N] [k=K] "
         "[order=true|false] [schemes=a,b] [substeps=1,2,4,8,16] [reference=64] [dataset.KEY=VALUE ...]")


def parse(argv: list[str]) -> tuple[str, dict, list[str]]:
    run, given, overrides = run_and_options(argv, USAGE, PARSERS)
    options = {key: PARSERS[key](key, value) for key, value in given.items()}
    reference, substeps = options.get("reference", REFERENCE_SUBSTEPS), options.get("substeps", SUBSTEPS)
    if reference <= max(substeps):
        raise ConfigError(f"reference={reference} must exceed the largest of substeps={','.join(map(str, substeps))}")
    return run, options, overrides


def summary(entry: dict) -> list[str]:
    """One line per block and weights, and one per measured order."""
    lines = []
    for state, diagnosed in entry["states"].items():
        for b in diagnosed["blocks"]:
            lam = [complex(*z) for s in b["stages"] for which in ("LM", "LR", "SR") for z in s[which]]
            inside = [s["decaying_inside"] for s in b["stages"] if s.get("decaying_inside") is not None]
            growing = sum(s.get("growing", 0) for s in b["stages"])
            region = f", decaying h lambda inside {100 * sum(inside) / len(inside):.0f}% ({growing} growing)" \
                if inside else ""
            top = f", max |lambda| {max(map(abs, lam)):.3g}" if lam else ""
            h = f", h={b['h']:g}" if b["h"] else ""
            lines.append(f"{state} {b['block']} ({b['scheme']}{h}, {b['weights']}){top}{region}, step norm "
                         f"{b['step_norm']['value']:.3g} ({b['products']} products, {b['seconds']:.1f} s)")
        if diagnosed["stack"]:
            stack = diagnosed["stack"]
            lines.append(f"{state} {stack['module']} ({stack['blocks']} blocks): spectral norm "
                         f"{stack['norm']['value']:.3g}")
        for scheme, fit in (diagnosed.get("order") or {}).get("schemes", {}).items():
            p = "n/a" if fit["order"] is None else f"{fit['order']:.2f} [{fit['interval'][0]:.2f}, " \
                                                   f"{fit['interval'][1]:.2f}]"
            lines.append(f"{state} measured order, {scheme} (order {fit['expected']}): {p}")
    cost = entry["cost"]
    lines.append(f"{cost['products']} Jacobian products, {cost['seconds']:.1f} s ({cost['cpu_seconds']:.1f} s of CPU; "
                 f"{cost['with_loading_seconds']:.1f} s with loading) on {cost['threads']} thread(s)")
    return lines


def _diagnose_and_say(argv: list[str]) -> int:
    run, options, overrides = parse(argv)
    print("\n".join(summary(diagnose_run(run, overrides=overrides, **options))))
    return 0


def main(argv: list[str] | None = None) -> int:
    register_resolvers()
    quiet_lightning(info=False)
    return run_command(lambda: _diagnose_and_say(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
