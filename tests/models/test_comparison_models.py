"""The RKCNN paper's comparison models (and the HO-ResNet-trunk LM/Momentum ResNets): equations, shapes, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from odenets.config import compose
from odenets.core.blocks import RKBlock
from odenets.errors import ConfigError
from odenets.models import build_model, count_params, create_model
from odenets.models.cliquenet import CliqueBlock
from odenets.models.odenet import ODEBlock
from odenets.models.rknet import ODEFunc

TINY = dict(channels=[4, 4, 4], num_classes=5)
FRAMEWORK_MODELS = [
    ("preact_resnet", {}), ("preact_resnet", dict(bottleneck=True)), ("rknn", {}), ("rknet", {}),
    ("odenet", dict(method="explicit_adams")), ("odenet", dict(method="implicit_adams", tol=0.5)),
    ("odenet", dict(method="dopri5", tol=1e-2)), ("densenet", {}), ("cliquenet", dict(layers=[2, 3, 2])),
]


def training_step(model, x, num_classes):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = model(x)
    assert out.shape == (x.shape[0], num_classes)
    F.cross_entropy(out, torch.arange(x.shape[0]) % num_classes).backward()
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("name, kw", FRAMEWORK_MODELS, ids=lambda v: str(v))
def test_framework_models_train(name, kw):
    torch.manual_seed(0)
    training_step(create_model(name, **TINY, **kw), torch.randn(2, 3, 8, 8), 5)


@pytest.mark.parametrize("name, kw", [("lm_resnet", {}), ("momentum_resnet", dict(gamma=0.5))])
def test_horesnet_trunk_models_train(name, kw):
    torch.manual_seed(0)
    training_step(create_model(name, depth=8, width=4, num_classes=5, in_channels=1, **kw), torch.randn(2, 1, 6, 6), 5)


@pytest.mark.parametrize("name", ["preact_resnet", "rknn", "rknet", "odenet", "densenet", "cliquenet", "rkcnn"])
def test_model_configs_build_for_mnist(name):
    """conf/model/<name>.yaml with the MNIST recipe: one period behind RK-Net's preprocessor."""
    cfg = compose(["experiment=rkcnn/mnist", f"model={name}", "model.channels=[4]"])
    model = build_model(cfg.model)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lm_resnet", "momentum_resnet"])
def test_trunk_model_configs_build(name):
    model = build_model(compose([f"model={name}", "depth=6", "model.width=4"]).model)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


# --------------------------------------------------------------------------- equations
def test_preact_resnet_is_one_euler_step_per_period():
    model = create_model("preact_resnet", **TINY)
    block = model.periods[0]
    y = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(block(y), y + block.F[0](y))


def test_rknet_and_rknn_share_f_across_rk4_stages():
    rknet, rknn = create_model("rknet", **TINY), create_model("rknn", **TINY)
    for model in (rknet, rknn):
        assert all(len(p.F) == 1 and p.scheme.name == "rk4" for p in model.periods)
    # the time channel is the only difference: one extra input channel in each of the two 3x3 convs per period
    assert count_params(rknet) - count_params(rknn) == 3 * 2 * 4 * 9


def test_odefunc_time_input():
    torch.manual_seed(0)
    f = ODEFunc(3, time_input=True).eval()
    y = torch.randn(1, 3, 4, 4)
    assert not torch.allclose(f(y, 0.0), f(y, 1.0))
    g = ODEFunc(3, time_input=False).eval()
    torch.testing.assert_close(g(y, 0.0), g(y, 1.0))


class Counted(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f, self.calls = f, 0

    def forward(self, y, t=0.0):
        self.calls += 1
        return self.f(y, t)


def test_odenet_single_step_is_the_rk4_38_starter():
    """torchdiffeq starts its Adams methods with the RK4 3/8 rule: one step equals our RKBlock("rk4_38")."""
    torch.manual_seed(0)
    f = ODEFunc(3, time_input=True).double().eval()
    y = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    reference = RKBlock("rk4_38", lambda: f, stage_weights="shared", time_input=True)
    with torch.no_grad():
        for method in ("explicit_adams", "implicit_adams"):
            torch.testing.assert_close(ODEBlock(f, method, steps=1)(y), reference(y), atol=1e-10, rtol=1e-10)


def test_odenet_function_evaluations():
    """Three steps per period: two RK4-3/8 starter steps (4 + 4), then an Adams step that first evaluates f at the
    current state (+1) and, if implicit, corrects at least once and at most four times."""
    torch.manual_seed(0)
    y = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        explicit = ODEBlock(Counted(ODEFunc(3).eval()), "explicit_adams", steps=3)
        explicit(y)
        assert explicit.func.calls == 9
        implicit = ODEBlock(Counted(ODEFunc(3).eval()), "implicit_adams", steps=3, tol=0.5)
        implicit(y)
        assert 10 <= implicit.func.calls <= 13


def test_odenet_rejects_unknown_method():
    with pytest.raises(ConfigError, match="method"):
        create_model("odenet", method="rk45", **TINY)


def clique_reference(block: CliqueBlock, y: torch.Tensor) -> torch.Tensor:
    """CliqueNet with one 1x1 kernel W[j][i] per ordered pair of nodes (0 = block input), summed per input."""
    n, k = block.n, block.k
    W = {(0, i): block.w_in[i - 1] for i in range(1, n + 1)}
    for i in range(1, n + 1):
        others = [j for j in range(1, n + 1) if j != i]
        for pos, j in enumerate(others):
            W[(j, i)] = block.w[i - 1][:, pos * k:(pos + 1) * k]

    def layer(i, sources, values, norms):
        z = torch.relu(norms[0](torch.cat(values, 1)))
        parts = z.split([v.shape[1] for v in values], 1)
        z = sum(F.conv2d(p, W[(j, i)][..., None, None]) for j, p in zip(sources, parts, strict=True))
        return block.conv3[i - 1](torch.relu(norms[1](z)))

    x = {0: y}
    for i in range(1, n + 1):  # Stage I
        x[i] = layer(i, list(range(i)), [x[j] for j in range(i)], block.stage1_norms[i - 1])
    for i in range(1, n + 1):  # Stage II, latest values
        sources = [j for j in range(1, n + 1) if j != i]
        x[i] = layer(i, sources, [x[j] for j in sources], block.stage2_norms[i - 1])
    return torch.cat([x[i] for i in range(1, n + 1)], 1)


def test_clique_block_shares_pair_weights_between_stages():
    torch.manual_seed(0)
    block = CliqueBlock(5, 3, 3).eval()
    y = torch.randn(1, 5, 4, 4)
    with torch.no_grad():
        features, post = block(y)
        torch.testing.assert_close(features, clique_reference(block, y))
        torch.testing.assert_close(post, torch.cat([y, features], 1))
    # 1x1 weights: n*c_in from the input plus n(n-1) k x k pairs; 3x3: n k x k x 9 (shared by both stages)
    weights = sum(p.numel() for name, p in block.named_parameters() if "norms" not in name)
    assert weights == 3 * 3 * 5 + 3 * 2 * 3 * 3 + 3 * 3 * 3 * 9


def test_densenet_hands_all_features_on():
    model = create_model("densenet", channels=[4, 6], layers=[2, 3])
    assert [t[0][2].in_channels for t in model.transitions] == [4 + 2 * 4]
    assert model.fc.in_features == (4 + 2 * 4) + (6 + 3 * 6)


@pytest.mark.parametrize("name, kw, match", [
    ("cliquenet", dict(layers=1), "at least 2 layers"),
    ("preact_resnet", dict(bottleneck=True, channels=[2]), "k >= 4"),
    ("densenet", dict(layers=[2, 2]), "one per period"),
])
def test_config_errors(name, kw, match):
    with pytest.raises(ConfigError, match=match):
        create_model(name, **{**TINY, **kw})


# --------------------------------------------------------------------------- HO-ResNet trunk
def test_lm_resnet_with_k_zero_is_a_resnet():
    torch.manual_seed(0)
    lm = create_model("lm_resnet", depth=8, width=4, in_channels=1).eval()
    resnet = create_model("horesnet", scheme="euler", depth=8, width=4, in_channels=1).eval()
    assert len(lm.k) == len(lm.blocks) - 1 and all(-0.1 <= k <= 0 for k in lm.k.tolist())
    resnet.load_state_dict({k: v for k, v in lm.state_dict().items() if k != "k"})
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert not torch.allclose(lm(x), resnet(x))
        lm.k.zero_()
        torch.testing.assert_close(lm(x), resnet(x))


def test_lm_resnet_two_step_update():
    torch.manual_seed(0)
    lm = create_model("lm_resnet", depth=6, width=4, in_channels=1).eval()  # two blocks
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        x0 = lm.stem(x)
        x1 = x0 + lm.blocks[0].F[0](x0)
        x2 = (1 - lm.k[0]) * x1 + lm.k[0] * x0 + lm.blocks[1].F[0](x1)
        torch.testing.assert_close(lm(x), lm.head(x2))


def test_momentum_resnet():
    torch.manual_seed(0)
    m = create_model("momentum_resnet", depth=6, gamma=0.9, width=4, in_channels=1).eval()
    x = torch.randn(1, 1, 6, 6)
    with torch.no_grad():
        x0 = m.stem(x)
        v1 = 0.1 * m.blocks[0].F[0](x0)
        x1 = x0 + v1
        x2 = x1 + 0.9 * v1 + 0.1 * m.blocks[1].F[0](x1)
        torch.testing.assert_close(m(x), m.head(x2))
        m.gamma = 0.0  # no momentum: a ResNet
        resnet = create_model("horesnet", scheme="euler", depth=6, width=4, in_channels=1).eval()
        resnet.load_state_dict(m.state_dict())
        torch.testing.assert_close(m(x), resnet(x))
    with pytest.raises(ConfigError, match="gamma"):
        create_model("momentum_resnet", depth=6, gamma=1.0)
