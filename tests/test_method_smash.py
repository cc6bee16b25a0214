"""SMASH: arch encoding, generated weights run the standalone net exactly, depend on the arch, train phi."""
from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_generated_forward_equals_standalone

from methods import SearchContext, get_method
from methods.smash import slot_code
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from search_spaces.base import get_space

SPACES = ("nb201", "darts_cell", "mbnet_chain")
NET = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(), resolution=8, seed=0, max_train_images=32, max_val_images=32)


def make(data, space: str, **hparams):
    budget = BudgetConfig(batch_size=16, search_epochs=1, score_batches=1, candidates=3)
    method = get_method("smash", hparams)
    method.setup(SearchContext(get_space(space), data, budget, torch.device("cpu"), 0, NET, NET, data.resolution))
    return method


def archs(space: str, n: int, seed: int = 0):
    rng = random.Random(seed)
    return [get_space(space).sample(rng) for _ in range(n)]


def test_encoding_is_concatenated_one_hots(data):
    method = make(data, "darts_cell")
    space = get_space("darts_cell")
    arch = archs("darts_cell", 1)[0]
    code = method.encode_arch(arch)
    sizes = [len(d.choices) for d in space.decisions]
    assert code.shape == (sum(sizes),) and code.sum() == len(sizes)
    offset = 0
    for choice, size in zip(arch, sizes, strict=True):
        assert code[offset + choice] == 1 and code[offset:offset + size].sum() == 1
        offset += size


def test_slot_codes_are_fixed_per_name():
    assert torch.equal(slot_code("stem.0.weight", 16), slot_code("stem.0.weight", 16))
    assert not torch.allclose(slot_code("stem.0.weight", 16), slot_code("stem.1.weight", 16))


@pytest.mark.parametrize("space", SPACES)
def test_generated_forward_equals_standalone_loaded_with_generated_weights(data, space):
    method = make(data, space)
    x, _ = next(data.batches("train", 16, torch.Generator().manual_seed(0), augment=False))
    assert_generated_forward_equals_standalone(method, get_space(space), archs(space, 1, seed=1)[0], NET, x)


@pytest.mark.parametrize("space", SPACES)
def test_weights_depend_on_the_arch_and_gradients_reach_phi(data, space):
    method = make(data, space)
    a, b = archs(space, 2, seed=2)
    with torch.no_grad():
        wa, wb = (method.generate(method.plan(arch)) for arch in (a, b))
    for name in ("stem.0.weight" if space != "mbnet_chain" else "stem.conv.weight", "classifier.weight"):
        assert not torch.allclose(wa[name], wb[name]), name  # a parameter both nets have
    plan = method.plan(a)
    x, y = next(data.batches("train", 16, torch.Generator().manual_seed(0), augment=False))
    F.cross_entropy(method.run(plan, method.generate(plan), x), y).backward()
    for name, p in method.hypernet.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_dynamic_slicing_same_slot_same_code(data):
    """mbnet_chain: MBv2 e3 and e6 at one layer have the same parameter names, hence the same slot code (they
    read one value stream; the narrower op its prefix)."""
    method = make(data, "mbnet_chain")
    e3, e6 = (1,) * 8, (2,) * 8
    p3, p6 = method.plan(e3), method.plan(e6)
    z = method.hp.z_dim
    names3 = [s.name for s in p3.params]
    names6 = [s.name for s in p6.params]
    assert names3 == names6
    torch.testing.assert_close(p3.extra["cond"][:, -z:], p6.extra["cond"][:, -z:])
    shapes = {s.name: s.shape for s in p6.params}
    assert any(s.shape != shapes[s.name] for s in p3.params)


def test_score_and_resume(data):
    method = make(data, "nb201")
    method.train_epoch(0)
    sample = archs("nb201", 3, seed=5)
    scores = method.score(sample)
    assert scores == method.score(sample)
    clone = make(data, "nb201")
    clone.load_state_dict(copy.deepcopy(method.state_dict()))  # as saved to disk
    assert clone.score(sample) == scores
    torch.manual_seed(0)
    a = method.train_epoch(1)
    torch.manual_seed(0)
    assert clone.train_epoch(1) == a
    assert method.derive() == clone.derive()
