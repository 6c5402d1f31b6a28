"""Explicit Runge-Kutta schemes as data: Butcher tableaus and their registry.

A step of size h from y_n (HO-ResNet eq. 10-11, HeunNet eq. 5-7) is

    k_i     = F(t_n + c_i h, y_n + h * sum_{j<i} a_ij k_j)
    y_{n+1} = y_n + h * sum_i b_i k_i

Every scheme is one `ButcherTableau`; `TABLEAUS` maps names to tableaus or to factories of
parametrised families (`heun_ext(alpha)`). Coefficients are written exactly (rationals and
sqrt(6)) and evaluated to correctly rounded float64. Users add schemes as YAML (c, A, b), which
`tableau_from_config` validates and whose order it reports via Butcher's order conditions.
"""

from __future__ import annotations

import ast
import decimal
import inspect
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from odenets.core.order_conditions import order_of
from odenets.errors import ConfigError

Number = Any  # float, or a tensor when a tableau parameter is learned


# --------------------------------------------------------------------------- exact coefficients
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}


def parse_coefficient(value: Any) -> float:
    """A coefficient as float64: a number, or an exact expression like "2/15 + 2*sqrt(6)/15".

    Expressions are evaluated with 50 significant digits and then rounded once to float64.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        return float(_eval(ast.parse(str(value).strip(), mode="eval").body))


def _eval(node: ast.AST) -> decimal.Decimal:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return decimal.Decimal(repr(node.value)) if isinstance(node.value, float) else decimal.Decimal(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "sqrt" \
            and len(node.args) == 1:
        return _eval(node.args[0]).sqrt()
    raise ValueError(f"unsupported expression {ast.unparse(node)!r} (use numbers, + - * / ** and sqrt())")


# --------------------------------------------------------------------------- the tableau type
@dataclass(frozen=True)
class ButcherTableau:
    """Nodes c, strictly lower-triangular A, weights b, optional embedded weights b_hat.

    `order` is computed from the order conditions. `family`/`params` are set for members of a
    parametrised family, so a block can rebuild the coefficients from learnable parameters.
    """

    name: str
    c: tuple[float, ...]
    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_hat: tuple[float, ...] | None = None
    family: Callable[..., dict] | None = field(default=None, compare=False, repr=False)
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self.name, self.c, self.A, self.b, self.b_hat)

    @property
    def stages(self) -> int:
        return len(self.b)

    @cached_property
    def order(self) -> int:
        return order_of(self.A, self.b)

    @cached_property
    def embedded_order(self) -> int | None:
        return None if self.b_hat is None else order_of(self.A, self.b_hat)

    def coefficients(self, **params: Number) -> tuple[Sequence[Number], Sequence[Sequence[Number]], Sequence[Number]]:
        """(c, A, b), recomputed from `params` (e.g. a learnable alpha tensor) for a family member."""
        if not params:
            return self.c, self.A, self.b
        if self.family is None:
            raise ValueError(f"scheme {self.name!r} has no parameters")
        coeffs = self.family(**{**self.params, **params})
        return coeffs["c"], coeffs["A"], coeffs["b"]


def _validate(name, c, A, b, b_hat) -> None:
    s = len(b)
    if s == 0:
        raise ConfigError(f"scheme {name!r}: b is empty; give at least one stage weight")
    if len(c) != s or len(A) != s or any(len(row) != s for row in A):
        raise ConfigError(f"scheme {name!r}: sizes disagree (len(c)={len(c)}, A is {len(A)} rows, len(b)={s}); "
                          f"c and b need one entry per stage and A one row per stage")
    if b_hat is not None and len(b_hat) != s:
        raise ConfigError(f"scheme {name!r}: b_hat has {len(b_hat)} entries, expected {s}")
    for i, row in enumerate(A):
        if any(row[j] != 0 for j in range(i, s)):
            raise ConfigError(f"scheme {name!r}: A is not strictly lower-triangular (row {i + 1}); "
                              f"only explicit schemes are allowed")
        if not math.isclose(sum(row), c[i], rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(f"scheme {name!r}: row {i + 1} of A sums to {sum(row):.12g} but c_{i + 1} = "
                              f"{c[i]:.12g}; rows of A must sum to c")


def _square(rows: Sequence[Sequence[Any]], s: int) -> tuple[tuple[float, ...], ...]:
    """A from ragged lower-triangular rows (row i may list only its first i entries) or a full matrix."""
    out = []
    for row in rows:
        vals = [parse_coefficient(v) for v in row]
        if len(vals) > s:
            raise ConfigError(f"A has a row of {len(vals)} entries for a {s}-stage scheme")
        out.append(tuple(vals + [0.0] * (s - len(vals))))
    return tuple(out)


def make_tableau(name: str, c: Sequence, A: Sequence[Sequence], b: Sequence, b_hat: Sequence | None = None,
                 **extra: Any) -> ButcherTableau:
    """Build and validate a tableau from numbers or exact expression strings."""
    try:
        bb = tuple(parse_coefficient(v) for v in b)
        return ButcherTableau(
            name=name,
            c=tuple(parse_coefficient(v) for v in c),
            A=_square(A, len(bb)),
            b=bb,
            b_hat=None if b_hat is None else tuple(parse_coefficient(v) for v in b_hat),
            **extra,
        )
    except (ValueError, SyntaxError, TypeError) as e:
        raise ConfigError(f"scheme {name!r}: bad coefficient ({e})") from None


# --------------------------------------------------------------------------- the registry
def _heun_ext(alpha: Number = 0.5) -> dict:
    """Extended Heun (HeunNet eq. 6-7): a21 = 1, b = [1 - alpha, alpha]; alpha = 0 is Euler, 1/2 Heun.

    For a number, 1 - alpha is taken in decimal (alpha=0.8 gives b1 = 0.2 exactly rounded, not
    0.19999999999999996); a tensor alpha (learned) stays a tensor.
    """
    rest = float(1 - decimal.Decimal(repr(float(alpha)))) if isinstance(alpha, (int, float)) else 1 - alpha
    return {"c": (0.0, 1.0), "A": ((0.0, 0.0), (1.0, 0.0)), "b": (rest, alpha)}


def heun_ext(alpha: float = 0.5) -> ButcherTableau:
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha={alpha} is outside [0, 1], the range of the extended Heun weight (HeunNet Sec. 5)")
    return make_tableau("heun_ext", family=_heun_ext, params={"alpha": float(alpha)}, **_heun_ext(float(alpha)))


# Families that keep an order exactly for every value of their free coefficients, so learning the
# coefficients (`scheme.learn=[c2]`) moves within the schemes of that order (Butcher 2016, Sec. 23).
def _rk2(c2: Number = 0.5) -> dict:
    """Every explicit 2-stage method of order 2: a21 = c2, b = [1 - 1/(2 c2), 1/(2 c2)] (c2 = 1/2 midpoint,
    1 Heun, 2/3 Ralston)."""
    b2 = 1 / (2 * c2)
    return {"c": (0.0, c2), "A": ((0.0, 0.0), (c2, 0.0)), "b": (1 - b2, b2)}


def _rk3(c2: Number = 0.5, c3: Number = 1.0) -> dict:
    """Every explicit 3-stage method of order 3 with c2 != c3, c2 != 2/3, c2, c3 != 0 (Butcher's case I):
    b2 = (3 c3 - 2) / (6 c2 (c3 - c2)), b3 = (2 - 3 c2) / (6 c3 (c3 - c2)), a32 = 1 / (6 b3 c2)
    (c2 = 1/2, c3 = 1 is Kutta's rk3)."""
    b2 = (3 * c3 - 2) / (6 * c2 * (c3 - c2))
    b3 = (2 - 3 * c2) / (6 * c3 * (c3 - c2))
    a32 = 1 / (6 * b3 * c2)
    return {"c": (0.0, c2, c3), "A": ((0.0, 0.0, 0.0), (c2, 0.0, 0.0), (c3 - a32, a32, 0.0)),
            "b": (1 - b2 - b3, b2, b3)}


def _family(name: str, coefficients: Callable[..., dict], valid: Callable[..., str | None]):
    def build(**params: float) -> ButcherTableau:
        problem = valid(**params)
        if problem:
            raise ConfigError(f"scheme {name}: {problem}")
        defaults = {k: v.default for k, v in inspect.signature(coefficients).parameters.items()}
        values = {k: float(v) for k, v in {**defaults, **params}.items()}
        return make_tableau(name, family=coefficients, params=values, **coefficients(**values))
    return build


def _rk2_valid(c2: float = 0.5) -> str | None:
    return None if float(c2) != 0 else "c2=0 has no order-2 member (b2 = 1/(2 c2))"


def _rk3_valid(c2: float = 0.5, c3: float = 1.0) -> str | None:
    c2, c3 = float(c2), float(c3)
    if 0 in (c2, c3) or c2 == c3 or c2 == 2 / 3:
        return f"c2={c2:g}, c3={c3:g}: the (c2, c3) family needs c2, c3 != 0, c2 != c3 and c2 != 2/3"
    return None


_S6 = "sqrt(6)"
# Verner (1978) RK8(9), 16 stages: b is the 8th-order solution (stages 1-14), b_hat the 9th-order one.
# HO-ResNet eq. 14-15 prints several of these rounded or wrong (a54 has 208*sqrt(6), not 206*sqrt(6);
# the row-12 decimals); these are the exact values.
_VERNER_A = [
    [],
    ["1/12"],
    ["1/27", "2/27"],
    ["1/24", 0, "1/8"],
    [f"4/375 + 94*{_S6}/375", 0, f"-94/125 - 84*{_S6}/125", f"328/375 + 208*{_S6}/375"],
    [f"3/50 - {_S6}/150", 0, 0, f"104/475 + 32*{_S6}/1425", f"23/190 + 29*{_S6}/570"],
    [f"927/1250 - 347*{_S6}/1250", 0, 0, f"-5416/3125 + 7328*{_S6}/9375", f"-163/1250 + 179*{_S6}/3750",
     f"4756/3125 - 5798*{_S6}/9375"],
    ["2/27", 0, 0, 0, 0, f"8/27 - {_S6}/54", f"8/27 + {_S6}/54"],
    ["19/256", 0, 0, 0, 0, f"59/256 - 23*{_S6}/512", f"59/256 + 23*{_S6}/512", "-9/256"],
    ["11/144", 0, 0, 0, 0, f"133/432 - {_S6}/864", f"133/432 + {_S6}/864", "-1/16", "-8/27"],
    [f"839/10240 - 271*{_S6}/61440", 0, 0, 0, 0, 0, f"7859/10240 - 813*{_S6}/5120",
     f"-279/2560 + 813*{_S6}/20480", f"-99/160 + 271*{_S6}/960", f"657/5120 - 813*{_S6}/5120"],
    [f"5996/405 - 3794*{_S6}/405", 0, 0, 0, 0, f"-4342/9 - 338*{_S6}/9", f"154922/135 - 13486*{_S6}/45",
     f"-464/5 + 3794*{_S6}/45", f"-340864/405 + 242816*{_S6}/405", f"8768/15 - 15176*{_S6}/45", "-26624/81"],
    [f"3793/103680 + 271*{_S6}/12960", 0, 0, 0, 0, f"2021/6912 + 2263*{_S6}/13824",
     f"-115639/34560 + 40717*{_S6}/69120", f"883/1280 - 271*{_S6}/1440", f"1048/405 - 542*{_S6}/405",
     f"-461/240 + 271*{_S6}/360", "2624/1053", "3/1664"],
    ["-137/1296", 0, 0, 0, 0, f"2821/432 - 337*{_S6}/864", f"2821/432 + 337*{_S6}/864", "-299/48", "184/81",
     "-44/9", "-5120/1053", "-11/468", "16/9"],
    [f"33617/518400 - 271*{_S6}/64800", 0, 0, 0, 0, f"-641/2304 + 31*{_S6}/13824",
     f"77669/172800 - 52807*{_S6}/345600", f"-1393/6400 + 271*{_S6}/7200", f"92/2025 + 542*{_S6}/2025",
     f"-599/1200 - 271*{_S6}/1800", "320/567", "-1/1920", "4/105"],
    [f"-36487/279600 - 1897*{_S6}/17475", 0, 0, 0, 0, f"-14833/3728 - 4499*{_S6}/7456",
     f"1389591/93200 - 615973*{_S6}/186400", f"-94329/93200 + 5691*{_S6}/5825",
     f"-232192/17475 + 121408*{_S6}/17475", f"101226/5825 - 22764*{_S6}/5825", "-169984/9087", "-87/30290",
     "492/1165", 0, "1260/233"],
]
_VERNER_C = ["0", "1/12", "1/9", "1/6", f"2/15 + 2*{_S6}/15", f"2/5 + {_S6}/15", f"2/5 - {_S6}/15", "2/3",
             "1/2", "1/3", "1/4", "4/3", "5/6", "1", "1/6", "1"]
_VERNER_B = ["103/1680", 0, 0, 0, 0, 0, 0, "-27/140", "76/105", "-201/280", "1024/1365", "3/7280", "12/35",
             "9/280", 0, 0]
_VERNER_B_HAT = ["23/525", 0, 0, 0, 0, 0, 0, "171/1400", "86/525", "93/280", "-2048/6825", "-3/18200",
                 "39/175", 0, "9/25", "233/4200"]

_DOPRI5_A = [
    [],
    ["1/5"],
    ["3/40", "9/40"],
    ["44/45", "-56/15", "32/9"],
    ["19372/6561", "-25360/2187", "64448/6561", "-212/729"],
    ["9017/3168", "-355/33", "46732/5247", "49/176", "-5103/18656"],
    ["35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84"],
]

TABLEAUS: dict[str, ButcherTableau | Callable[..., ButcherTableau]] = {
    t.name: t
    for t in [
        make_tableau("euler", c=[0], A=[[]], b=[1]),
        make_tableau("midpoint", c=[0, "1/2"], A=[[], ["1/2"]], b=[0, 1]),
        make_tableau("heun", c=[0, 1], A=[[], [1]], b=["1/2", "1/2"]),
        make_tableau("ralston", c=[0, "2/3"], A=[[], ["2/3"]], b=["1/4", "3/4"]),
        make_tableau("rk3", c=[0, "1/2", 1], A=[[], ["1/2"], [-1, 2]], b=["1/6", "2/3", "1/6"]),
        make_tableau("rk4", c=[0, "1/2", "1/2", 1], A=[[], ["1/2"], [0, "1/2"], [0, 0, 1]],
                     b=["1/6", "1/3", "1/3", "1/6"]),
        make_tableau("rk4_38", c=[0, "1/3", "2/3", 1], A=[[], ["1/3"], ["-1/3", 1], [1, -1, 1]],
                     b=["1/8", "3/8", "3/8", "1/8"]),
        make_tableau("dopri5", c=[0, "1/5", "3/10", "4/5", "8/9", 1, 1], A=_DOPRI5_A,
                     b=["35/384", 0, "500/1113", "125/192", "-2187/6784", "11/84", 0],
                     b_hat=["5179/57600", 0, "7571/16695", "393/640", "-92097/339200", "187/2100", "1/40"]),
        make_tableau("rk8", c=_VERNER_C, A=_VERNER_A, b=_VERNER_B, b_hat=_VERNER_B_HAT),
    ]
}
TABLEAUS["heun_ext"] = heun_ext
TABLEAUS["rk2_family"] = _family("rk2_family", _rk2, _rk2_valid)
TABLEAUS["rk3_family"] = _family("rk3_family", _rk3, _rk3_valid)
FAMILY_PARAMS = {"heun_ext": ("alpha",), "rk2_family": ("c2",), "rk3_family": ("c2", "c3")}


def get_tableau(name: str, **params: float) -> ButcherTableau:
    """The registered tableau `name`; a family (heun_ext) is instantiated with `params`."""
    entry = TABLEAUS.get(name)
    if entry is None:
        raise ConfigError(f"unknown scheme {name!r}; valid schemes: {', '.join(sorted(TABLEAUS))}, "
                          f"or a YAML file in conf/scheme/ giving c, A and b")
    if isinstance(entry, ButcherTableau):
        if params:
            raise ConfigError(f"scheme {name!r} takes no parameters (got {', '.join(params)})")
        return entry
    return entry(**params)


# --------------------------------------------------------------------------- from a config
@dataclass(frozen=True)
class Scheme:
    """A tableau plus how a block steps with it: step size h, and what is learned (h, alpha, ...)."""

    tableau: ButcherTableau
    h: float = 1.0
    learn_h: bool = False
    learn_params: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.tableau.name

    @cached_property
    def sparsity(self) -> tuple[tuple[tuple[bool, ...], ...], tuple[bool, ...]]:
        """Which entries of A and b are nonzero. With learned parameters, an entry counts as nonzero if it
        is nonzero at the initial value or at a generic one, so learning can move it away from zero."""
        t = self.tableau
        patterns = [t.coefficients()]
        if self.learn_params:
            patterns.append(t.coefficients(**{p: t.params[p] + 1 / math.pi for p in self.learn_params}))
        rows = range(t.stages)
        A = tuple(tuple(any(float(P[1][i][j]) != 0 for P in patterns) for j in rows) for i in rows)
        return A, tuple(any(float(P[2][i]) != 0 for P in patterns) for i in rows)


SCHEME_KEYS = {"name", "c", "A", "b", "b_hat", "h", "learn_h", "learn_alpha", "learn", "alpha", "c2", "c3"}


def scheme_from_config(cfg: Mapping | str | ButcherTableau | Scheme) -> Scheme:
    """A `Scheme` from a `conf/scheme/*.yaml` mapping, a registered name or a tableau.

    A mapping with c, A and b defines a new tableau (validated here); otherwise `name` is looked up
    in `TABLEAUS`, with a family's free coefficients (heun_ext: alpha; rk2_family: c2; rk3_family: c2, c3)
    passed to it. `learn` lists the coefficients to train (`learn_alpha: true` is `learn: [alpha]`).
    """
    if isinstance(cfg, Scheme):
        return cfg
    if isinstance(cfg, ButcherTableau):
        return Scheme(cfg)
    if isinstance(cfg, str):
        return Scheme(get_tableau(cfg))
    cfg = dict(cfg)
    unknown = set(cfg) - SCHEME_KEYS
    if unknown:
        raise ConfigError(f"scheme: unknown key(s) {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(SCHEME_KEYS))}")
    name = str(cfg.get("name", "custom"))
    if any(k in cfg for k in ("c", "A", "b")):
        missing = [k for k in ("c", "A", "b") if cfg.get(k) is None]
        if missing:
            raise ConfigError(f"scheme {name!r}: a user tableau needs c, A and b (missing {', '.join(missing)})")
        tableau = make_tableau(name, cfg["c"], cfg["A"], cfg["b"], cfg.get("b_hat"))
    else:
        given = {k: cfg[k] for k in FAMILY_PARAMS.get(name, ()) if cfg.get(k) is not None}
        stray = [k for k in ("alpha", "c2", "c3") if cfg.get(k) is not None and k not in FAMILY_PARAMS.get(name, ())]
        if stray:
            raise ConfigError(f"scheme.{stray[0]} is a coefficient of another family; {name!r} takes "
                              f"{', '.join(FAMILY_PARAMS.get(name, ())) or 'none'}")
        tableau = get_tableau(name, **given)
    h = float(cfg.get("h", 1.0))
    if not h > 0:
        raise ConfigError(f"scheme.h={h} must be > 0")
    learn = tuple(cfg.get("learn") or ()) + (("alpha",) if cfg.get("learn_alpha") else ())
    if cfg.get("learn_alpha") and "alpha" not in tableau.params:
        raise ConfigError(f"scheme.learn_alpha=true needs a scheme with a weight alpha (heun_ext), not {name!r}")
    unknown = [p for p in learn if p not in tableau.params]
    if unknown:
        raise ConfigError(f"scheme.learn={list(learn)}: {name!r} has no coefficient {unknown[0]!r}; "
                          f"its free coefficients: {', '.join(tableau.params) or 'none'}")
    return Scheme(tableau, h=h, learn_h=bool(cfg.get("learn_h", False)), learn_params=tuple(dict.fromkeys(learn)))
