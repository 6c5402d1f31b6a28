"""FLOPs and memory measure what they say (`odenets.perf.measure`, called by both the tables and the benchmark)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odenets.perf import harness
from odenets.perf.measure import (
    LiveTensorPeak,
    SavedTensors,
    inference_flops,
    inference_memory,
    training_flops,
    training_memory,
)


# --------------------------------------------------------------------------- FLOPs
def test_inference_flops_are_two_per_multiply_add():
    """A 1x1 conv 2 -> 3 channels on 4x4 has 96 multiply-adds; on the meta device too (no compute)."""
    assert inference_flops(nn.Conv2d(2, 3, 1, bias=False), (1, 2, 4, 4)) == 2 * 2 * 3 * 16
    with torch.device("meta"):
        conv = nn.Conv2d(2, 3, 1, bias=False)
    assert inference_flops(conv, (1, 2, 4, 4)) == 2 * 2 * 3 * 16


def test_training_flops_count_the_backward_and_drop_the_gradients():
    """A 3 -> 4 linear map on 5 rows: 60 multiply-adds forward, as many for the weight's gradient, and as
    many again for the input's when the input needs one."""
    net = nn.Linear(3, 4, bias=False)
    x = torch.randn(5, 3)
    assert training_flops(net, lambda: net(x).sum()) == 2 * 60 + 2 * 60
    assert net.weight.grad is None
    x.requires_grad_()
    assert training_flops(net, lambda: net(x).sum()) == 3 * 2 * 60


# --------------------------------------------------------------------------- memory
def test_saved_tensors_count_each_storage_once():
    x = torch.randn(1000, requires_grad=True)
    with SavedTensors() as saved:
        x.sin().sum() + x.cos().sum() + x[:10].sin().sum() + x[:10].exp().sum()  # x thrice, once as a view
    assert saved.bytes == 1000 * 4 + 10 * 4  # x, and exp's output


def test_saved_tensors_leave_out_what_exists_anyway():
    net = torch.nn.Linear(100, 100, bias=False)
    x = torch.randn(8, 100, requires_grad=True)
    with SavedTensors(exclude=[*net.parameters(), x]) as saved:
        net(x).relu().sum()
    assert saved.bytes == 8 * 100 * 4  # relu's output; the weight and x are saved too


def test_live_tensor_peak_tracks_frees():
    with LiveTensorPeak() as tracker:
        a = torch.empty(1000)
        b = torch.empty(1000)
        del a
        c = torch.empty(500)
    assert tracker.peak == 8000 and b.numel() + c.numel() == 1500


def test_inference_memory_is_peak_live_tensors_plus_parameters():
    """conv -> relu -> conv on 1x1x8x8: input, two 4-channel maps alive at once, and the parameters."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    param_bytes = sum(p.numel() for p in model.parameters()) * 4
    assert inference_memory(model, (1, 1, 8, 8)) == param_bytes + 4 * (64 + 2 * 4 * 64)


def test_training_memory_leaves_out_the_batch_and_counts_what_backward_needs():
    """relu(x @ W^T) summed: autograd keeps x and W (held anyway) and relu's output, 8 x 100 floats."""
    net = nn.Linear(100, 100, bias=False)
    x = torch.randn(8, 100)
    memory = training_memory(net, lambda: F.relu(net(x)).sum(), [x], "cpu")
    assert memory["saved"] == 8 * 100 * 4
    assert memory["saved"] <= memory["forward_peak"] <= memory["peak"] and net.weight.grad is None
    assert training_memory(net, lambda: F.relu(net(x)).sum(), [], "cpu")["saved"] == 8 * 100 * 4 * 2  # x too


def test_memory_of_a_training_step_relative_to_itself_is_one():
    s = harness.Settings(width=4, image=8, batch=2, rounds=1, overhead_steps=1, input_images=8, input_batches=1,
                         matmul=8)
    step = harness.train_step(harness.bench_config(["scheme=rk4", "depth=10"], s, "cpu"), s, "cpu")
    first, again = (training_memory(step.net, step.loss, [step.x], "cpu") for _ in range(2))
    assert first == again and all(first[k] / again[k] == 1 for k in first)
    assert first["saved"] <= first["forward_peak"] <= first["peak"]
