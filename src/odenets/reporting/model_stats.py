"""Our models' size and cost beside a paper table's published numbers (`src/odenets/reporting/published/*.yaml`).

Each table row names the Hydra overrides that build (and train) it; the model is built exactly as
`python train.py <overrides>` would (`config.compose_row`; `models.build_model`) and measured:
* parameters: trainable parameters; with the table key `params_count: weights`, only conv/linear
  weights and other non-normalisation, non-bias parameters (learned step sizes), compared with the
  paper's `params + params_extra`. A count matches within 0.5% or when it rounds to the paper's
  figure at the table's `params_precision`.
* FLOPs (`odenets.perf.measure.inference_flops`): `torch.utils.flop_counter.FlopCounterMode` on a batch-1
  forward in eval mode, 2 per multiply-add of convolutions and matrix products (as the paper: pre-act
  ResNet k=32 on MNIST is 8.43M). The model is built on the meta device unless its forward depends on
  values (ODE solvers), then on the CPU. A match is within 2%, or at least `flops_min` where the paper
  gives a lower bound.
* memory (rows where the paper gives one; `odenets.perf.measure.inference_memory`): one image through the
  model under `torch.no_grad()`. On CPU, the peak bytes of live tensors, tracked after every aten op by a
  TorchDispatchMode (the input and all intermediates; excludes kernel-internal scratch), plus parameter and
  buffer bytes; on CUDA, `torch.cuda.max_memory_allocated`. The paper's figures are whole-process GPU
  memory, CUDA context (several hundred MiB) included, so only differences between its rows are comparable.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from odenets.config import compose_row
from odenets.errors import ConfigError
from odenets.formatting import markdown_grid
from odenets.models import build_model
from odenets.models import count_params as count_trainable
from odenets.perf.measure import MiB, inference_flops, inference_memory, inference_memory_method
from odenets.reporting.published import Row, Table, load_table

PARAMS_TOLERANCE, FLOPS_TOLERANCE = 0.005, 0.02
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


# --------------------------------------------------------------------------- parameters
def count_params(model: nn.Module, mode: str = "all") -> int:
    """Trainable parameters (`all`) or only weights (`weights`: no normalisation parameters, no biases)."""
    if mode not in ("all", "weights"):
        raise ConfigError(f"params_count={mode!r}; allowed: all, weights")
    if mode == "all":
        return count_trainable(model)
    skip = set()
    for m in model.modules():
        if isinstance(m, _NORMS):
            skip.update(id(p) for p in m.parameters(recurse=False))
        elif isinstance(m, _WEIGHTED) and m.bias is not None:
            skip.add(id(m.bias))
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in skip)


# --------------------------------------------------------------------------- rows
def input_shape(cfg: DictConfig) -> tuple[int, int, int, int] | None:
    """One image of the row's dataset; None for non-image data (then only parameters are counted)."""
    size = cfg.dataset.get("image_size")
    return None if size is None else (1, int(cfg.dataset.in_channels), int(size), int(size))


def build(cfg: DictConfig, device: str | torch.device = "cpu") -> nn.Module:
    """The model of a composed config, on `device` ("meta": shapes only, no memory or compute)."""
    with torch.device(device):
        return build_model(cfg.model)


def _rel(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or not paper else ours / paper - 1


def row_stats(row: Row, table: Table, flops: bool = True, memory: bool = True, device: str = "cpu") -> dict:
    """Ours beside the paper's for one table row: params, FLOPs and (where published) memory."""
    pub = row.published
    paper_params = None if pub.params is None else pub.params + (pub.params_extra or 0)
    paper_flops, paper_flops_min = pub.flops, pub.flops_min
    out = {"row": row.row, "params": None, "paper_params": paper_params, "params_rel": None, "params_ok": None,
           "flops": None, "paper_flops": paper_flops, "paper_flops_min": paper_flops_min, "flops_rel": None,
           "flops_ok": None}
    if pub.lists("memory_mib"):
        out.update(memory_mib=None, paper_memory_mib=pub.memory_mib)
    out["note"] = row.note
    if not row.overrides:
        return out

    cfg = compose_row(list(row.overrides))
    model, shape = build(cfg, "meta"), input_shape(cfg)
    out["params"] = count_params(model, table.params_count)
    out["params_rel"] = _rel(out["params"], paper_params)
    if paper_params:
        precision = table.params_precision
        rounds = precision and round(out["params"] / precision) * precision == paper_params
        out["params_ok"] = abs(out["params_rel"]) <= PARAMS_TOLERANCE or bool(rounds)
    if flops and shape is not None:
        try:
            out["flops"] = inference_flops(model, shape)
        except (RuntimeError, NotImplementedError):  # value-dependent control flow: measure for real
            if paper_flops is not None or paper_flops_min is not None:
                out["flops"] = inference_flops(build(cfg, device), shape)
        out["flops_rel"] = _rel(out["flops"], paper_flops)
        if out["flops"] is not None and paper_flops is not None:
            out["flops_ok"] = abs(out["flops_rel"]) <= FLOPS_TOLERANCE
        elif out["flops"] is not None and paper_flops_min is not None:
            out["flops_ok"] = out["flops"] >= paper_flops_min
    if memory and shape is not None and pub.memory_mib is not None:
        out["memory_mib"] = inference_memory(build(cfg, device), shape, device) / MiB
    return out


def table_stats(name: str, flops: bool = True, memory: bool = True, device: str = "cpu") -> list[dict]:
    table = load_table(name)
    return [row_stats(row, table, flops, memory, device) for row in table.rows]


# --------------------------------------------------------------------------- text output
def _num(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if x is None else f"{x / scale:.{digits}f}"


def _pct(x: float | None, ok: bool | None) -> str:
    return "" if x is None else f"{100 * x:+.2f}%" + (" !" if ok is False else "")


def format_table(name: str, stats: list[dict], device: str = "cpu") -> str:
    """Our params/FLOPs/memory beside the paper's, with the relative difference (! outside tolerance), as a
    Markdown table (`odenets.formatting.markdown_grid`), then the rows' notes."""
    table = load_table(name)
    has_memory = any("paper_memory_mib" in s for s in stats)
    columns = ["row", "params", "paper", "diff", "FLOPs (M)", "paper", "diff"] + (["mem MiB", "paper"] if has_memory
                                                                                 else [])
    rows, notes = [], []
    for s in stats:
        paper_flops = s["paper_flops"] if s["paper_flops"] is not None else s["paper_flops_min"]
        bound = ">=" if s["paper_flops"] is None and s["paper_flops_min"] is not None else ""
        row = [s["row"], _num(s["params"], 1, 0), _num(s["paper_params"], 1, 0), _pct(s["params_rel"], s["params_ok"]),
               _num(s["flops"], 1e6), bound + _num(paper_flops, 1e6), _pct(s["flops_rel"], s["flops_ok"])]
        if has_memory:
            row += [_num(s.get("memory_mib")), _num(s.get("paper_memory_mib"), 1, 0)]
        rows.append(row)
        if s["note"]:
            notes.append(f"- {s['row']}: {s['note']}")
    lines = [f"{table.source}: {table.title}",
             "params: " + ("conv/linear weights + other non-norm, non-bias parameters"
                           if table.params_count == "weights" else "trainable parameters")
             + "; FLOPs: torch FlopCounterMode, batch 1, 2 per multiply-add (>= marks a published lower bound)"]
    if has_memory:
        lines.append(f"memory: {inference_memory_method(device)}; the paper's GPU figures include the CUDA context")
    lines += ["", markdown_grid(rows, columns), "", "! = outside 0.5% (params; unless equal at the paper's rounding) "
              "or 2% (FLOPs)", *(["", "Notes:", *notes] if notes else [])]
    return "\n".join(lines)
