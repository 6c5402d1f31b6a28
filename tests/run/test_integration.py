"""Is it an ODE? (issue 14): evaluating a run, other test-time schemes and steps, refusal for separate-weight
stacks, function evaluations, the adjoint, and tableau families that keep their order while learning."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import cli
from odenets.core.blocks import RKBlock
from odenets.core.schemes import scheme_from_config
from odenets.errors import ConfigError
from odenets.evaluate import evaluate
from odenets.models import create_model
from odenets.models.odenet import ODEBlock
from odenets.results import read_evaluations
from odenets.run.integration import reintegrate
from odenets.tasks.base import learned_coefficients


def test_evaluating_a_run_reproduces_its_logged_test_metrics(run_inprocess):
    record, run_dir = run_inprocess(["model=ode_rnn", "scheme=euler", "model.hidden_size=8", "epochs=2"])
    last = evaluate(run_dir, which="last")
    assert last["metrics"]["test/acc"] == record["metrics"]["final"]["test/acc"]
    assert last["metrics"]["test/loss"] == pytest.approx(record["metrics"]["final"]["test/loss"], rel=1e-6)
    best = evaluate(run_dir)
    assert best["metrics"]["test/acc"] == record["metrics"]["best"]["test/acc"]
    finer = evaluate(run_dir, scheme="rk4", substeps=4)
    assert finer["metrics"]["test/loss"] != best["metrics"]["test/loss"]  # another computation
    assert {(e["checkpoint"], e["scheme"], e["substeps"]) for e in read_evaluations(run_dir)} == {
        ("last.ckpt", "euler", 1), ("best.ckpt", "euler", 1), ("best.ckpt", "rk4", 4)}
    assert finer["code"]["commit"] and finer["trained_scheme"] == "euler"


def test_eval_refuses_bad_input_in_one_line(run_inprocess, tmp_path):
    _, run_dir = run_inprocess([])  # HO-ResNet: one sub-net per stage
    for args, message in ([str(run_dir), "scheme=rk4"], "stacks a separate sub-net per stage"), \
                         ([str(tmp_path / "nothing")], "is not a run directory"), \
                         ([str(run_dir), "which=middle"], "which='middle'; allowed: best, last"), \
                         ([str(run_dir), "dataset.name=cifar10"], "evaluation can change the keys"), \
                         ([str(run_dir), "substeps=0"], "substeps='0'"):
        out = cli(*args, tmp_path=tmp_path, quick=False, entry=["-m", "odenets.evaluate"])
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("error: ") and message in out.stderr


class Logistic(nn.Module):
    def forward(self, y):
        return y * (1 - y)


@pytest.mark.parametrize("scheme,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_a_test_time_scheme_on_a_known_ode_converges_at_its_order(scheme, order):
    """A shared-weight block trained with Euler, integrated at test time with `scheme` in n sub-steps."""
    block = RKBlock("euler", Logistic, stage_weights="shared")
    errors = []
    for n in (8, 16, 32):
        block.set_integration(scheme, substeps=n)
        y = block(torch.tensor([0.1], dtype=torch.float64))
        errors.append(abs(float(y) - 1 / (1 + 9 * math.exp(-1))))
    assert math.log2(errors[-2] / errors[-1]) == pytest.approx(order, abs=0.3)


@pytest.mark.parametrize("name", ["ode_rnn", "rknet", "rknn", "odenet"])
def test_shared_weight_models_accept_another_scheme(name):
    kwargs = {"hidden_size": 4, "image_size": 8} if name == "ode_rnn" else \
        {"channels": [4], "preprocessor": "cliquenet"}
    net = create_model(name, in_channels=1, **kwargs).eval()
    x = torch.rand(2, 1, 8, 8)
    before = net(x)
    assert reintegrate(net, "rk4", substeps=2) >= 1
    assert not torch.allclose(net(x), before)


@pytest.mark.parametrize("name", ["horesnet", "rkcnn", "lstm", "densenet"])
def test_separate_weight_and_plain_models_are_refused(name):
    net = create_model(name, in_channels=1, **({"width": 4} if name == "horesnet" else {"channels": [4]}
                                              if name in ("rkcnn", "densenet") else {"hidden_size": 4}))
    with pytest.raises(ConfigError, match="separate sub-net per stage|integrates no ODE"):
        reintegrate(net, "rk4", name=f"model={name}")


def test_ode_net_counts_its_function_evaluations(run_inprocess):
    record, _ = run_inprocess(["model=odenet", "model.channels=[4]", "model.preprocessor=cliquenet"])
    entry = record["history"][0]
    # explicit Adams, 3 steps: two RK4-3/8 starter steps (8 evaluations) and one Adams step (+1)
    assert entry["train/nfe"] == entry["test/nfe"] == 9


class Smooth(nn.Module):
    """A smooth f(z, t) (ODE-Net's own f has ReLUs, whose kinks slow every solver's gradient convergence)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, z, t):
        return torch.tanh(self.lin(z)) * (1 + t)


def test_adjoint_gradient_matches_backpropagation():
    """odeint_adjoint at tolerance 1e-8 against plain backpropagation through a 1e-12 solve: within 10x the
    tolerance (relative). Measured: 5.5e-8; plain backpropagation at 1e-8 is 1.5e-7 away."""
    torch.manual_seed(0)
    func = Smooth().double()
    x = torch.randn(3, 4, dtype=torch.float64)

    def gradient(block: ODEBlock) -> torch.Tensor:
        func.zero_grad()
        block(x).square().sum().backward()
        return torch.cat([p.grad.flatten() for p in func.parameters()])

    reference = gradient(ODEBlock(func, "dopri5", tol=1e-12))
    adjoint = gradient(ODEBlock(func, "dopri5", tol=1e-8, adjoint=True))
    assert float((adjoint - reference).norm() / reference.norm()) < 1e-7


@pytest.mark.parametrize("family,learn,order", [("rk2_family", ["c2"], 2), ("rk3_family", ["c2", "c3"], 3)])
def test_learnable_families_keep_their_order(family, learn, order):
    block = RKBlock({"name": family, "c2": 0.3, "learn": learn}, Logistic, stage_weights="shared")
    optimizer = torch.optim.SGD(block.parameters(), lr=0.05)
    for _ in range(3):
        loss = (block(torch.tensor([0.1, 0.4])) - 0.5).square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    logged = learned_coefficients([block])
    assert logged["scheme/c2"] != pytest.approx(0.3) and logged["scheme/order"] == order
    assert scheme_from_config({"name": family, "c2": logged["scheme/c2"]}).tableau.order == order
