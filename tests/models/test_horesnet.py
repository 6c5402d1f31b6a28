"""HO-ResNet: depth arithmetic, Table 3 parameter counts, forward/backward; the authors' block, trunk and
init (model.block/trunk/init=authors); equal integration time (model.equal_time)."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from helpers import REPO
from odenets.config import compose
from odenets.core.blocks import RKBlock
from odenets.core.schemes import scheme_from_config
from odenets.errors import ConfigError
from odenets.models import build_model, count_params, create_model
from odenets.models.horesnet import (
    DownsamplingStage,
    PreActSubNet,
    ShortcutA,
    TrunkBlock,
    VGGSubNet,
    blocks_for_depth,
    layers_per_block,
)

PUBLISHED = yaml.safe_load((REPO / "src/odenets/reporting/published/horesnet_table3.yaml").read_text())


@pytest.mark.parametrize("scheme,per_block", [("euler", 2), ("midpoint", 4), ("rk4", 8), ("rk8", 28), ("dopri5", 12)])
def test_layers_per_block(scheme, per_block):
    assert layers_per_block(scheme_from_config(scheme)) == per_block


@pytest.mark.parametrize("scheme,depth,blocks", [("rk4", 58, 7), ("euler", 86, 42), ("rk8", 86, 3), ("rk4", 82, 10),
                                                 ("midpoint", 6, 1)])
def test_depth_to_blocks(scheme, depth, blocks):
    assert blocks_for_depth(scheme_from_config(scheme), depth) == blocks


@pytest.mark.parametrize("scheme,depth,nearest", [("rk4", 30, "26 or 34"), ("rk8", 40, "30 or 58"),
                                                  ("rk4", 5, "10"), ("euler", 11, "10 or 12")])
def test_invalid_depth_names_the_nearest_valid_ones(scheme, depth, nearest):
    with pytest.raises(ConfigError, match=f"nearest valid depths: {nearest}$"):
        blocks_for_depth(scheme_from_config(scheme), depth)


def weight_params(model) -> int:
    """Convolution and linear weights plus learned step sizes: what the paper's Table 3 counts."""
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1 or n.endswith(".h"))


@pytest.mark.parametrize("row", PUBLISHED["rows"], ids=lambda r: r["row"])
def test_table3_parameter_counts(row):
    cfg = compose(row["overrides"])
    model = build_model(cfg.model)
    published = row["published"]
    ours = weight_params(model)
    extra = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".h"))
    assert extra == published["params_extra"]
    if cfg.depth in (82, 86):  # documented: the paper's 3.01M / 2.87M fit no count of these depths
        assert row["note"] and round(ours, -4) > published["params"]
    else:
        assert round(ours - extra, -4) == published["params"]
    # All trainable parameters add BatchNorm's affine weights: 256 per sub-net, 128 in the stem.
    n_subnets = (cfg.depth - 2) // 2
    assert count_params(model) == ours + 256 * n_subnets + 128 + 10


def test_equal_depth_means_equal_parameters():
    counts = {s: count_params(create_model("horesnet", scheme=s, depth=58))
              for s in ("euler", "midpoint", "rk4", "rk8")}
    assert len(set(counts.values())) == 1


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4", "rk8_adaptive"])
def test_forward_backward(scheme):
    cfg = compose([f"scheme={scheme}", "depth=30" if "rk8" in scheme else "depth=10", "dataset=cifar10",
                   "model.width=8"])
    model = build_model(cfg.model)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------- the authors' block, trunk, init
def small(scheme="rk4", depth=10, **kw) -> nn.Module:
    torch.manual_seed(0)
    return create_model("horesnet", scheme=scheme, depth=depth, width=kw.pop("width", 8), in_channels=1, **kw)


def test_the_authors_sub_net_is_pre_activated():
    """Their F: conv2(relu(bn2(conv1(relu(bn1(x)))))) with bn1 over the input's channels (HO-ResNet.py)."""
    f = PreActSubNet(8, c_in=4, stride=2)
    assert [type(m) for m in f] == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert f[0].num_features == 4 and f[2].in_channels == 4 and f[2].stride == (2, 2) and f[3].num_features == 8
    assert all(m.bias is None for m in f if isinstance(m, nn.Conv2d))
    assert [type(m) for m in VGGSubNet(8)] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]


def test_the_authors_block_is_relu_after_the_shared_rk_step():
    model = small("rk4", block="authors").double().eval()
    (block,) = model.blocks
    assert isinstance(block, TrunkBlock) and block.post_relu and block.shortcut is None
    assert isinstance(block.step, RKBlock) and block.step.scheme.name == "rk4"
    assert all(isinstance(f, PreActSubNet) for f in block.step.F) and len(block.step.F) == 4
    x = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    F1, F2, F3, F4 = block.step.F  # eq. 10-11 by hand, then their ReLU
    k1 = F1(x)
    k2 = F2(x + k1 / 2)
    k3 = F3(x + k2 / 2)
    k4 = F4(x + k3)
    step = x + (k1 + 2 * k2 + 2 * k3 + k4) / 6
    torch.testing.assert_close(block.step(x), step)
    torch.testing.assert_close(block(x), torch.relu(step))
    assert (step < 0).any() and (block(x) >= 0).all()


def test_the_paper_block_is_the_bare_rk_step():
    model = small("euler", block="paper")
    assert all(type(b) is RKBlock for b in model.blocks)  # no ReLU after the addition, no wrapper


@pytest.mark.parametrize("scheme", ["euler", "midpoint", "rk4"])
def test_the_authors_block_has_the_papers_parameter_count(scheme):
    assert count_params(small(scheme, block="authors")) == count_params(small(scheme, block="paper"))


def test_the_authors_trunk():
    """CFResNet: conv(3, 16, stride 2) stem, stages of 16/32/64 (n blocks each), option-A down-sampling, pool-linear."""
    model = small("rk4", depth=26, width=64, block="authors", trunk="authors")
    assert model.stem[0].out_channels == 16 and model.stem[0].stride == (2, 2)
    assert [type(m) for m in model.head] == [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    first, second, third = model.blocks
    assert first.shortcut is None and isinstance(second.shortcut, ShortcutA) and isinstance(third.shortcut, ShortcutA)
    stages = second.step.F
    assert isinstance(second.step, RKBlock) and all(isinstance(f, DownsamplingStage) for f in stages)
    assert [f.reads_block_input for f in stages] == [True, False, False, False]
    assert stages[0].subnet[2].in_channels == 16 and stages[0].subnet[2].stride == (2, 2)
    assert stages[1].subnet[2].in_channels == 32 and stages[1].subnet[2].stride == (1, 1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_a_down_sampling_block_is_one_rk_step_from_the_option_a_shortcut():
    model = small("midpoint", depth=14, width=16, block="authors", trunk="authors").double().eval()
    block = model.blocks[1]
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    y = torch.nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))  # 4 -> 8 channels, new ones zero
    torch.testing.assert_close(block.shortcut(x), y)
    F1, F2 = (f.subnet for f in block.step.F)
    k1 = F1(x)  # the first stage reads the block input, strided
    torch.testing.assert_close(block(x), torch.relu(y + F2(y + k1 / 2)))


@pytest.mark.parametrize("scheme,depth,nearest", [("rk4", 10, "26"), ("euler", 10, "8 or 14")])
def test_the_authors_trunk_needs_blocks_in_threes(scheme, depth, nearest):
    with pytest.raises(ConfigError, match=f"blocks a multiple of 3 \\(trunk=authors\\)\\); nearest valid depths: "
                                          f"{nearest}$"):
        small(scheme, depth=depth, trunk="authors")


def test_the_authors_trunk_keeps_equal_parameters_at_equal_depth():
    counts = {s: count_params(small(s, depth=26, trunk="authors", block="authors"))
              for s in ("euler", "midpoint", "rk4")}
    assert len(set(counts.values())) == 1


def test_the_authors_init_is_kaiming_normal_fan_in_on_convs_and_the_linear_layer():
    model = small("euler", depth=4, width=64, init="authors")
    conv = model.blocks[0].F[0][0].weight  # 64 x 64 x 3 x 3: fan_in 576
    linear = model.head[-1].weight  # 10 x 64: fan_in 64
    assert conv.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)
    assert linear.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.25)
    paper = small("euler", depth=4, width=64)
    assert paper.blocks[0].F[0][0].weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)  # fan_out = fan_in
    assert paper.head[-1].weight.abs().max().item() <= 64 ** -0.5  # torch's default U(+-1/sqrt(fan_in))


@pytest.mark.parametrize("key,value", [("block", "vgg"), ("trunk", "cifar"), ("init", "xavier")])
def test_unknown_options_name_the_allowed_ones(key, value):
    with pytest.raises(ConfigError, match=f"^model.{key}='{value}' is not allowed; expected paper or authors$"):
        small(**{key: value})


# --------------------------------------------------------------------------- equal integration time
def total_time(model) -> float:
    return sum(float(m.h) for m in model.modules() if isinstance(m, RKBlock))


@pytest.mark.parametrize("depth,schemes", [(10, ["euler", "midpoint", "rk4"]), (30, ["euler", "midpoint", "rk8"]),
                                           (26, ["euler", "midpoint", "rk4"])])
def test_equal_time_gives_every_scheme_eulers_integration_time(depth, schemes):
    times, steps = {}, {}
    for scheme in schemes:
        cfg = compose(["experiment=horesnet/orderings_equal_time", f"scheme={scheme}", f"depth={depth}",
                       "model.width=4"])
        model = build_model(cfg.model)
        times[scheme] = total_time(model)
        steps[scheme] = {float(m.h) for m in model.modules() if isinstance(m, RKBlock)}
    assert set(times.values()) == {(depth - 2) / 2}
    per_subnet = {"euler": 1, "midpoint": 2, "rk4": 4, "rk8": 14}  # h = Euler's blocks / this scheme's blocks
    assert steps == {s: {float(per_subnet[s])} for s in schemes}


def test_without_equal_time_the_step_is_one_per_block():
    cfg = compose(["experiment=horesnet/orderings", "scheme=rk4", "depth=10", "model.width=4"])
    assert total_time(build_model(cfg.model)) == 1.0
    cfg = compose(["experiment=horesnet/orderings", "scheme=rk4", "depth=10", "model.width=4", "scheme.h=4"])
    assert total_time(build_model(cfg.model)) == 4.0  # the same by hand


def test_equal_time_scales_a_learned_step_and_shared_weights_keep_it():
    learned = small({"name": "rk8", "learn_h": True}, depth=30, equal_time=True)
    (block,) = learned.blocks
    assert isinstance(block.h, nn.Parameter) and block.h.item() == 14.0
    shared = small("rk4", depth=10, stage_weights="shared", equal_time=True)
    assert total_time(shared) == 4.0 and all(float(b.h) == 1.0 for b in shared.blocks)
