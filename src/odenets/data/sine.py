"""The sine-wave generation task (HeunNet Sec. 6.3, Fig. 7-8).

The wave y(t) = sin(t) is sampled every `dt` on [0, length_pi * pi] (16 pi: eight periods) and
split in time: the first `train_fraction` of the samples train, the rest test.

- Training: next-value prediction. An input is `window` consecutive samples, its target the
  sample that follows; every window whose target lies in the training part is used.
- `test/loss`: the mean squared error of the same one-step prediction for the targets in the test part
  (true inputs; `train/loss` likewise on the training part).
- With `val_fraction`, the last ceil(val_fraction x n) training windows (their targets the latest samples of
  the training part, just before the test part) are held out, in time as the test part is: `val/loss` is the
  one-step error there. Random windows would not do: neighbours share all but one value. The free run
  stays a test metric.
- Generation: from the seed window (the `window` samples just before the test part) the model
  runs free, each prediction appended to its input window, for `horizon` steps (default: to the
  end of the wave; a longer horizon continues the true sine beyond it).
- Accuracy, which the paper reports without a definition, is ours: the fraction of generated
  points within `tolerance` of the true wave, mean_k [ |y^_k - sin(t_k)| <= tolerance ], with
  the tolerance in units of the wave's amplitude (1). `gen_mse` is the mean squared error of
  the same points.
"""

from __future__ import annotations

import math

import torch

from odenets.allowed import integer, number, optional
from odenets.data.base import Split, TensorDataModule
from odenets.errors import ConfigError


class SineDataModule(TensorDataModule):
    task = "forecast"
    ALLOWED = {"dt": number(lambda v: v > 0, "a number > 0"), "window": integer(1, text="an integer >= 1 (samples)"),
               "length_pi": number(lambda v: v > 0, "a number > 0"),
               "train_fraction": number(lambda v: 0 < v < 1, "a number in (0, 1)"),
               "tolerance": number(lambda v: v > 0, "a number > 0"), "horizon": optional(integer(1))}

    def __init__(self, name: str = "sine", length_pi: float = 16.0, dt: float = 0.1, window: int = 50,
                 horizon: int | None = None, train_fraction: float = 0.5, tolerance: float = 0.1, **kwargs) -> None:
        super().__init__(name, **kwargs)
        self.dt, self.window, self.tolerance = float(dt), int(window), float(tolerance)
        self.n_samples = math.floor(length_pi * math.pi / dt + 1e-9) + 1
        self.n_train = round(train_fraction * self.n_samples)
        if not 1 <= self.window < self.n_train < self.n_samples:
            raise ConfigError(f"dataset.window={window}: need 1 <= window < {self.n_train} training samples "
                              f"(of {self.n_samples} at dt={dt}); lower the window or raise train_fraction")
        self.horizon = self.n_samples - self.n_train if horizon is None else int(horizon)

    def times(self, start: int, stop: int) -> torch.Tensor:
        return torch.arange(start, stop, dtype=torch.float64) * self.dt

    def wave(self, start: int, stop: int) -> torch.Tensor:
        """Samples start..stop-1 of the wave, float32."""
        return torch.sin(self.times(start, stop)).float()

    def _windows(self, first_target: int, stop: int) -> Split:
        """Windows of `window` samples whose next-value targets are samples first_target..stop-1."""
        values = self.wave(first_target - self.window, stop)
        x = values.unfold(0, self.window, 1)[:-1]
        return Split(x.contiguous(), values[self.window:])

    def load(self) -> tuple[Split, Split]:
        return self._windows(self.window, self.n_train), self._windows(self.n_train, self.n_samples)

    def validation_indices(self, train: Split) -> torch.Tensor:
        """The last ceil(val_fraction x n) windows in time (see the module docstring)."""
        held = math.ceil(self.val_fraction * len(train) - 1e-9)
        if not 1 <= held < len(train):
            raise ConfigError(f"dataset.val_fraction={self.val_fraction} holds out {held} of {len(train)} training "
                              f"windows; at least one must remain on each side")
        return torch.arange(len(train) - held, len(train))

    def task_kwargs(self) -> dict:
        """The free run: seed window, true continuation, their times, and the accuracy tolerance."""
        start, stop = self.n_train - self.window, self.n_train + self.horizon
        return {"seed_window": self.wave(start, self.n_train), "target": self.wave(self.n_train, stop),
                "times": self.times(start, stop).float(), "tolerance": self.tolerance}
