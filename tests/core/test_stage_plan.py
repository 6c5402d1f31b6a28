"""The stage plan (`StagePlan`): worked out once from a scheme's sparsity, it agrees with the tableau's (A, b)
for every registered scheme, counts learnable coefficients as nonzero, and refuses an inconsistent layout."""

from __future__ import annotations

import numpy as np
import pytest

from odenets.core.schemes import TABLEAUS, scheme_from_config
from odenets.core.stage_plan import StagePlan


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_the_plan_of_every_registered_tableau_follows_from_A_and_b(name):
    """Directly from the numbers: the stages are those b reads, directly or through A (14 of Verner's 16, 6 of
    Dormand-Prince's 7); stage i reads j where a_ij != 0, and k_j is kept until its last reader."""
    tableau = scheme_from_config(name).tableau
    A, b = np.array(tableau.A) != 0, np.array(tableau.b) != 0
    needed = b.copy()
    for _ in b:
        needed |= A[needed].any(0)
    s = int(np.flatnonzero(needed).max()) + 1
    A = A[:s, :s]
    readers = [tuple(np.flatnonzero(A[:, j]).tolist()) for j in range(s)]
    entering = np.flatnonzero(b).tolist()

    plan = StagePlan.of(scheme_from_config(name), tableau.b)
    assert plan.stages == s
    assert plan.deps == tuple(tuple(np.flatnonzero(row).tolist()) for row in A)
    assert plan.outs == tuple(b[:s].tolist())
    assert plan.users == tuple(readers)
    assert plan.keep == tuple(bool(r) for r in readers)
    assert plan.release == tuple(tuple(j for j in range(s) if readers[j] and readers[j][-1] == i) for i in range(s))
    alone = len(entering) == 1 and tableau.b[entering[0]] == 1
    assert plan.single == (entering[0] if alone else None)
    assert StagePlan.of(scheme_from_config(name)).single is None  # without fixed weights, no stage is known to be 1


def test_learnable_coefficients_count_as_nonzero():
    """heun_ext at alpha = 0 is Euler; with alpha learned, its second stage enters the step."""
    fixed = scheme_from_config({"name": "heun_ext", "alpha": 0.0})
    assert StagePlan.of(fixed, fixed.tableau.b) == StagePlan(deps=((),), outs=(True,), single=0)
    learned = StagePlan.of(scheme_from_config({"name": "heun_ext", "alpha": 0.0, "learn_alpha": True}))
    assert (learned.deps, learned.outs, learned.single) == (((), (0,)), (True, True), None)


def test_a_plan_from_lists_is_the_same_frozen_plan():
    plan = StagePlan([[], [0], [1]], [1, 0, 1])
    assert plan == StagePlan(((), (0,), (1,)), (True, False, True)) and hash(plan)
    assert plan.users == ((1,), (2,), ()) and plan.keep == (True, True, False) and plan.release == ((), (0,), (1,))
    with pytest.raises(AttributeError):
        plan.single = 2


@pytest.mark.parametrize("deps,outs,single,problem", [
    ([(), ()], [True], None, "2 rows of dependencies for 1 stages"),
    ([(), (1,)], [True, True], None, r"stage 1 reads \(1,\)"),  # not an earlier stage: implicit
    ([(), (0, 0)], [True, True], None, r"stage 1 reads \(0, 0\)"),
    ([(), (0,)], [False, False], None, "no stage enters the step"),
    ([(), (0,)], [True, True], 1, "stage 1 is not the increment alone"),
    ([(), (0,)], [True, False], 0, "stage 0 is not the increment alone"),  # a later stage reads it
])
def test_an_inconsistent_plan_is_refused(deps, outs, single, problem):
    with pytest.raises(ValueError, match=problem):
        StagePlan(deps, outs, single)
