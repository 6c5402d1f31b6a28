"""The stability function R(z) = 1 + z b^T (I - z A)^{-1} 1 read from each tableau, against closed forms, e^z and
the regions' known extents (Hairer & Wanner II, Sec. IV.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from odenets.core.schemes import TABLEAUS, ButcherTableau
from odenets.core.stability import inside, largest_stable_step, stability_function

FIXED = sorted(name for name, t in TABLEAUS.items() if isinstance(t, ButcherTableau))
Z = np.random.default_rng(0).normal(size=50) * 2 + 1j * np.random.default_rng(1).normal(size=50) * 2


def taylor(A, b, terms: int = 24) -> np.ndarray:
    """The first `terms` Taylor coefficients of R at 0, exactly for a polynomial of lower degree: the discrete
    Fourier transform of R on a circle of radius 1/2."""
    r, w = 0.5, np.exp(2j * np.pi * np.arange(terms) / terms)
    return np.fft.fft(stability_function(A, b, r * w)).real / terms / r ** np.arange(terms)


def test_euler_is_one_plus_z():
    t = TABLEAUS["euler"]
    assert np.abs(stability_function(t.A, t.b, Z) - (1 + Z)).max() < 1e-14


def test_rk4_is_the_taylor_polynomial_of_degree_four():
    t = TABLEAUS["rk4"]
    expected = sum(Z**k / math.factorial(k) for k in range(5))
    assert np.abs(stability_function(t.A, t.b, Z) - expected).max() < 1e-12 * np.abs(expected).max()


@pytest.mark.parametrize("name", FIXED)
def test_r_agrees_with_exp_to_the_schemes_order_and_no_further(name):
    t = TABLEAUS[name]
    c, p = taylor(t.A, t.b), t.order
    assert np.allclose(c[:p + 1], [1 / math.factorial(k) for k in range(p + 1)], rtol=1e-9, atol=1e-13)
    assert abs(c[p + 1] - 1 / math.factorial(p + 1)) > 1e-6 / math.factorial(p + 1)  # order exactly p


def test_verner_89_from_the_reference_tableau(butcher_reference):
    ref = butcher_reference["verner89"]
    c = taylor(ref["A"], ref["b"])
    assert np.allclose(c[:9], [1 / math.factorial(k) for k in range(9)], rtol=1e-9, atol=1e-15)
    assert abs(c[9] - 1 / math.factorial(9)) > 1e-8  # 8(9): the propagated b is order 8, not 9
    ours = TABLEAUS["rk8"]
    assert np.abs(stability_function(ref["A"], ref["b"], Z) - stability_function(ours.A, ours.b, Z)).max() < 1e-9
    near = 0.05 * np.exp(1j * np.linspace(0, 2 * np.pi, 9))
    assert np.abs(stability_function(ref["A"], ref["b"], near) - np.exp(near)).max() < 1e-15


@pytest.mark.parametrize(("name", "real", "imaginary"), [
    ("euler", 2.0, 0.0), ("heun", 2.0, 0.0), ("midpoint", 2.0, 0.0),
    ("rk3", 2.5127453266183286, math.sqrt(3)), ("rk4", 2.785293563405282, 2 * math.sqrt(2))])
def test_the_regions_extents_on_the_axes(name, real, imaginary):
    t = TABLEAUS[name]
    steps = largest_stable_step(t.A, t.b, [-1.0, 1j])
    assert steps[0] == pytest.approx(real, rel=1e-8)
    assert steps[1] == pytest.approx(imaginary, abs=2e-3)  # ~0 for Euler, Heun, midpoint: |R(iy)| > 1 (to 1e-12)


def test_inside_the_region_and_outside():
    euler, rk4 = TABLEAUS["euler"], TABLEAUS["rk4"]
    assert inside(euler.A, euler.b, np.array([0, -1 + 0.99j, -2, -1.5])).all()
    assert not inside(euler.A, euler.b, np.array([0.01, -2.01, 0.5j])).any()
    assert inside(rk4.A, rk4.b, -2.78) and not inside(rk4.A, rk4.b, -2.79)
    assert largest_stable_step(rk4.A, rk4.b, 0.1 + 0j)[0] < 1e-6  # a growing mode is outside at every step


def test_only_explicit_tableaus():
    with pytest.raises(ValueError, match="strictly lower-triangular"):
        stability_function([[0.5]], [1.0], 0.1)
