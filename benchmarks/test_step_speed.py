"""Supernet single-path training step vs the standalone network's step, per space (pytest-benchmark).

Run: python -m pytest benchmarks --benchmark-enable   (the default test run executes each once, untimed).
The overhead of weight sharing should be small: the supernet runs only the sampled path.
"""
import random

import pytest
import torch
import torch.nn.functional as F

from oneshot_bench.config import NetConfig
from search_spaces import SPACES, get_space

SPACE_NAMES = [s for s in SPACES.names() if "supernet" in SPACES.get(s).capabilities]  # single-path vs standalone
NET = NetConfig(channels=16, cells_per_stage=1, num_classes=10, in_channels=3)
BATCH, RES = 64, 16


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, RES, RES, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (BATCH,), generator=g)


def _step(model, forward, x, y, opt):
    loss = F.cross_entropy(forward(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@pytest.mark.parametrize("space_name", SPACE_NAMES)
def test_supernet_step(benchmark, space_name):
    space = get_space(space_name)
    supernet = space.build_supernet(NET).to(memory_format=torch.channels_last)
    rng = random.Random(0)
    opt = torch.optim.SGD(supernet.parameters(), lr=0.01, momentum=0.9)
    x, y = _batch()
    benchmark.group = f"train step {space_name}"

    def step():
        path = space.arch_to_path(space.sample(rng))
        _step(supernet, lambda t: supernet(t, path), x, y, opt)

    benchmark(step)


@pytest.mark.parametrize("space_name", SPACE_NAMES)
def test_standalone_step(benchmark, space_name):
    space = get_space(space_name)
    net = space.build_standalone(space.sample(random.Random(0)), NET).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = _batch()
    benchmark.group = f"train step {space_name}"
    benchmark(lambda: _step(net, net, x, y, opt))
