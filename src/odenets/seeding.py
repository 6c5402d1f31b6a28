"""Independent random streams per seed: initialisation, data order and augmentation.

A run's `seed` is never used as a generator seed itself. Each use draws from its own stream,
keyed by (seed, purpose, counters...) through NumPy's `SeedSequence`, whose outputs for distinct
keys are independent (it hashes the whole key): the order of epoch e under seed s shares nothing
with the order of any epoch under seed s + 1 (with `manual_seed(seed + epoch)` they would be
shifted copies), and augmentation draws for (seed, epoch, rank, batch) are a function of those
alone, so a run resumed mid-epoch repeats them exactly without saving generator state.

The validation split (`dataset.val_fraction`) is drawn from the `validation` stream of `SPLIT_SEED`, never
of the run's seed: every seed and every model holds out the same samples, so arms compare on one split.
"""

from __future__ import annotations

import numpy as np
import torch

PURPOSES = {"init": 0, "order": 1, "augment": 2, "validation": 3}
SPLIT_SEED = 0  # the validation split's seed: fixed, the same for every run


def derive_seed(seed: int, purpose: str, *counters: int) -> int:
    """A 63-bit seed for `purpose` (init, order, augment, validation) at `counters` (e.g. epoch, rank, batch)."""
    state = np.random.SeedSequence([int(seed), PURPOSES[purpose], *map(int, counters)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generator(seed: int, purpose: str, *counters: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on `device` seeded from the (seed, purpose, counters) stream."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose, *counters))
