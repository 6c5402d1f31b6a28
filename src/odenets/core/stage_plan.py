"""The stage plan of an explicit Runge-Kutta step: which stages it evaluates, which read which, which enter it.

    k_i = F(y + h sum_{j in deps[i]} a_ij k_j),   y' = y + h sum_{i: outs[i]} b_i k_i
                                                   (HO-ResNet eq. 10-11, 14-15; HeunNet eq. 4-7)

Worked out once from a scheme's sparsity (`Scheme.sparsity`: a learnable coefficient counts as nonzero) and
read by every implementation of the step: `RKBlock` op by op, and the recurrent scan (`fused_rnn`) in torch
operations and in its C++ loop, which receives these arrays instead of deriving them again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from odenets.core.schemes import Scheme


def needed_stages(A: Sequence[Sequence[bool]], b: Sequence[bool]) -> int:
    """Number of leading stages the weights b depend on, directly or through A: those used only by b_hat
    (Verner's k15, k16; Dormand-Prince's FSAL k7) are never evaluated."""
    needed = [bool(bi) for bi in b]
    for i in reversed(range(len(b))):
        if needed[i]:
            for j in range(i):
                needed[j] = needed[j] or bool(A[i][j])
    return max((i + 1 for i, n in enumerate(needed) if n), default=1)


@dataclass(frozen=True)
class StagePlan:
    """The stages of a step, only those its output needs (14 of Verner's 16), and how they connect.

    `deps[i]`: the stages j < i that stage i reads (a_ij != 0); `outs[i]`: whether k_i enters the step
    (b_i != 0); `single`: the stage whose k alone is the increment (h b = e_single: Euler-like), if any.
    Derived: `users[j]`, the stages that read k_j; `keep[i]`, whether k_i outlives stage i (a later stage
    reads it); `release[i]`, the k_j whose last reader is stage i (freed after it).
    """

    deps: tuple[tuple[int, ...], ...]
    outs: tuple[bool, ...]
    single: int | None = None
    users: tuple[tuple[int, ...], ...] = field(init=False)
    keep: tuple[bool, ...] = field(init=False)
    release: tuple[tuple[int, ...], ...] = field(init=False)

    def __post_init__(self) -> None:
        deps, outs = tuple(map(tuple, self.deps)), tuple(map(bool, self.outs))
        s = len(outs)
        if s == 0 or len(deps) != s:
            raise ValueError(f"stage plan: {len(deps)} rows of dependencies for {s} stages")
        for i, row in enumerate(deps):
            if list(row) != sorted(set(row)) or not all(0 <= j < i for j in row):
                raise ValueError(f"stage plan: stage {i} reads {row}; an explicit step reads earlier stages, once")
        entering = [i for i in range(s) if outs[i]]
        if not entering:
            raise ValueError("stage plan: no stage enters the step")
        users = tuple(tuple(i for i in range(s) if j in deps[i]) for j in range(s))
        if self.single is not None and (entering != [self.single] or users[self.single]):
            raise ValueError(f"stage plan: stage {self.single} is not the increment alone (stages {entering} enter "
                             f"the step; stages {users[self.single]} read it)")
        for name, value in (("deps", deps), ("outs", outs), ("users", users),
                            ("keep", tuple(bool(u) for u in users)),
                            ("release", tuple(tuple(j for j in range(s) if users[j][-1:] == (i,)) for i in range(s)))):
            object.__setattr__(self, name, value)

    @property
    def stages(self) -> int:
        return len(self.outs)

    @classmethod
    def of(cls, scheme: Scheme, hb: Sequence[float] | None = None) -> StagePlan:
        """The plan of the stages of `scheme` a step evaluates (`needed_stages` of its sparsity, learned coefficients
        counted: the one count of stages), from its sparsity. `hb`: the step's weights h b when nothing learned
        moves them; the one stage entering the step, if its weight is 1, is then `single`."""
        A, b = scheme.sparsity
        s = needed_stages(A, b)
        entering = [i for i in range(s) if b[i]]
        single = entering[0] if hb is not None and len(entering) == 1 and hb[entering[0]] == 1 else None
        return cls(tuple(tuple(j for j in range(i) if A[i][j]) for i in range(s)), b[:s], single)
