"""RKCNN: the RK block variants against Algorithm 1 written out by hand, paper names, shapes and a training step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from odenets.errors import ConfigError
from odenets.models import count_params, create_model
from odenets.models.rkcnn import RKCNNBlock, format_paper_name, parse_paper_name


# --------------------------------------------------------------------------- Algorithm 1, independently
def bottleneck_reference(layer: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """[1x1, k; 3x3, k], each conv after BN (eval statistics) and ReLU, from the layer's tensors."""
    for unit in layer:  # (norm, ReLU, conv)
        bn, conv = unit[0], unit[2]
        z = F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        z = F.conv2d(F.relu(z), conv.weight, padding=conv.kernel_size[0] // 2)
    return z


def algorithm1(block: RKCNNBlock, y: torch.Tensor, variant: str) -> torch.Tensor:
    """Algorithm 1 of the paper, line by line, with 1-based stages."""
    s = block.stages
    net_E = {i: block.phase1.layers[i - 1] for i in range(1, s + 1)}
    net_I = {i: block.phase2[i - 1] for i in range(1, s + 1)} if variant != "E" else {}
    x, e = {}, {}
    for i in range(1, s + 1):  # lines 1-5, eq. 26
        x[i] = bottleneck_reference(net_E[i], torch.cat([y] + [x[j] for j in range(1, i)], 1))
    for i in range(1, s + 1):  # lines 6-18
        if variant == "E":
            e[i] = x[i]
        elif variant == "I":  # eq. 28
            inputs = [y] + [e[j] for j in range(1, i)] + [x[j] for j in range(i + 1, s + 1)]
            e[i] = bottleneck_reference(net_I[i], torch.cat(inputs, 1))
        else:  # eq. 27
            inputs = [y] + [x[j] for j in range(1, s + 1) if j != i]
            e[i] = bottleneck_reference(net_I[i], torch.cat(inputs, 1))
    y_next = y  # lines 19-24, eq. 7
    for i in range(1, s + 1):
        y_next = y_next + e[i]
    return y_next


def randomised_block(variant: str, k: int = 3, s: int = 3) -> RKCNNBlock:
    torch.manual_seed(0)
    block = RKCNNBlock(k, s, variant).double().eval()
    for m in block.modules():  # non-trivial norm statistics and affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return block


@pytest.mark.parametrize("variant", ["E", "I", "R"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_block_matches_algorithm1(variant, s):
    block = randomised_block(variant, s=s)
    y = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(y), algorithm1(block, y, variant), atol=1e-6, rtol=1e-6)


def test_variants_I_and_R_differ_only_in_replacement():
    """Same weights: R updates every stage from the Phase-I values, I from the latest ones (eq. 27 vs 28)."""
    block_i, block_r = randomised_block("I"), randomised_block("R")
    block_r.load_state_dict(block_i.state_dict())
    y = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        assert not torch.allclose(block_i(y), block_r(y))
        torch.testing.assert_close(block_r(y), algorithm1(block_i, y, "R"))


def test_block_widths_follow_rules():
    """Phase I grows k per stage from k (Rules a/1, b/2); Phase II reads y_n and s-1 stages, s*k channels (Rule 4)."""
    block = RKCNNBlock(8, 3, "R")
    assert [layer[0][2].in_channels for layer in block.phase1.layers] == [8, 16, 24]
    assert [layer[0][2].in_channels for layer in block.phase2] == [24, 24, 24]
    assert all(layer[1][2].out_channels == 8 for layer in [*block.phase1.layers, *block.phase2])
    assert RKCNNBlock(8, 3, "E").phase2 is None


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, variant, stages", [("RKCNN-E-2", "E", [2]), ("RKCNN-R-3_4_4", "R", [3, 4, 4]),
                                                   ("RKCNN-I-5_5_6", "I", [5, 5, 6])])
def test_paper_name_round_trip(name, variant, stages):
    assert parse_paper_name(name) == (variant, stages)
    assert format_paper_name(variant, stages) == name
    model = create_model("rkcnn", paper_name=name, channels=4)
    assert model.paper_name == name and model.stages == stages and model.variant == variant
    assert create_model("rkcnn", variant=variant, stages=stages, channels=4).paper_name == name


@pytest.mark.parametrize("name", ["RKCNN-X-2", "RKCNN-R-", "RKCNN-R-2__2", "rkcnn r 2", "ResNet-18"])
def test_bad_paper_name(name):
    with pytest.raises(ConfigError, match="RKCNN-<E|I|R>"):
        parse_paper_name(name)


def test_config_errors():
    with pytest.raises(ConfigError, match="disagrees"):
        create_model("rkcnn", paper_name="RKCNN-R-2_2_2", variant="I")
    with pytest.raises(ConfigError, match="at least 2 stages"):
        create_model("rkcnn", variant="I", stages=[1, 2, 2], channels=4)
    with pytest.raises(ConfigError, match="variant"):
        create_model("rkcnn", variant="Q", channels=4)
    with pytest.raises(ConfigError, match="one per period"):
        create_model("rkcnn", stages=[2, 2], channels=[4, 4, 4])
    with pytest.raises(ConfigError, match="preprocessor"):
        create_model("rkcnn", channels=4, preprocessor="vgg")


def test_defaults_and_one_period():
    assert create_model("rkcnn", channels=[4, 4, 4]).paper_name == "RKCNN-R-2_2_2"
    assert create_model("rkcnn", channels=[4]).paper_name == "RKCNN-R-2"
    assert create_model("rkcnn", stages=3, channels=[4, 4]).paper_name == "RKCNN-R-3_3"


def test_time_steps_per_period():
    """r time steps per period (Fig. 1): r RK blocks, r times the block parameters."""
    one = create_model("rkcnn", variant="I", channels=[4, 4])
    two = create_model("rkcnn", variant="I", channels=[4, 4], steps=[2, 1])
    assert len(two.periods[0]) == 2 and len(two.periods[1]) == 1
    assert count_params(two) - count_params(one) == count_params(one.periods[0])


# --------------------------------------------------------------------------- shapes and training
@pytest.mark.parametrize("variant", ["E", "I", "R"])
@pytest.mark.parametrize("kw, shape", [
    (dict(channels=[4, 6, 5], stages=[2, 3, 2], num_classes=7), (2, 3, 8, 8)),  # SVHN/CIFAR: three periods
    (dict(channels=[4], stages=[2], preprocessor="rknet", norm="group", in_channels=1), (2, 1, 12, 12)),  # MNIST
    (dict(channels=[4, 4], dropout=0.2, attention=False, multiscale=False), (2, 3, 8, 8)),
])
def test_forward_and_training_step(variant, kw, shape):
    torch.manual_seed(0)
    model = create_model("rkcnn", variant=variant, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, target = torch.randn(shape), torch.tensor([0, 1])
    out = model(x)
    assert out.shape == (2, kw.get("num_classes", 10))
    loss = F.cross_entropy(out, target)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_mnist_preprocessor_geometry():
    """[3x3, k; 4x4, k, /2, 1; 4x4, k, /2, 1] as RK-Net's: 28 -> 26 -> 13 -> 6."""
    model = create_model("rkcnn", channels=[5], preprocessor="rknet", in_channels=1)
    assert model.pre(torch.zeros(1, 1, 28, 28)).shape == (1, 5, 6, 6)


def test_transition_outputs_next_k_and_attends():
    """The transition's 1x1 conv outputs the next period's k (Sec. 4.1.2), then attention and 2x2 pooling."""
    model = create_model("rkcnn", channels=[4, 6, 8])
    assert [t[0][2].out_channels for t in model.transitions] == [6, 8]
    y = model.transitions[0](torch.randn(1, 4, 8, 8))
    assert y.shape == (1, 6, 4, 4)
    assert model.fc.in_features == 4 + 6 + 8  # multiscale: every period's final state
