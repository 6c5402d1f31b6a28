"""FLOPs and memory, measured rather than estimated: what the benchmark and the model-size tables both call.

* FLOPs (`flops`): `torch.utils.flop_counter.FlopCounterMode`, 2 per multiply-add of convolutions and
  matrix products; of one eval-mode forward (`inference_flops`, the tables) or one training forward +
  backward (`training_flops`, the benchmark's utilisation).
* Peak memory (`peak_tracker`): on CPU a `TorchDispatchMode` sees every aten op and tracks the storages
  created inside it (each once, dropped when freed; kernel-internal scratch not counted); on CUDA the
  allocator's own peak, `torch.cuda.max_memory_allocated`, above what was allocated at the start.
* `inference_memory`: one no-grad forward, input and parameters included (the tables).
* `training_memory`, one forward + backward (the benchmark): `saved`, the bytes autograd holds for
  backward when the forward ends (`SavedTensors`: each storage once; parameters, buffers and the input
  batch left out); `forward_peak` and `peak`, the most bytes alive at once during the forward and during
  the whole step (checkpoint re-runs and gradients included).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

MiB = 2**20


# --------------------------------------------------------------------------- FLOPs
def flops(fn: Callable[[], object]) -> int:
    """FLOPs of what `fn` runs (2 per multiply-add of convolutions and matrix products)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def inference_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward of an input of `input_shape`, on the model's device (meta works)."""
    param = next(model.parameters())
    model.eval()
    with torch.no_grad():
        return flops(lambda: model(torch.randn(input_shape, device=param.device, dtype=param.dtype)))


def training_flops(net: nn.Module, loss: Callable[[], Tensor]) -> int:
    """FLOPs of `loss()` and its backward through `net`; the gradients are dropped after."""
    count = flops(lambda: loss().backward())
    net.zero_grad(set_to_none=True)
    return count


# --------------------------------------------------------------------------- peak memory
class LiveTensorPeak(TorchDispatchMode):
    """Peak bytes of the tensor storages allocated inside the mode that are alive after an aten op (`.peak`)."""

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self._bytes = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, Tensor):
                self._track(t.untyped_storage())
        for key in [key for key, (ref, _) in self._live.items() if ref.expired()]:
            self._bytes -= self._live.pop(key)[1]
        self.peak = max(self.peak, self._bytes)
        return out

    def _track(self, storage) -> None:
        ref = StorageWeakRef(storage)
        known = self._live.get(ref.cdata)
        if known is None or known[0].expired():  # a new storage (possibly where a freed one was)
            self._bytes += storage.nbytes() - (known[1] if known else 0)
            self._live[ref.cdata] = (ref, storage.nbytes())


class CudaPeak:
    """Peak bytes `torch.cuda.max_memory_allocated` reports inside the context, above the allocation at its start."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __enter__(self) -> CudaPeak:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize(self.device)

    @property
    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) - self._base


def peak_tracker(device: str) -> LiveTensorPeak | CudaPeak:
    return CudaPeak(device) if torch.device(device).type == "cuda" else LiveTensorPeak()


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


# --------------------------------------------------------------------------- memory of a forward, of a step
def inference_memory(model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu") -> int:
    """Bytes to infer one input: parameters and buffers plus the peak of the tensors the forward allocates."""
    model = model.to(device).eval()
    state = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    with torch.no_grad(), peak_tracker(device) as tracker:
        model(torch.randn(input_shape, device=device))  # the input counts too
    return state + tracker.peak


def inference_memory_method(device: str = "cpu") -> str:
    """How `inference_memory` measured on `device`, in words."""
    if torch.device(device).type == "cuda":
        return "torch.cuda.max_memory_allocated over a batch-1 no_grad forward (no CUDA context)"
    return ("CPU: peak bytes of live tensors after each aten op of a batch-1 no_grad forward, plus parameter and "
            "buffer bytes")


def training_memory(net: nn.Module, loss: Callable[[], Tensor], inputs: Iterable[Tensor],
                    device: str) -> dict[str, int]:
    """Bytes of `loss()` and its backward through `net` (module doc): `saved`, `forward_peak`, `peak`; the tensors
    of `inputs` (the batch) count as held anyway, like `net`'s parameters and buffers."""
    net.zero_grad(set_to_none=True)
    with peak_tracker(device) as tracker:
        with SavedTensors(exclude=[*net.parameters(), *net.buffers(), *inputs]) as saved:
            out = loss()
        forward_peak = tracker.peak
        out.backward()
    net.zero_grad(set_to_none=True)
    return {"saved": saved.bytes, "forward_peak": forward_peak, "peak": tracker.peak}
