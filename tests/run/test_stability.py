"""Stability diagnostics (odenets.run.stability, odenets-diagnose): Arnoldi on Jacobian products recovers prescribed
spectra, steps outside their region are reported outside, the measured order is the scheme's for a network that is
an ODE, and the initial weights are the ones training started from."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from odenets.core.blocks import RKBlock
from odenets.core.schemes import TABLEAUS
from odenets.core.stability import largest_stable_step
from odenets.diagnose import diagnose_run, main
from odenets.evaluate import evaluate, load_trained
from odenets.reporting.figures.integration import evaluations
from odenets.reporting.figures.render import Renderer, stability_figures
from odenets.reporting.figures.stability import plot_stability
from odenets.results import load_runs, read_evaluations
from odenets.run.stability import (
    Jacobian,
    bn_statistics_of,
    diagnose,
    fitted_order,
    leading_eigenvalues,
    measured_order,
    spectral_norm,
)
from odenets.run.training import initial_network


def matrix_with_spectrum(eigenvalues: list[complex], n: int, seed: int = 0, fill=(-0.8, 0.8)) -> np.ndarray:
    """A real, non-normal n x n matrix with the given eigenvalues (complex ones with their conjugates added) and
    the rest drawn uniformly from the real interval `fill`."""
    rng = np.random.default_rng(seed)
    blocks = []
    for z in eigenvalues:
        blocks.append(np.array([[z.real, z.imag], [-z.imag, z.real]]) if z.imag else np.array([[z.real]]))
    while sum(len(b) for b in blocks) < n:
        blocks.append(np.array([[rng.uniform(*fill)]]))
    D = np.zeros((n, n))
    i = 0
    for b in blocks:
        D[i:i + len(b), i:i + len(b)] = b
        i += len(b)
    Q = np.linalg.qr(rng.normal(size=(n, n)))[0] @ (np.eye(n) + 0.3 * np.triu(rng.normal(size=(n, n)), 1))
    return Q @ D @ np.linalg.inv(Q)


class Linear(nn.Module):
    """F(x) = x M^T on (B, n) states: every sample's Jacobian is M."""

    def __init__(self, M: np.ndarray, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("M", torch.tensor(M * scale))

    def forward(self, x, *args, **kwargs):
        return x @ self.M.T


def as_set(pairs) -> set:
    return {complex(round(re, 6), round(im, 6)) for re, im in pairs}


PRESCRIBED = [complex(-0.5, 4.0), complex(2.0), complex(1.8), complex(-3.0, 0.5)]


def test_arnoldi_recovers_a_prescribed_complex_spectrum():
    M = matrix_with_spectrum(PRESCRIBED, 40)
    jac = Jacobian(Linear(M), torch.randn(1, 40, dtype=torch.float64))
    found = leading_eigenvalues(jac, k=2, tol=1e-12, maxiter=300)
    assert found["converged"] == {"LM": 2, "LR": 2, "SR": 2}
    for which, expected in (("LM", [-0.5 + 4j, -0.5 - 4j]), ("LR", [2.0, 1.8]), ("SR", [-3 + 0.5j, -3 - 0.5j])):
        got = sorted((complex(*z) for z in found[which]), key=lambda z: (z.real, z.imag))
        assert np.abs(np.array(got) - np.array(sorted(expected, key=lambda z: (z.real, z.imag)))).max() < 1e-6
    assert 0 < jac.products <= 3 * 20 * (300 + 1)


def test_the_batched_map_has_the_union_of_the_samples_spectra():
    """In eval mode nothing couples samples, so the batch's Jacobian is block-diagonal: its extreme eigenvalues
    are the extremes over the samples' own Jacobians (computed densely here)."""
    torch.manual_seed(0)
    M = torch.tensor(matrix_with_spectrum(PRESCRIBED, 12))
    f = lambda x: torch.tanh(x) @ M.T
    x = torch.randn(3, 12, dtype=torch.float64)
    dense = np.concatenate([np.linalg.eigvals((M * (1 - torch.tanh(xs) ** 2)).numpy()) for xs in x])
    found = leading_eigenvalues(Jacobian(f, x), k=1, tol=1e-12, maxiter=300)
    assert abs(complex(*found["LM"][0])) == pytest.approx(np.abs(dense).max(), rel=1e-8)
    assert found["LR"][0][0] == pytest.approx(dense.real.max(), rel=1e-8)
    assert found["SR"][0][0] == pytest.approx(dense.real.min(), rel=1e-8)


def test_batchnorm_couples_samples_in_train_mode_only():
    net = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6)).double()
    x = torch.randn(4, 6, dtype=torch.float64)
    bn_statistics_of(net, x)
    eval_out = net.eval()(x)
    train_out = net.train()(x)
    assert torch.allclose(train_out, eval_out, rtol=1e-12, atol=1e-12)  # normalised with the batch's statistics
    v = torch.zeros_like(x)
    v[0] = torch.randn(6, dtype=torch.float64)
    assert Jacobian(net.eval(), x).J(v)[1:].abs().max() == 0  # eval: block-diagonal over samples
    assert Jacobian(net.train(), x).J(v)[1:].abs().max() > 1e-3  # train: batch statistics couple them


def test_jacobian_products_equal_the_dense_jacobian():
    torch.manual_seed(1)
    lin = nn.Linear(5, 7).double()
    f = lambda x: torch.tanh(lin(x))
    x, v, u = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 7)
    dense = torch.autograd.functional.jacobian(f, x).reshape(14, 10)
    jac = Jacobian(f, x)
    assert torch.allclose(jac.J(v).reshape(-1), dense @ v.reshape(-1))
    assert torch.allclose(jac.T(u.double()).reshape(-1), dense.T @ u.double().reshape(-1))
    sigma = spectral_norm(jac, tol=1e-12, maxiter=200)
    assert sigma["converged"] and sigma["value"] == pytest.approx(torch.linalg.matrix_norm(dense, 2).item(), rel=1e-8)


def rk_net(M: np.ndarray, scheme: str = "rk4", stage_weights: str = "shared", scale: float = 1.0) -> nn.Module:
    return nn.Sequential(RKBlock(scheme, lambda: Linear(M, scale), stage_weights=stage_weights)).double()


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_a_block_scaled_out_of_its_region_is_reported_outside(scale):
    """F with eigenvalues -1 +- 0.5i, -0.5 and some in (-0.4, -0.1): RK4 steps h = 1 of it inside its region; scaled
    by 4 (-4 +- 2i) the pair leaves it (RK4 reaches -2.79 on the real axis)."""
    M = matrix_with_spectrum([complex(-1, 0.5), complex(-0.5)], 8, fill=(-0.4, -0.1))
    (block,) = diagnose(rk_net(M, scale=scale), torch.randn(2, 8, dtype=torch.float64), k=2)["blocks"]
    (stage,) = block["stages"]
    assert block["weights"] == "shared" and block["h"] == 1.0 and block["states"] == 2
    assert as_set(stage["LM"]) == as_set([(-scale, 0.5 * scale), (-scale, -0.5 * scale)])
    rk4 = TABLEAUS["rk4"]
    expected_step = largest_stable_step(rk4.A, rk4.b, complex(-scale, 0.5 * scale))[0]
    assert stage["stable_step"] == pytest.approx(expected_step, rel=1e-6)
    if scale == 1.0:
        assert stage["inside"] == stage["decaying_inside"] == 1.0 and stage["max_amplification"] < 1
    else:
        assert stage["inside"] < 1 and stage["max_amplification"] > 1 and stage["stable_step"] < 1


def test_separate_stage_subnets_each_get_their_own_spectrum_and_the_step_its_norm():
    """Four linear sub-nets (HO-ResNet stacking): each stage's eigenvalues are its own F's, and the step's spectral
    norm is that of the exact step matrix, built densely here."""
    Ms = [matrix_with_spectrum([complex(-1.0 - i, 0.3)], 6, seed=i) for i in range(4)]
    made = iter(Ms)
    net = nn.Sequential(RKBlock("rk4", lambda: Linear(next(made)), stage_weights="separate")).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    (block,) = diagnose(net, x)["blocks"]
    assert block["weights"] == "separate" and [s["stage"] for s in block["stages"]] == [0, 1, 2, 3]
    for stage, M in zip(block["stages"], Ms, strict=True):
        assert max(abs(complex(*z)) for z in stage["LM"]) == pytest.approx(np.abs(np.linalg.eigvals(M)).max(), 1e-6)
    dense = torch.autograd.functional.jacobian(net, x).reshape(6, 6)
    assert block["step_norm"]["value"] == pytest.approx(torch.linalg.matrix_norm(dense, 2).item(), rel=1e-2)


FAMILIES = {"rknet": {"channels": [4]}, "odenet": {"channels": [4]}, "odenet_dopri5": {"channels": [4]},
            "rkcnn": {"channels": [4]}, "horesnet_authors": {}}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_kind_of_block_is_diagnosed(family):
    from odenets.models.horesnet import horesnet
    from odenets.models.odenet import odenet
    from odenets.models.rkcnn import rkcnn
    from odenets.models.rknet import rknet

    torch.manual_seed(0)
    net = {"rknet": lambda: rknet(in_channels=1, preprocessor="cliquenet", **FAMILIES[family]),
           "odenet": lambda: odenet(in_channels=1, preprocessor="cliquenet", **FAMILIES[family]),
           "odenet_dopri5": lambda: odenet(in_channels=1, preprocessor="cliquenet", method="dopri5", channels=[4]),
           "rkcnn": lambda: rkcnn(in_channels=1, preprocessor="cliquenet", **FAMILIES[family]),
           "horesnet_authors": lambda: horesnet("midpoint", 14, in_channels=1, width=8, block="authors",
                                                trunk="authors")}[family]()
    x = torch.randn(2, 1, 8, 8)
    bn_statistics_of(net, x)
    blocks = diagnose(net, x)["blocks"]
    assert blocks and all(b["step_norm"]["value"] > 0 for b in blocks)
    kinds = {b["type"] for b in blocks}
    if family == "rkcnn":  # its stages read concatenations: only the step is square
        assert kinds == {"RKCNNBlock"} and all(not b["stages"] for b in blocks)
    elif family.startswith("odenet"):  # torchdiffeq's solver: no tableau, h = 1 / steps where the grid is fixed
        assert kinds == {"ODEBlock"} and blocks[0]["A"] is None
        assert blocks[0]["h"] == (None if family == "odenet_dopri5" else 1 / 3)
    else:
        assert kinds == {"RKBlock"} and all(s["converged"]["LM"] for b in blocks for s in b["stages"])
    if family == "horesnet_authors":  # a down-sampling block's first stage reads the block input, not its state
        assert blocks[1]["stages"][0]["LM"] == [[0.0, 0.0]]


class Smooth(nn.Module):
    """A smooth field F(y) = tanh(W y) - 0.5 y: the network it makes is an ODE."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6, bias=False)
        self.lin.weight.data *= 0.5  # Lipschitz constant below 1: n = 1 is already in the asymptotic range

    def forward(self, y, *args, **kwargs):
        return torch.tanh(self.lin(y)) - 0.5 * y


def test_a_network_that_is_an_ode_shows_each_schemes_order():
    torch.manual_seed(0)
    net = nn.Sequential(RKBlock("heun", Smooth, stage_weights="shared"), RKBlock("heun", Smooth, "shared")).double()
    out = measured_order(net, torch.randn(8, 6, dtype=torch.float64), ["euler", "heun", "rk4"])
    assert out["reference"] == {"scheme": "rk4", "substeps": 64}
    for scheme, p in (("euler", 1), ("heun", 2), ("rk4", 4)):
        fit = out["schemes"][scheme]
        assert fit["expected"] == p and abs(fit["order"] - p) < 0.25, (scheme, fit)
        assert fit["interval"][0] < fit["order"] < fit["interval"][1]
        assert all(a > b for a, b in zip(fit["errors"], fit["errors"][1:], strict=False))


def test_fitted_order_is_the_slope_and_leaves_out_rounding():
    steps = [1, 0.5, 0.25, 0.125]
    exact = fitted_order(steps, [3 * s**2 for s in steps])
    assert exact["order"] == pytest.approx(2) and exact["interval"][1] - exact["interval"][0] < 1e-8
    assert fitted_order(steps, [1e-3, 1e-13, 1e-14, 1e-14]) == {"order": None, "interval": None, "points": 1}


def test_the_initial_weights_are_those_training_started_from(run_inprocess):
    _, run_dir = run_inprocess(["optimizer.lr=1e-30", "optimizer.weight_decay=0"])  # lr = 0 is refused
    trained = load_trained(run_dir, "last")
    initial = initial_network(trained.cfg)[1]
    params = dict(initial.named_parameters())
    assert params and all(torch.allclose(p, params[name], rtol=0, atol=1e-24)
                          for name, p in trained.net.named_parameters())
    other = initial_network(OmegaConf.merge(trained.cfg, {"seed": trained.cfg.seed + 1}))[1]
    assert not torch.equal(next(other.parameters()), next(initial.parameters()))


def test_diagnose_a_recurrent_run_into_eval_json(run_inprocess, tmp_path):
    _, run_dir = run_inprocess(["model=ode_rnn", "scheme=euler", "model.hidden_size=8"])
    evaluate(run_dir)
    entry = diagnose_run(run_dir, batch=2)
    assert entry["kind"] == "diagnostics" and entry["settings"]["batch"] == 2 and entry["code"]["modules"]
    for state in ("trained", "initial"):
        (block,) = entry["states"][state]["blocks"]
        assert block["scheme"] == "euler" and block["states"] == 2 * 8  # 2 sequences x 8 image rows
        assert block["stages"][0]["converged"]["LM"] == 2 and block["step_norm"]["value"] > 0
        order = entry["states"][state]["order"]
        assert set(order["schemes"]) == {"euler", "heun", "rk4"}
        assert all(fit["order"] is not None for fit in order["schemes"].values())
    cost = entry["cost"]
    assert cost["products"] > 0 and 0 < cost["cpu_seconds"] and 0 < cost["seconds"] < cost["with_loading_seconds"]
    (run,) = load_runs(run_dir)
    renderer = Renderer(tmp_path / "figures")
    stability_figures(renderer, [run])
    assert {p.stem.split("_digits")[0] for p in renderer.written} == {"stability_regions", "ode_stability", "ode_order"}
    assert [e.get("kind") for e in evaluations(run)] == [None]  # the integration figure reads test evaluations only
    diagnose_run(run_dir, batch=2, init=False, order=False)  # replaces the earlier diagnosis, keeps the evaluation
    kinds = [e.get("kind") for e in read_evaluations(run_dir)]
    assert sorted(kinds, key=str) == [None, "diagnostics"]


def test_diagnose_a_separate_weight_stack(run_inprocess):
    _, run_dir = run_inprocess(["scheme=midpoint", "depth=6"])  # HO-ResNet: one sub-net per stage, one block
    entry = diagnose_run(run_dir, batch=2, init=False)
    trained = entry["states"]["trained"]
    assert "separate sub-net per stage" in trained["order"]["skipped"]
    (block,) = trained["blocks"]
    assert block["weights"] == "separate" and len(block["stages"]) == 2
    assert trained["stack"]["module"] == "blocks" and trained["stack"]["norm"]["value"] == block["step_norm"]["value"]
    (run,) = load_runs(run_dir)
    (diagnosis,) = [e for e in run["evaluations"] if e.get("kind") == "diagnostics"]
    lam = max(abs(complex(*z)) for s in block["stages"] for z in s["LM"])
    diagnosis["states"]["trained"]["blocks"][0]["h"] = 40 / lam  # h lambda 20x the midpoint region's reach
    (ax,) = plot_stability([run]).axes
    assert ax.get_xscale() == ax.get_yscale() == "symlog" and 0 in ax.get_xticks() and max(ax.get_xticks()) >= 10


BAD = [(["batch=0"], "batch='0'; allowed: an integer >= 1"),
       (["init=maybe"], "init='maybe'; allowed: true, false"),
       (["schemes=euler,nope"], "unknown scheme 'nope'"),
       (["substeps=1,2"], "at least three increasing integers"),
       (["reference=8"], "reference=8 must exceed the largest of substeps"),
       (["which=middle"], "which='middle'; allowed: best, last"),
       (["dataset.name=cifar10"], "evaluation can change the keys"),
       (["batch"], "arguments after the run are key=value")]


def test_bad_input_is_one_line_and_exit_2(run_inprocess, capsys, tmp_path):
    _, run_dir = run_inprocess(["scheme=midpoint", "depth=6"])
    for args, message in [*BAD, ([str(tmp_path / "nothing")], "is not a run directory")]:
        with pytest.raises(SystemExit) as stop:
            main([str(run_dir), *args] if "nothing" not in args[0] else args)
        err = capsys.readouterr().err.strip().splitlines()
        assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not read_evaluations(run_dir)  # nothing was recorded


def test_a_model_without_ode_blocks_is_refused(run_inprocess, capsys):
    _, run_dir = run_inprocess(["model=lstm", "model.hidden_size=8"])
    with pytest.raises(SystemExit) as stop:
        main([str(run_dir), "init=false"])
    assert stop.value.code == 2 and "model=lstm: the model has no ODE block" in capsys.readouterr().err


def test_costs_are_bounded_and_counted():
    M = matrix_with_spectrum(PRESCRIBED, 30)
    jac = Jacobian(Linear(M), torch.randn(1, 30, dtype=torch.float64))
    leading_eigenvalues(jac, k=2, ncv=10, maxiter=2, tol=1e-14)
    assert 0 < jac.products <= 3 * 10 * (2 + 1)  # at most ncv (maxiter + 1) per kind
    assert math.isfinite(spectral_norm(Jacobian(Linear(M), torch.randn(1, 30, dtype=torch.float64)))["value"])


def test_the_step_norm_converges_on_a_cluster_of_leading_singular_values():
    """Ten singular values within 1e-2 of the largest (as in initial HO-ResNet blocks): Lanczos with fewer vectors
    than the cluster (ncv = 8) stopped without a value; the default converges to it."""
    n, rng = 300, np.random.default_rng(0)
    U, V = (np.linalg.qr(rng.normal(size=(n, n)))[0] for _ in range(2))
    s = np.r_[10 - 1e-3 * np.arange(10), 9 * 0.99 ** np.arange(n - 10)]
    jac = Jacobian(Linear(U @ np.diag(s) @ V.T), torch.randn(1, n, dtype=torch.float64))
    sigma = spectral_norm(jac)
    assert sigma["converged"] and sigma["value"] == pytest.approx(10, rel=1e-4) and jac.products <= 16 * 31
