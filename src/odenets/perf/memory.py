"""Measured memory: the peak bytes of live tensors while some code runs.

On CPU a `TorchDispatchMode` sees every aten op and tracks the storages created inside it (each
once, dropped when freed): kernel-internal scratch is not counted. On CUDA the allocator's own
peak, `torch.cuda.max_memory_allocated`, above what was allocated at the start.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
