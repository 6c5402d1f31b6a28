"""Fast paths compute what the plain paths compute (issue 6).

Batch-wise augmentation vs torchvision's per-image transforms (same distribution, same values),
checkpointing, channels_last and torch.compile vs plain (same outputs and gradients, BatchNorm
statistics updated once), and a fixed-seed run with the fast paths vs without. No timings are asserted.
"""

from __future__ import annotations

import copy
import time

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chi2_contingency
from torchvision.transforms import functional as TF

from odenets.config import compose
from odenets.data import augment, build_datamodule
from odenets.models import create_model
from odenets.perf.measure import SavedTensors
from odenets.tasks.classification import ClassificationTask

SIZE, PAD = 32, 4


def cifar_module(*overrides: str):
    return build_datamodule(compose(["dataset=cifar10", *overrides]).dataset)


def tiny(scheme: str = "rk8", depth: int = 30, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("horesnet", scheme=scheme, depth=depth, width=4, in_channels=3, num_classes=10, **kwargs)


def outputs_and_grads(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    out = net(x)
    F.cross_entropy(out, y).backward()
    return out.detach(), [p.grad.clone() for p in net.parameters()]


def assert_same(a, b, atol: float = 1e-5) -> None:
    (out_a, grads_a), (out_b, grads_b) = a, b
    assert torch.allclose(out_a, out_b, atol=atol)
    assert all(torch.allclose(g, h, atol=atol) for g, h in zip(grads_a, grads_b, strict=True))


# -- augmentation: the tensor pipeline vs torchvision's DataLoader transforms ---------------------
def position_image() -> torch.Tensor:
    """A uint8 image whose pixels name their position: channel 0 the row, channel 1 the column (never 0)."""
    rows = torch.arange(SIZE).view(-1, 1).expand(SIZE, SIZE)
    return torch.stack([1 + 7 * rows, 1 + 7 * rows.T, torch.full_like(rows, 255)]).to(torch.uint8)


def crop_and_flip(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(crop row, crop column, flipped) of normalised outputs of `position_image`, read at the centre."""
    raw = torch.round((images * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)) * 255)
    c = SIZE // 2
    row, col = (raw[:, 0, c, c] - 1) / 7, (raw[:, 1, c, c] - 1) / 7
    flipped = raw[:, 1, c, c + 1] < raw[:, 1, c, c]
    dx = col + PAD - torch.where(flipped, c - 1, c)  # a flip mirrors the crop: the centre shows column c - 1
    return torch.stack([row + PAD - c, dx, flipped]).T.long()


def test_crop_offsets_and_flips_match_torchvision_and_so_do_the_values():
    n, image = 3000, position_image()
    ours_module, theirs_module = cifar_module(), cifar_module("dataset.pipeline=torchvision")
    torch.manual_seed(0)
    ours = ours_module.transform(image.repeat(n, 1, 1, 1), train=True)
    pil, pipeline = TF.to_pil_image(image), theirs_module.pil_transform(train=True)
    theirs = torch.stack([pipeline(pil) for _ in range(n)])
    ours_params, theirs_params = (crop_and_flip(t, ours_module.mean, ours_module.std) for t in (ours, theirs))
    assert ours_params[:, :2].min() == 0 and ours_params[:, :2].max() == 2 * PAD

    cells = lambda p: torch.bincount(p[:, 0] * 18 + p[:, 1] * 2 + p[:, 2], minlength=162)
    table = torch.stack([cells(ours_params), cells(theirs_params)])
    assert chi2_contingency(table.numpy()).pvalue > 1e-3  # one distribution over 9 x 9 offsets x flip

    normalize = theirs_module.pil_transform(train=False)  # ToTensor + Normalize
    for i in range(0, n, 100):  # the same crop and flip through torchvision's functional ops
        dy, dx, flipped = ours_params[i].tolist()
        crop = TF.crop(TF.pad(pil, PAD), dy, dx, SIZE, SIZE)
        assert torch.allclose(ours[i], normalize(TF.hflip(crop) if flipped else crop), atol=1e-5)


def test_autoaugment_draws_per_group_and_matches_torchvision_per_image():
    from torchvision import transforms

    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
    grouped = augment.autoaugment(image.repeat(400, 1, 1, 1), group=4).view(100, 4, -1)
    assert all(torch.equal(g[0], g[k]) for g in grouped for k in range(1, 4))  # one draw per group
    assert len({tuple(g[0].tolist()) for g in grouped}) > 20  # ... and a new one for the next group

    n = 600
    ours = augment.autoaugment(image.repeat(n, 1, 1, 1), group=1)
    policy = transforms.AutoAugment(transforms.AutoAugmentPolicy.CIFAR10)
    theirs = torch.stack([policy(image) for _ in range(n)])
    unchanged = lambda out: (out == image).flatten(1).all(1).float().mean().item()
    assert abs(unchanged(ours) - unchanged(theirs)) < 0.06  # per image: as often left as it is


# -- the model's fast paths ---------------------------------------------------------------------
@pytest.mark.parametrize("scheme,depth", [("rk8", 30), ("rk4", 18), ("rk8_adaptive", 30)])
def test_checkpointing_computes_the_same_and_updates_batchnorm_once(scheme, depth):
    scheme_cfg = {"name": "rk8", "learn_h": True} if scheme == "rk8_adaptive" else scheme
    plain, ckpt = tiny(scheme_cfg, depth), tiny(scheme_cfg, depth, checkpoint=True)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    assert_same(outputs_and_grads(plain, x, y), outputs_and_grads(ckpt, x, y))
    for net in (plain, ckpt):  # a few more steps; the statistics must agree exactly
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            F.cross_entropy(net(x), y).backward()
            optimizer.step()
    for key, value in plain.state_dict().items():
        assert torch.equal(value, ckpt.state_dict()[key]), key
    assert plain.state_dict()["blocks.0.F.0.1.num_batches_tracked"] == 3


def test_checkpointing_keeps_only_stage_inputs_for_backward():
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    saved = {}
    for name, net in ("plain", tiny()), ("checkpoint", tiny(checkpoint=True)):
        with SavedTensors(exclude=[*net.parameters(), *net.buffers()]) as counter:
            F.cross_entropy(net(x), y)
        saved[name] = counter.bytes
    assert saved["checkpoint"] < 0.35 * saved["plain"]


def test_channels_last_batches_compute_the_same():
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    plain = ClassificationTask(tiny("rk4", 10), num_classes=10)
    fast = ClassificationTask(tiny("rk4", 10).to(memory_format=torch.channels_last), num_classes=10)
    seen = []
    fast.net.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    assert fast.channels_last and not plain.channels_last
    assert_same(outputs_and_grads(plain, x, y), outputs_and_grads(fast, x, y))
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()


def test_compiled_model_computes_the_same():
    plain = tiny("midpoint", 6)
    compiled = copy.deepcopy(plain)
    compiled.compile()  # in place, as train.py does
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    start = time.perf_counter()
    fast = outputs_and_grads(compiled, x, y)
    print(f"compile and first step: {time.perf_counter() - start:.1f} s")
    assert_same(outputs_and_grads(plain, x, y), fast)


def test_a_fixed_seed_run_has_the_same_losses_with_the_fast_paths(run_inprocess):
    common = ["scheme=rk4", "depth=10", "epochs=2"]
    plain, _ = run_inprocess(common, name="plain")
    fast, _ = run_inprocess([*common, "checkpoint=true", "channels_last=true"], name="fast")
    for a, b in zip(plain["history"], fast["history"], strict=True):
        for key in ("train/loss", "test/loss", "train/acc", "test/acc"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
