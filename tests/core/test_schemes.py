"""Schemes as data: exact coefficients, Butcher's order conditions, user tableaus."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from odenets.config import CONF_DIR
from odenets.core.order_conditions import order_of, rooted_trees
from odenets.core.schemes import TABLEAUS, get_tableau, parse_coefficient, scheme_from_config
from odenets.core.stage_plan import StagePlan
from odenets.errors import ConfigError

# our registry name -> id in ../shared/reference/butcher_tableaus.json
REFERENCE_IDS = {"euler": "euler", "midpoint": "midpoint", "heun": "heun", "ralston": "ralston2", "rk3": "kutta3",
                 "rk4": "rk4", "rk4_38": "rk4_38", "dopri5": "dopri5", "rk8": "verner89"}


def test_rooted_tree_counts():
    assert [len(rooted_trees(p)) for p in range(1, 11)] == [1, 1, 2, 4, 9, 20, 48, 115, 286, 719]


@pytest.mark.parametrize("name", sorted(REFERENCE_IDS))
def test_tableau_equals_reference_bit_for_bit(name, butcher_reference):
    ref, ours = butcher_reference[REFERENCE_IDS[name]], TABLEAUS[name]
    assert np.array_equal(np.array(ours.A), np.array(ref["A"]))
    assert list(ours.c) == ref["c"] and list(ours.b) == ref["b"]
    if ref.get("b_hat") is not None:
        assert list(ours.b_hat) == ref["b_hat"]


@pytest.mark.parametrize("name", sorted(REFERENCE_IDS))
def test_order_conditions(name, butcher_reference):
    ref, ours = butcher_reference[REFERENCE_IDS[name]], TABLEAUS[name]
    assert ours.order == ref["order"]
    assert ours.embedded_order == ref.get("embedded_order")


def test_verner_coefficients_the_paper_prints_wrong():
    a = TABLEAUS["rk8"].A
    # HO-ResNet eq. 14 prints (328 + 206 sqrt6)/375 for a_54; Verner's value has 208 sqrt6.
    assert a[4][3] == pytest.approx((328 + 208 * np.sqrt(6)) / 375, rel=1e-15)
    assert a[4][3] != pytest.approx((328 + 206 * np.sqrt(6)) / 375, rel=1e-6)
    # Row 12 in the paper: 847.88 k7 and 605.73 k10; the exact entries are about 413.49 and -241.54.
    assert a[11][6] == pytest.approx(154922 / 135 - 13486 * np.sqrt(6) / 45, rel=1e-14)
    assert a[11][6] == pytest.approx(413.4855, abs=1e-4) and a[11][9] == pytest.approx(-241.5435, abs=1e-4)


def test_needed_stages():
    stages = lambda name: StagePlan.of(scheme_from_config(name)).stages
    assert stages("rk8") == 14  # k15, k16 only feed the 9th-order b_hat
    assert stages("dopri5") == 6  # FSAL stage 7 has b_7 = 0
    assert stages("midpoint") == 2


@pytest.mark.parametrize("alpha,order", [(0.0, 1), (0.5, 2), (0.75, 1), (0.8, 1), (1.0, 1)])
def test_heun_ext_family(alpha, order, butcher_reference):
    t = get_tableau("heun_ext", alpha=alpha)
    assert t.b == pytest.approx((1 - alpha, alpha), abs=1e-16) and t.A[1][0] == 1.0 and t.order == order
    ref = butcher_reference.get(f"ext_heun_alpha_{alpha}")
    if ref:
        assert list(t.b) == ref["b"]


def test_heun_ext_rejects_alpha_outside_unit_interval():
    with pytest.raises(ConfigError, match=r"alpha=1.5 is outside \[0, 1\]"):
        get_tableau("heun_ext", alpha=1.5)


def test_exact_expressions():
    assert parse_coefficient("2/15 + 2*sqrt(6)/15") == (2 + 2 * 6 ** 0.5) / 15
    assert parse_coefficient(0.25) == 0.25
    with pytest.raises(ValueError):
        parse_coefficient("__import__('os')")


def test_user_yaml_scheme_is_validated_and_its_order_reported():
    cfg = OmegaConf.load(CONF_DIR / "scheme" / "example_ralston3.yaml")
    scheme = scheme_from_config(cfg)
    assert scheme.tableau.order == 3 and scheme.tableau.stages == 3


@pytest.mark.parametrize("cfg,message", [
    ({"name": "x", "c": [0, 1], "A": [[0, 1], [1, 0]], "b": [0.5, 0.5]}, "not strictly lower-triangular"),
    ({"name": "x", "c": [0, 0.5], "A": [[], [1]], "b": [0.5, 0.5]}, "rows of A must sum to c"),
    ({"name": "x", "c": [0], "A": [[], [1]], "b": [0.5, 0.5]}, "sizes disagree"),
    ({"name": "x", "c": [0, 1], "A": [[], [1]]}, "needs c, A and b"),
    ({"name": "x", "c": [0, 1], "A": [[], ["1/0x"]], "b": [0.5, 0.5]}, "bad coefficient"),
    ({"name": "rk5"}, "unknown scheme 'rk5'; valid schemes: dopri5, euler"),
    ({"name": "rk4", "learn_alpha": True}, "learn_alpha=true needs a scheme with a weight alpha"),
    ({"name": "rk4", "step": 1}, "unknown key"),
])
def test_bad_user_schemes_are_refused_with_the_reason(cfg, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        scheme_from_config(cfg)


def test_order_check_detects_a_wrong_weight():
    t = TABLEAUS["rk4"]
    b = list(t.b)
    b[1] += 1e-3
    b[2] -= 1e-3  # still consistent (sum 1), but the order-3+ conditions now fail
    assert order_of(t.A, b) == 2


@pytest.mark.parametrize("path", sorted((CONF_DIR / "scheme").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_scheme_config_is_checked_by_its_owner(path):
    """Each conf/scheme/*.yaml parses, and `scheme_from_config` (the scheme's only validator) refuses a step size
    h <= 0 and an unknown key for it in one line."""
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    node = {k: v for k, v in node.items() if not (isinstance(v, str) and "${" in v)}  # alpha: ${alpha}
    assert StagePlan.of(scheme_from_config(node)).stages >= 1
    with pytest.raises(ConfigError, match=r"^scheme\.h=0\.0 must be > 0$"):
        scheme_from_config({**node, "h": 0})
    with pytest.raises(ConfigError, match=r"^scheme: unknown key\(s\) hh; allowed: "):
        scheme_from_config({**node, "hh": 1})
