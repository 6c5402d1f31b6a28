"""The benchmark's sections (`scripts/bench.py --sections`): each one a set of candidates timed side by side.

`overhead`: our Lightning step over a plain loop; `schemes`: step time and memory of every scheme
over Euler's; `input`: the tensor data pipeline over torchvision's; `scaling`: step time against depth;
`utilisation`: achieved over peak FLOP/s; `recurrent`: the ODE-stepped cells over torch's fused LSTM
and GRU; `adjoint`: ODE-Net's adjoint over backpropagation through the solver. Timing is the
harness's (`odenets.perf.harness`), memory and FLOPs are `odenets.perf.measure`'s; the memory ratios
compare the step's `peak`.
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from odenets.config import compose
from odenets.data import build_datamodule
from odenets.errors import ConfigError
from odenets.models import build_model
from odenets.perf.harness import (
    FULL,
    QUICK,
    Machine,
    Settings,
    Timings,
    bench_config,
    interleave,
    random_split,
    train_step,
)
from odenets.perf.measure import MiB, training_flops, training_memory
from odenets.run.training import build
from odenets.run.validation import validate

SECTIONS = ("overhead", "schemes", "input", "scaling", "utilisation", "recurrent", "adjoint")
SCHEME_VARIANTS = {  # name -> overrides; ratios are to euler at the same depth
    "euler": ["scheme=euler"],
    "midpoint": ["scheme=midpoint"],
    "rk4": ["scheme=rk4"],
    "rk8": ["scheme=rk8"],
    "rk8_adaptive": ["scheme=rk8_adaptive"],
    "rk8+checkpoint": ["scheme=rk8", "checkpoint=true"],
}
TARGETS = {
    "overhead": 1.05,  # Lightning step / plain step, at most
    "time": {"midpoint": 1.05, "rk4": 1.05, "rk8": 1.10},  # step time / euler's, at most
    "memory": {"rk4": 1.15, "rk8": 1.6, "rk8+checkpoint": 0.5},  # peak step memory / euler's, at most
    "input": 10.0,  # our images/s / torchvision's best, at least
    "scaling_r2": 0.99,  # linear fit of step time vs depth, at least
    # recurrent training step / torch's fused LSTM (GRU cell: / nn.GRU) on the same input, at most (issue 12)
    "recurrent": {"euler": 1.3, "heun": 1.8, "heun_ext": 1.8, "rk4": 4.0, "phased_lstm": 1.5, "heun_gru": 2.0},
    "recurrent_small": {"heun": 3.0},  # the sine shape, where per-step overhead dominates
}
# Shapes of the recurrent section: (name, batch, steps, features, hidden, classes; 0 = next-value regression)
RECURRENT_SHAPES = (("mnist_rows", 128, 28, 28, 128, 10), ("ecg_beats", 128, 187, 1, 128, 5),
                    ("sine", 16, 50, 1, 64, 0))
RECURRENT_MODELS = {  # name -> (registered model, arguments); each is timed against its torch baseline
    "lstm": ("lstm", {}), "gru": ("gru", {}),
    "euler": ("ode_rnn", {"scheme": "euler"}), "heun": ("ode_rnn", {"scheme": "heun"}),
    "heun_ext": ("ode_rnn", {"scheme": {"name": "heun_ext", "alpha": 0.8}}), "rk4": ("ode_rnn", {"scheme": "rk4"}),
    "heun_unfused": ("ode_rnn", {"scheme": "heun", "fused": False}),
    "heun_gru": ("ode_rnn", {"scheme": "heun", "cell": "gru"}), "phased_lstm": ("phased_lstm", {}),
}


# --------------------------------------------------------------------------- overhead
class PairedSteps(L.Callback):
    """Times each Lightning training step after `warmup`, and runs and times one `plain` step right after it.

    A Lightning step is the time between the ends of this hook: the loop, data fetch, transfer and
    batch transform, training step, backward, optimiser, logging and every other callback.
    """

    def __init__(self, plain: Callable[[], None], warmup: int, machine: Machine) -> None:
        self.plain, self.warmup, self.machine = plain, warmup, machine
        self.timings = Timings({"lightning": [], "plain": []})
        self._end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = self.machine.now()
        if batch_idx > self.warmup:
            self.timings.seconds["lightning"].append(now - self._end)
            start = self.machine.now()
            self.plain()
            self.timings.seconds["plain"].append(self.machine.now() - start)
        self._end = self.machine.now()


def bench_overhead(s: Settings, m: Machine = Machine()) -> dict:
    """Time per training step through our Trainer / task / data module over a plain loop, HO-ResNet-58 RK4.

    Steps are paired (one Lightning step, then one plain step of an identical copy of the net on a
    batch already transformed), so each pair sees the same machine; the ratio is the median over pairs.
    The data module gets random uint8 images in place of CIFAR files (`prepare_data` has nothing to fetch).
    """
    steps = s.warmup + 1 + s.overhead_steps
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = bench_config(["scheme=rk4", "depth=58", f"+trainer.max_steps={steps}",
                            "trainer.enable_progress_bar=false"], s, m.device, output_dir=run_dir)
        validate(cfg)
        datamodule, task, trainer, _ = build(cfg, Path(run_dir))
        datamodule.train = random_split((steps + 1) * s.batch, s.image)
        datamodule.test = random_split(s.batch, s.image, seed=1)
        datamodule.prepare_data = lambda: None
        x, y = next(iter(datamodule.train_dataloader()))
        plain = train_step(cfg, s, m.device, net=copy.deepcopy(task.net))
        plain.x, plain.y = datamodule.transform(x.to(m.device), train=True), y.to(m.device)
        for _ in range(s.warmup):
            plain()
        paired = PairedSteps(plain, s.warmup, m)
        trainer.callbacks.append(paired)
        trainer.fit(task, datamodule=datamodule)
    t = paired.timings
    ratio = t.ratio("lightning", "plain")
    return {"env": m.environment(len(t.seconds["plain"])),
            "config": {"scheme": "rk4", "depth": 58, "width": s.width, "image": s.image, "batch": s.batch},
            "lightning_step_s": t.median("lightning"), "plain_step_s": t.median("plain"), "rounds_s": t.seconds,
            "ratio": ratio, "target": TARGETS["overhead"], "ok": ratio <= TARGETS["overhead"]}


# --------------------------------------------------------------------------- schemes
def _scheme_row(depth: int, name: str, timings: Timings, memory: dict[str, dict[str, int]]) -> dict:
    time_ratio = timings.ratio(name, "euler")
    memory_ratio = memory[name]["peak"] / memory["euler"]["peak"]
    time_target, memory_target = TARGETS["time"].get(name), TARGETS["memory"].get(name)
    return {"depth": depth, "scheme": name, "step_s": timings.median(name), "rounds_s": timings.seconds[name],
            "time_ratio": time_ratio, "saved_mib": memory[name]["saved"] / MiB,
            "forward_peak_mib": memory[name]["forward_peak"] / MiB, "peak_mib": memory[name]["peak"] / MiB,
            "memory_ratio": memory_ratio, "saved_ratio": memory[name]["saved"] / memory["euler"]["saved"],
            "time_target": time_target, "memory_target": memory_target,
            "ok": (time_target is None or time_ratio <= time_target)
            and (memory_target is None or memory_ratio <= memory_target)}


def bench_schemes(s: Settings, m: Machine = Machine()) -> dict:
    """Step time and step memory of every scheme variant relative to euler's, at each depth of `s.depths`.

    A variant without that depth (rk4 has 8 layers per block, so no depth 30) gets a row with `skipped`.
    """
    rows = []
    for depth in s.depths:
        steps, skipped = {}, {}
        for name, overrides in SCHEME_VARIANTS.items():
            try:
                steps[name] = train_step(bench_config([*overrides, f"depth={depth}"], s, m.device), s, m.device)
            except ConfigError as e:
                skipped[name] = str(e)
        memory = {name: training_memory(step.net, step.loss, [step.x], m.device) for name, step in steps.items()}
        timings = interleave(steps, s.rounds, warmup=s.warmup, machine=m)
        rows += [{"depth": depth, "scheme": name, "skipped": skipped[name]} if name in skipped
                 else _scheme_row(depth, name, timings, memory) for name in SCHEME_VARIANTS]
    return {"env": m.environment(s.rounds),
            "config": {"width": s.width, "image": s.image, "batch": s.batch, "depths": list(s.depths)}, "rows": rows}


# --------------------------------------------------------------------------- input pipeline
def _forever(batches: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from batches()


def bench_input(s: Settings, m: Machine = Machine()) -> dict:
    """Training images/s of the tensor pipeline (index, crop, flip, normalise on the device) over torchvision's
    DataLoader with PIL transforms (pad-4 random crop, flip, normalise), without and with worker processes.

    Always on the wall clock: the workers are other processes.
    """
    m = replace(m, clock="wall")
    split = random_split(s.input_images, 32)
    base = ["dataset=cifar10", f"dataset.batch_size={s.input_batch}"]
    tensor_dm = build_datamodule(compose(base).dataset)
    tensor_dm.train = split
    tensor_batches = _forever(tensor_dm.train_dataloader)

    def tensor_pipeline() -> tuple[Tensor, Tensor]:
        x, y = next(tensor_batches)
        return tensor_dm.transform(x.to(m.device), train=True), y.to(m.device)

    def torchvision_pipeline(workers: int) -> Callable[[], list[Tensor]]:
        cfg = compose([*base, "dataset.pipeline=torchvision", f"dataset.num_workers={workers}"])
        dm = build_datamodule(cfg.dataset)
        dm.train = split
        batches = _forever(lambda loader=dm.train_dataloader(): iter(loader))
        return lambda: [t.to(m.device) for t in next(batches)]

    # A fixed order: workers keep preparing the batches they prefetch (two each) after their turn, so
    # they go last, just before the in-process loader, and start each turn with those batches ready
    # (flattering them).
    workers = os.cpu_count() or 1
    candidates = {"torchvision_0_workers": torchvision_pipeline(0), "tensor": tensor_pipeline}
    if workers > 1:
        candidates[f"torchvision_{workers}_workers"] = torchvision_pipeline(workers)
    t = interleave(candidates, s.rounds, number=s.input_batches, warmup=s.warmup, machine=m, rotate=False)
    images_per_s = {name: s.input_batch / t.median(name) for name in candidates}
    best = max((name for name in candidates if name != "tensor"), key=images_per_s.get)
    ratio = t.ratio(best, "tensor")
    return {"env": m.environment(s.rounds),
            "config": {"images": s.input_images, "batch": s.input_batch, "batches_per_round": s.input_batches},
            "images_per_s": images_per_s, "rounds_s": t.seconds, "baseline": best, "ratio": ratio,
            "target": TARGETS["input"], "ok": ratio >= TARGETS["input"]}


# --------------------------------------------------------------------------- scaling and utilisation
def linear_fit(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Least-squares line y = slope * x + intercept and its R²."""
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    intercept = my - slope * mx
    residual = sum((b - slope * a - intercept) ** 2 for a, b in zip(x, y, strict=True))
    total = sum((b - my) ** 2 for b in y)
    return slope, intercept, 1 - residual / total if total else 1.0


def bench_scaling(s: Settings, m: Machine = Machine(), scheme: str = "euler") -> dict:
    """Step time at every depth of `s.scaling_depths` (interleaved) and the R² of a straight line through them."""
    steps = {str(d): train_step(bench_config([f"scheme={scheme}", f"depth={d}"], s, m.device), s, m.device)
             for d in s.scaling_depths}
    t = interleave(steps, s.rounds, warmup=s.warmup, machine=m)
    seconds = [t.median(str(d)) for d in s.scaling_depths]
    slope, intercept, r2 = linear_fit(list(s.scaling_depths), seconds)
    return {"env": m.environment(s.rounds),
            "config": {"scheme": scheme, "width": s.width, "image": s.image, "batch": s.batch},
            "depths": list(s.scaling_depths), "step_s": seconds, "rounds_s": t.seconds, "slope_s_per_layer": slope,
            "intercept_s": intercept, "r2": r2, "target": TARGETS["scaling_r2"], "ok": r2 >= TARGETS["scaling_r2"]}


def bench_utilisation(s: Settings, m: Machine = Machine()) -> dict:
    """Achieved FLOP/s of a HO-ResNet-58 RK4 training step over the FLOP/s of a large matmul, interleaved."""
    step = train_step(bench_config(["scheme=rk4", "depth=58"], s, m.device), s, m.device)
    flops, matmul_flops = training_flops(step.net, step.loss), 2 * s.matmul**3
    a, b = torch.randn(2, s.matmul, s.matmul, device=m.device)
    t = interleave({"step": step, "matmul": lambda: a @ b}, s.rounds, warmup=s.warmup, machine=m)
    ratio = statistics.median(flops / st / (matmul_flops / mt)
                              for st, mt in zip(t.seconds["step"], t.seconds["matmul"], strict=True))
    return {"env": m.environment(s.rounds),
            "config": {"scheme": "rk4", "depth": 58, "width": s.width, "image": s.image, "batch": s.batch,
                       "matmul": s.matmul},
            "step_flops": flops, "step_s": t.median("step"), "step_flops_per_s": flops / t.median("step"),
            "matmul_flops_per_s": matmul_flops / t.median("matmul"), "rounds_s": t.seconds, "ratio": ratio}


def recurrent_step(name: str, batch: int, steps: int, features: int, hidden: int, classes: int,
                   device: str) -> Callable[[], None]:
    """One training step (forward, loss, backward, Adam) of a recurrent model of `RECURRENT_MODELS` on random
    sequences: classification of the last state, or next-value regression when `classes` is 0."""
    model, kwargs = RECURRENT_MODELS[name]
    torch.manual_seed(0)
    net = build_model({"name": model, "hidden_size": hidden, "in_channels": features,
                       "num_outputs": classes or 1, **kwargs}).to(device)
    x = torch.randn(batch, steps, features, device=device)
    y = torch.randint(0, classes, (batch,), device=device) if classes else torch.randn(batch, 1, device=device)
    loss_fn = F.cross_entropy if classes else F.mse_loss
    optimizer = torch.optim.Adam(net.parameters())

    def step() -> None:
        loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def bench_recurrent(s: Settings, m: Machine = Machine()) -> dict:
    """Training-step time of every ODE-stepped cell relative to torch's fused LSTM (the GRU cell: nn.GRU) on
    the same input, per shape: MNIST rows, 187-sample ECG beats, and the small sine task."""
    rows = []
    for shape, batch, steps, features, hidden, classes in RECURRENT_SHAPES:
        if s == QUICK:
            batch, steps = max(8, batch // 8), max(8, steps // 4)
        candidates = {name: recurrent_step(name, batch, steps, features, hidden, classes, m.device)
                      for name in RECURRENT_MODELS}
        t = interleave(candidates, s.rounds, warmup=s.warmup, machine=m)
        targets = TARGETS["recurrent_small"] if shape == "sine" else TARGETS["recurrent"]
        for name in RECURRENT_MODELS:
            baseline = "gru" if name.endswith("gru") else "lstm"
            ratio = t.ratio(name, baseline)
            target = targets.get(name)
            rows.append({"shape": shape, "batch": batch, "steps": steps, "features": features, "hidden": hidden,
                         "model": name, "baseline": baseline, "step_s": t.median(name), "ratio": ratio,
                         "target": target, "ok": None if target is None else ratio <= target})
    return {"env": m.environment(s.rounds), "rows": rows}


# --------------------------------------------------------------------------- adjoint
ADJOINT_MODEL = ("experiment=rkcnn/mnist", "model=odenet", "model.channels=[32]")  # RKCNN Table 2's ODE-Net
ADJOINT_METHODS = ("explicit_adams", "dopri5")


def bench_adjoint(s: Settings, m: Machine = Machine()) -> dict:
    """ODE-Net trained by backpropagating through torchdiffeq's solver and by its adjoint (`model.adjoint`),
    at the same method and tolerance: step time and step memory, adjoint / backpropagation, on 28x28 images."""
    trainer = "gpu" if torch.device(m.device).type == "cuda" else "cpu"
    s = replace(s, image=28)
    rows = []
    for method in ADJOINT_METHODS:
        configs = {mode: compose([*ADJOINT_MODEL, f"model.method={method}", f"model.adjoint={mode == 'adjoint'}",
                                  f"trainer={trainer}"]) for mode in ("backprop", "adjoint")}
        steps = {mode: train_step(cfg, s, m.device) for mode, cfg in configs.items()}
        memory = {mode: training_memory(step.net, step.loss, [step.x], m.device) for mode, step in steps.items()}
        t = interleave(steps, s.rounds, warmup=s.warmup, machine=m)
        rows += [{"method": method, "mode": mode, "tol": float(configs[mode].model.tol), "step_s": t.median(mode),
                  "time_ratio": t.ratio(mode, "backprop"), "saved_mib": memory[mode]["saved"] / MiB,
                  "peak_mib": memory[mode]["peak"] / MiB,
                  "memory_ratio": memory[mode]["peak"] / memory["backprop"]["peak"]} for mode in steps]
    return {"env": m.environment(s.rounds), "config": {"model": list(ADJOINT_MODEL), "image": s.image,
                                                        "batch": s.batch}, "rows": rows}


BENCHMARKS: dict[str, Callable[[Settings, Machine], dict]] = {
    "overhead": bench_overhead, "schemes": bench_schemes, "input": bench_input, "scaling": bench_scaling,
    "utilisation": bench_utilisation, "recurrent": bench_recurrent, "adjoint": bench_adjoint,
}


def run(sections=SECTIONS, settings: Settings = FULL, machine: Machine = Machine(),
        on_section: Callable[[dict], None] | None = None, results: dict | None = None) -> dict:
    """The chosen sections' results, keyed by section, plus `meta` (when, where, with which sizes).

    Sections already in `results` (an earlier run's) are kept unless measured again; `on_section` gets the
    results after every section, so a killed run keeps what it had measured."""
    results = dict(results or {})
    results["meta"] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": settings == QUICK,
                       "settings": asdict(settings), **machine.environment(settings.rounds)}
    for name in sections:
        results[name] = {**BENCHMARKS[name](settings, machine), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if on_section is not None:
            on_section(results)
    return results
