"""Training speed from run histories (HO-ResNet Table 4, Fig. 13): the time to reach an accuracy, and
that time relative to Euler's, one rule for the tables (`cells`) and the figures (`figures.curves`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from odenets.results import get

# HO-ResNet Table 4 / Fig. 13: training accuracy thresholds whose time to reach is compared with Euler's.
SPEED_THRESHOLDS = {"speedup_080": 0.80, "speedup_085": 0.85}


def time_to_accuracy(history: Sequence[dict], threshold: float, key: str = "train/acc") -> float | None:
    """Training seconds (`time/train_s`) until `key` first reaches `threshold`, or None if it never does.

    History entries are per epoch: the epoch's mean accuracy, stamped at the epoch's end with the
    cumulative training time (validation excluded). Within the epoch where the threshold is crossed,
    accuracy is taken as linear in time between the previous epoch's end and this one's; before the
    first epoch the point is (0 s, accuracy 0).
    """
    prev_t, prev_acc = 0.0, 0.0
    for entry in history:
        t, acc = entry.get("time/train_s"), entry.get(key)
        if t is None or acc is None or not (math.isfinite(t) and math.isfinite(acc)):
            continue
        if acc >= threshold:
            return prev_t + (threshold - prev_acc) / (acc - prev_acc) * (t - prev_t)
        prev_t, prev_acc = t, acc
    return None


def scheme_key(config: dict) -> str:
    """The conf/scheme name of a run: `rk8_adaptive` for RK-8 with a learned step."""
    name = get(config, "scheme.name")
    return f"{name}_adaptive" if name == "rk8" and get(config, "scheme.learn_h") else name


def speedup_over_euler(seconds: dict[str, tuple[str, float | None]]) -> dict[str, float | None]:
    """label -> (scheme, seconds to a threshold) to label -> Euler's seconds over these (HO-ResNet Table 4):
    the one rule tables and figures use; Euler is the entry whose scheme is `euler`."""
    euler = next((t for scheme, t in seconds.values() if scheme == "euler"), None)
    return {label: euler / t if t and euler else None for label, (_, t) in seconds.items()}
