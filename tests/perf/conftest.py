"""The perf tests' shared setup: tiny models on a shared machine run on one intra-op thread."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """A second intra-op thread only waits for the first on these tiny models; each test module runs on one,
    and the thread count it found is restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
