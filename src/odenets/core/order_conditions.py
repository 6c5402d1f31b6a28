"""Butcher's order conditions over rooted trees.

A Runge-Kutta method (c, A, b) has order p when, for every rooted tree t with at most p
vertices, sum_i b_i Phi_i(t) = 1 / gamma(t) (Butcher 2016, Thm. 315A). Phi(t) is the vector of
elementary weights: Phi(leaf) = 1 and Phi([t_1, ..., t_m]) = prod_k A Phi(t_k) (elementwise);
gamma(t) = |t| prod_k gamma(t_k) is the tree's density.
"""

from __future__ import annotations

from functools import cache

import numpy as np

Tree = tuple  # a rooted tree is the sorted tuple of its children's trees; () is the single vertex


@cache
def rooted_trees(order: int) -> tuple[Tree, ...]:
    """All rooted trees with exactly `order` vertices (counts 1, 1, 2, 4, 9, 20, 48, 115, 286, 719)."""
    if order == 1:
        return ((),)
    return tuple(sorted(set(_forests(order - 1, max_part=order - 1))))


def _forests(n: int, max_part: int) -> list[Tree]:
    """Multisets of trees with n vertices in all, as sorted tuples (parts no larger than max_part)."""
    if n == 0:
        return [()]
    out = []
    for size in range(min(n, max_part), 0, -1):
        for tree in rooted_trees(size):
            for rest in _forests(n - size, size):
                out.append(tuple(sorted(rest + (tree,))))
    return out


def tree_size(t: Tree) -> int:
    return 1 + sum(tree_size(child) for child in t)


def density(t: Tree) -> int:
    """gamma(t) = |t| * prod gamma(children)."""
    g = tree_size(t)
    for child in t:
        g *= density(child)
    return g


def residuals(A, b, max_order: int) -> dict[int, float]:
    """Largest |b . Phi(t) - 1/gamma(t)| over the trees of each order 1..max_order."""
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cache: dict[Tree, np.ndarray] = {}

    def phi(t: Tree) -> np.ndarray:
        if t not in cache:
            v = np.ones(len(b))
            for child in t:
                v = v * (A @ phi(child))
            cache[t] = v
        return cache[t]

    return {
        p: max(abs(float(b @ phi(t)) - 1.0 / density(t)) for t in rooted_trees(p))
        for p in range(1, max_order + 1)
    }


def order_of(A, b, max_order: int = 10, tol: float = 1e-10) -> int:
    """Highest p <= max_order such that every order condition up to p holds within tol."""
    order = 0
    for p, r in residuals(A, b, max_order).items():
        if r > tol:
            break
        order = p
    return order
