"""Performance measurements behind `scripts/bench.py` (issue 6): every figure a ratio taken side by side.

Absolute times on a shared machine drift, so each section runs its candidates in one process,
round-robin (`interleave`: a round times every candidate once, the first one rotating), and
reports medians over rounds; a ratio is the median of the per-round ratios, so drift slower than
a round cancels. Models, data modules, optimisers and Trainers are built from the config
`python train.py <overrides>` would run with (`config.compose`), on random data of CIFAR's format.

Memory is measured, not estimated, over one training forward + backward (`step_memory`):
* `saved`: bytes autograd holds for backward when the forward ends (`saved_tensors_hooks`, each
  storage once; parameters, buffers and the input batch left out);
* `forward_peak`, `peak`: the most bytes alive at once during the forward and during the whole
  step (checkpoint re-runs and gradients included). On CPU, of the tensor storages allocated in
  the step, tracked after every aten op by a `TorchDispatchMode` (kernel scratch excluded); on
  CUDA, `torch.cuda.max_memory_allocated` above what was allocated before.
The memory ratios compare `peak`.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from odenets.config import compose
from odenets.data import build_datamodule
from odenets.data.base import Split
from odenets.errors import ConfigError
from odenets.models import build_model
from odenets.perf.memory import peak_tracker
from odenets.reporting.stats import markdown_grid
from odenets.run.training import build

MiB = 2**20
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


@dataclass(frozen=True)
class Settings:
    """Sizes of one benchmark run: `QUICK` to develop the benchmark, `FULL` for the table."""

    width: int  # HO-ResNet channels
    image: int  # side of the square random images the models train on
    batch: int  # training batch (overhead, schemes, scaling, utilisation)
    rounds: int  # interleaved repeats
    overhead_steps: int  # paired Lightning / plain steps after the warm-up
    input_images: int  # random CIFAR-sized uint8 training set of the input section
    input_batches: int  # batches each input pipeline delivers per round
    matmul: int  # side of the square matrices of the peak-FLOP/s reference
    warmup: int = 2  # untimed calls of every candidate first
    depths: tuple[int, ...] = (30, 58)
    scaling_depths: tuple[int, ...] = (10, 26, 42, 58, 74, 86)
    input_batch: int = 128


QUICK = Settings(width=16, image=16, batch=8, rounds=3, overhead_steps=8, input_images=10_000, input_batches=8,
                 matmul=1024, warmup=1)
FULL = Settings(width=64, image=32, batch=32, rounds=5, overhead_steps=20, input_images=50_000, input_batches=40,
                matmul=2048)


# --------------------------------------------------------------------------- device and clock
@dataclass(frozen=True)
class Machine:
    """Where to measure, and with which clock.

    `wall` (time.perf_counter) is what a user waits for. `cpu` (time.process_time) counts only the
    CPU time of this process, so time taken by other processes on a shared machine drops out; use
    it with one intra-op thread (`--threads 1`: several threads also count their spin-waits). The
    input section always uses the wall clock: DataLoader workers are other processes.
    """

    device: str = "cpu"
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in ("wall", "cpu"):
            raise ConfigError(f"clock={self.clock!r}; allowed: wall, cpu")

    def now(self) -> float:
        """Seconds on this machine's clock, once the device has finished its queued work."""
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() if self.clock == "wall" else time.process_time()

    def environment(self, rounds: int) -> dict:
        return {"device": self.device, "device_name": self.device_name(), "clock": self.clock,
                "torch": torch.__version__, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                "rounds": rounds}

    def device_name(self) -> str:
        if torch.device(self.device).type == "cuda":
            return torch.cuda.get_device_name(self.device)
        cpuinfo = Path("/proc/cpuinfo")
        models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                  if line.startswith("model name")] if cpuinfo.is_file() else []
        return models[0] if models else platform.processor() or platform.machine()


# --------------------------------------------------------------------------- timing
@dataclass
class Timings:
    """Seconds per call of each candidate, one entry per round."""

    seconds: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, baseline: str) -> float:
        """Median over rounds of this round's time of `name` over that of `baseline`."""
        return statistics.median(a / b for a, b in zip(self.seconds[name], self.seconds[baseline], strict=True))


def interleave(candidates: dict[str, Callable[[], object]], rounds: int, number: int = 1, warmup: int = 1,
               machine: Machine = Machine(), rotate: bool = True) -> Timings:
    """Time every candidate (`number` calls in a row) once per round, the first one rotating unless not `rotate`.

    Hand-rolled rather than `torch.utils.benchmark.Timer`, whose `timeit` runs two warm-up calls
    per measurement: three times the cost for multi-second training steps.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    names, timings = list(candidates), Timings({name: [] for name in candidates})
    for r in range(rounds):
        first = r % len(names) if rotate else 0
        for name in names[first:] + names[:first]:
            start = machine.now()
            for _ in range(number):
                candidates[name]()
            timings.seconds[name].append((machine.now() - start) / number)
    return timings


# --------------------------------------------------------------------------- memory
class SavedTensors:
    """Bytes of the distinct storages autograd saves for backward inside the context (`.bytes`), leaving
    out those of `exclude` (tensors that exist anyway: parameters, buffers, the input batch)."""

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._held = {t.untyped_storage().data_ptr() for t in exclude}
        self._storages: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in self._held:
            self._storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def __enter__(self) -> SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


# --------------------------------------------------------------------------- a plain training step
class TrainStep:
    """One plain PyTorch training step on a fixed batch in memory: zero_grad, forward, cross-entropy, backward, step."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
        self.net, self.optimizer, self.x, self.y = net, optimizer, x, y

    def loss(self) -> Tensor:
        return F.cross_entropy(self.net(self.x), self.y)

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()


def train_step(cfg: DictConfig, s: Settings, device: str, net: nn.Module | None = None) -> TrainStep:
    """The step of `cfg`'s model (or `net`) and optimiser on a random batch of `s.batch` images."""
    torch.manual_seed(cfg.seed)
    net = (net or build_model(cfg.model, cfg.budget.width_scale)).to(device).train()
    x = torch.randn(s.batch, int(cfg.dataset.in_channels), s.image, s.image, device=device)
    y = torch.randint(0, int(cfg.dataset.num_classes), (s.batch,), device=device)
    return TrainStep(net, instantiate(cfg.optimizer)(params=net.parameters()), x, y)


def step_memory(step: TrainStep, device: str) -> dict[str, int]:
    """Bytes of one forward + backward of `step` (module doc): `saved`, `forward_peak`, `peak`."""
    step.net.zero_grad(set_to_none=True)
    with peak_tracker(device) as tracker:
        with SavedTensors(exclude=[*step.net.parameters(), *step.net.buffers(), step.x]) as saved:
            loss = step.loss()
        forward_peak = tracker.peak
        loss.backward()
    step.net.zero_grad(set_to_none=True)
    return {"saved": saved.bytes, "forward_peak": forward_peak, "peak": tracker.peak}


def step_flops(step: TrainStep) -> int:
    """FLOPs of one forward + backward (`torch.utils.flop_counter`: convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        step.loss().backward()
    step.net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def bench_config(overrides: list[str], s: Settings, device: str, output_dir: str | Path | None = None) -> DictConfig:
    """`config.compose` of HO-ResNet on cifar10 at the benchmark's width and batch, on `device`'s trainer."""
    trainer = "gpu" if torch.device(device).type == "cuda" else "cpu"
    return compose(["dataset=cifar10", f"trainer={trainer}", f"model.width={s.width}",
                    f"dataset.batch_size={s.batch}", *overrides], output_dir=output_dir)


def random_split(n: int, image: int, channels: int = 3, classes: int = 10, seed: int = 0) -> Split:
    """`n` random uint8 images with labels, the format the vision data modules keep in memory."""
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, channels, image, image), dtype=torch.uint8, generator=g),
                 torch.randint(0, classes, (n,), generator=g))


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
        memory = {name: step_memory(step, m.device) for name, step in steps.items()}
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
    flops, matmul_flops = step_flops(step), 2 * s.matmul**3
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
        memory = {mode: step_memory(step, m.device) for mode, step in steps.items()}
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


# --------------------------------------------------------------------------- report
def _check(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def format_markdown(results: dict) -> str:
    """The headline figures against their targets, then the per-scheme and per-recurrent-model tables."""
    meta = results["meta"]
    quick = " (quick)" if meta["quick"] else ""
    head = (f"torch {meta['torch']}, {meta['device']} ({meta['device_name']}, {meta['threads']} threads), "
            f"{meta['clock']} clock, {meta['rounds']} interleaved rounds, medians{quick}")
    figures = []  # (figure, measured, target, met)
    if "overhead" in results:
        r = results["overhead"]
        figures.append(("overhead: Lightning step / plain step (RK4-58)", f"{r['ratio']:.3f}", f"≤ {r['target']}",
                        _check(r["ok"])))
    for row in results.get("schemes", {}).get("rows", []):
        for kind in ("time", "memory"):
            if "skipped" not in row and row[f"{kind}_target"] is not None:
                met = row[f"{kind}_ratio"] <= row[f"{kind}_target"]
                figures.append((f"{kind}: {row['scheme']} / euler, depth {row['depth']}", f"{row[f'{kind}_ratio']:.3f}",
                                f"≤ {row[f'{kind}_target']}", _check(met)))
    if "input" in results:
        r = results["input"]
        figures.append((f"input: tensor pipeline / {r['baseline']} (images/s)", f"{r['ratio']:.1f}",
                        f"≥ {r['target']}", _check(r["ok"])))
    if "scaling" in results:
        r = results["scaling"]
        figures.append((f"scaling: R² of step time vs depth {r['depths'][0]}–{r['depths'][-1]}", f"{r['r2']:.4f}",
                        f"≥ {r['target']}", _check(r["ok"])))
    if "utilisation" in results:
        figures.append(("utilisation: step FLOP/s / matmul FLOP/s", f"{results['utilisation']['ratio']:.3f}", "", ""))
    for row in results.get("recurrent", {}).get("rows", []):
        if row["target"] is not None:
            figures.append((f"recurrent, {row['shape']}: {row['model']} / nn.{row['baseline'].upper()}",
                            f"{row['ratio']:.2f}", f"≤ {row['target']}", _check(row["ok"])))
    parts = [head, "", markdown_grid(figures, ["figure", "measured", "target", "met"])]
    if "recurrent" in results:
        rows = [(f"{r['shape']} ({r['batch']}x{r['steps']}x{r['features']}, {r['hidden']})", r["model"],
                 f"{r['step_s']:.4f}", f"{r['ratio']:.2f} (nn.{r['baseline'].upper()})")
                for r in results["recurrent"]["rows"]]
        parts += ["", markdown_grid(rows, ["shape (batch x steps x features, hidden)", "model", "step s",
                                           "/ torch baseline"])]
    if "schemes" in results:
        rows = [(r["depth"], r["scheme"], "(no such depth)", "", "", "", "") if "skipped" in r else
                (r["depth"], r["scheme"], f"{r['step_s']:.3f}", f"{r['time_ratio']:.3f}", f"{r['saved_mib']:.1f}",
                 f"{r['peak_mib']:.1f}", f"{r['memory_ratio']:.3f}") for r in results["schemes"]["rows"]]
        parts += ["", markdown_grid(rows, ["depth", "scheme", "step s", "time / euler", "saved MiB", "peak MiB",
                                           "memory / euler"])]
    if "adjoint" in results:
        rows = [(r["method"], r["mode"], f"{r['step_s']:.4f}", f"{r['time_ratio']:.2f}", f"{r['saved_mib']:.1f}",
                 f"{r['peak_mib']:.1f}", f"{r['memory_ratio']:.2f}") for r in results["adjoint"]["rows"]]
        parts += ["", markdown_grid(rows, ["ODE-Net method", "gradient", "step s", "time / backprop", "saved MiB",
                                           "peak MiB", "memory / backprop"])]
    return "\n".join(parts)
