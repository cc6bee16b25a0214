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


def neighbours(space: str, arch, seed: int = 0):
    """Archs that differ from `arch` in exactly one decision, with that decision's index (in a random order)."""
    sp = get_space(space)
    rng = random.Random(seed)
    for d in rng.sample(range(len(arch)), len(arch)):
        for c in rng.sample(range(len(sp.decisions[d].choices)), len(sp.decisions[d].choices)):
            other = tuple(arch[:d]) + (c,) + tuple(arch[d + 1:])
            if other != tuple(arch) and sp.is_valid(other):
                yield other, d


@pytest.mark.parametrize("generate", ["pointwise", "all"])
@pytest.mark.parametrize("space", SPACES)
def test_changing_one_decision_changes_only_the_slots_it_shapes(data, space, generate):
    method = make(data, space, generate=generate)
    for seed in range(3):
        a = archs(space, 1, seed=10 + seed)[0]
        pa = method.plan(a)
        # a one-decision neighbour in which the changed decision shapes some generated slot
        b, d = next((b, d) for b, d in neighbours(space, a, seed)
                    if any(d in method.plan(b).extra["shaping"][s.name] for s in method.plan(b).extra["generated"]))
        pb = method.plan(b)
        with torch.no_grad():
            wa, wb = method.generate(pa), method.generate(pb)
        rows_a = {s.name: r for s, r in zip(pa.extra["generated"], pa.extra["cond"], strict=True)}
        rows_b = {s.name: r for s, r in zip(pb.extra["generated"], pb.extra["cond"], strict=True)}
        for name in set(rows_a) & set(rows_b):
            shaped = d in pb.extra["shaping"][name]
            assert shaped == (not torch.equal(rows_a[name], rows_b[name])), name
            if not shaped and wa[name].shape == wb[name].shape:
                torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=1e-6)
        # fixed parts (stem, classifier) are shaped by no decision: conditioned on their code z alone
        assert all(not pb.extra["shaping"][n] for n in wb if n.startswith(("stem", "classifier")))


@pytest.mark.parametrize("space", SPACES)
def test_pointwise_weights_are_generated_and_the_rest_learned_directly(data, space):
    method = make(data, space)
    plan = method.plan(archs(space, 1, seed=2)[0])
    generated = {s.name for s in plan.extra["generated"]}
    assert generated == {s.name for s in plan.params if s.kind == "conv_weight" and s.shape[2:] == (1, 1)}
    assert generated and set(plan.extra["learned"]) == {s.name for s in plan.params} - generated
    params = method.generate(plan)
    learned = [params[n] for n in plan.extra["learned"]]
    assert all(any(t is p for p in method.hypernet.learned.values()) for t in learned)
    # no gradient reaches a learned weight through the hypernet: generated values do not depend on it
    through = torch.autograd.grad(sum(params[n].sum() for n in generated), learned, allow_unused=True)
    assert all(g is None for g in through)
    x, y = next(data.batches("train", 16, torch.Generator().manual_seed(0), augment=False))
    F.cross_entropy(method.run(plan, params, x), y).backward()
    for name, p in method.hypernet.decoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in learned if t.dim() > 1)
    # the learned weights are trained by the method's optimizer
    assert {id(t) for t in learned} <= {id(p) for g in method.optimizer.param_groups for p in g["params"]}
    assert not make(data, space, generate="all").plan(plan.arch).extra["learned"]


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
    rows3 = {s.name: r for s, r in zip(p3.extra["generated"], p3.extra["cond"], strict=True)}
    rows6 = {s.name: r for s, r in zip(p6.extra["generated"], p6.extra["cond"], strict=True)}
    assert rows3.keys() == rows6.keys()
    for name in rows3:
        torch.testing.assert_close(rows3[name][-z:], rows6[name][-z:])
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
