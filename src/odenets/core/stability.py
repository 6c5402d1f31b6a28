"""Linear stability of an explicit Runge-Kutta step, read from its tableau (Hairer & Wanner, *Solving ODEs II*,
Sec. IV.2).

On the test equation y' = lambda y a step of size h multiplies y by R(z), z = h lambda, the stability function

    R(z) = 1 + z b^T (I - z A)^{-1} 1.

For an explicit tableau I - z A is unit lower-triangular, so the solve is forward substitution over the stages,
Y_i = 1 + z sum_{j<i} a_ij Y_j and R = 1 + z sum_i b_i Y_i: the step itself applied to y' = lambda y, y_0 = 1,
evaluated with numpy for a whole array of z at once. The stability region is {z : |R(z)| <= 1}; a step of a
linearised field is stable where every h lambda of its Jacobian lies inside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 1e-12  # |R| <= 1 + this counts as inside: z = 0 and the region's boundary are inside


def stability_function(A: Sequence[Sequence[float]], b: Sequence[float], z: np.ndarray | complex) -> np.ndarray:
    """R(z) of the explicit tableau (A, b), elementwise over `z` (any shape, real or complex)."""
    A, b = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
    if A.shape != (len(b), len(b)) or np.any(np.triu(A) != 0):
        raise ValueError(f"need a strictly lower-triangular {len(b)}x{len(b)} A (an explicit scheme), got {A.shape}")
    z = np.asarray(z, dtype=complex)
    stages: list[np.ndarray] = []
    for i, row in enumerate(A):
        stages.append(1 + z * sum((row[j] * stages[j] for j in range(i) if row[j] != 0), np.zeros_like(z)))
    return 1 + z * sum((bi * Y for bi, Y in zip(b, stages, strict=True) if bi != 0), np.zeros_like(z))


def inside(A, b, z: np.ndarray | complex) -> np.ndarray:
    """Whether each z lies in the stability region |R(z)| <= 1."""
    return np.abs(stability_function(A, b, z)) <= 1 + TOLERANCE


def largest_stable_step(A, b, lam: np.ndarray | complex, h_max: float = 64.0, points: int = 4096) -> np.ndarray:
    """Per eigenvalue lambda, the largest h <= h_max with t lambda inside the region for every t in (0, h]: where
    the ray from 0 first leaves it (0 where it starts outside, as for Re lambda > 0; h_max where it never leaves
    up to h_max). The ray is sampled at `points` steps, then the exit is bisected to 1e-10 relative."""
    lam = np.atleast_1d(np.asarray(lam, dtype=complex))
    t = np.linspace(0, h_max, points + 1)[1:]
    outside = ~inside(A, b, t[:, None] * lam[None, :])
    first = np.where(outside.any(0), outside.argmax(0), points)
    lo = np.where(first > 0, t[np.maximum(first - 1, 0)], 0.0)
    hi = np.where(first < points, t[np.minimum(first, points - 1)], h_max)
    for _ in range(60):  # invariant: lo inside (or 0), hi outside (or h_max when never outside)
        mid = (lo + hi) / 2
        ok = inside(A, b, mid * lam) & (first < points)
        lo, hi = np.where(ok, mid, lo), np.where(ok | (first == points), hi, mid)
    return np.where(first == points, h_max, lo)
