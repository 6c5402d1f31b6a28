"""Batch-wise image augmentation as tensor ops on the batch's device (uint8 in, uint8 out).

Each image draws its own crop offset and flip, exactly as torchvision's per-image
`RandomCrop(size, padding)` and `RandomHorizontalFlip()` would, but for the whole batch at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by `padding` and crop back to the original size at a random offset per image."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    windows = F.pad(x, (padding,) * 4).unfold(2, h, 1).unfold(3, w, 1)  # a view: (n, c, dy, dx, h, w)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    return windows[torch.arange(n, device=x.device), :, dy, dx]


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    keep = (torch.rand(x.shape[0], device=x.device, generator=generator) >= 0.5).to(x.dtype).view(-1, 1, 1, 1)
    return x * keep + x.flip(-1) * (1 - keep)  # a 0/1 blend: several times faster than torch.where on uint8


_AUTOAUGMENT = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)


def autoaugment(x: Tensor, group: int = 1, generator: torch.Generator | None = None) -> Tensor:
    """torchvision's AutoAugment (CIFAR-10 policy) on uint8 batches.

    v2 transforms draw one sub-policy per call, so the batch is split into groups of `group`
    images that each get their own draw: `group=1` is exactly per-image AutoAugment; larger
    groups trade independence between neighbouring images for fewer calls. torchvision draws from
    the global generator: with `generator`, it is seeded from it for these calls and restored after.
    """
    if generator is None:
        return torch.cat([_AUTOAUGMENT(chunk) for chunk in x.split(group)])
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (), generator=generator, device=generator.device)))
        return torch.cat([_AUTOAUGMENT(chunk) for chunk in x.split(group)])


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [0, 255] -> float, (x/255 - mean) / std per channel, as one multiply-add."""
    return torch.addcmul((-mean / std).view(1, -1, 1, 1), x.float(), (1 / (255 * std)).view(1, -1, 1, 1))
