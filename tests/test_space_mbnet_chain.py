"""mbnet_chain (NAS-Bench-Macro): arch strings, real-arch grouping, supernet/standalone equivalence, graph view."""
from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from conftest import perturb_bn
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError
from search_spaces.base import WeightedChoice, get_space
from search_spaces.mbnet_chain import MBNetChainSpace, layer_shapes

BENCH_JSON = Path("/work/shared/data/nas-bench-macro/nas-bench-macro_cifar10.json")
SMALL = NetConfig(channels=8, num_classes=5, in_channels=3)
PAPER = NetConfig(channels=32, num_classes=10, in_channels=3)
SOME_KEYS = ["00000000", "22222222", "02012100", "11111111", "10201021", "20000012"]


@pytest.fixture(scope="module")
def space() -> MBNetChainSpace:
    return MBNetChainSpace()




def _param_count(space: MBNetChainSpace, key: str, net: NetConfig) -> int:
    with torch.device("meta"):
        model = space.build_standalone(space.decode(key), net)
    return sum(p.numel() for p in model.parameters())


# ---- discrete archs -------------------------------------------------------------------------------------------------

def test_registered_and_sized(space):
    assert isinstance(get_space("mbnet_chain"), MBNetChainSpace)
    assert space.size() == 6561
    assert len(space.decisions) == 8 and all(len(d.choices) == 3 for d in space.decisions)


def test_enumerate_in_product_order_and_distinct(space):
    archs = list(space.enumerate())
    assert archs == list(itertools.product(range(3), repeat=8))
    assert len(set(archs)) == 6561


def test_encode_decode_round_trip_all(space):
    for arch in space.enumerate():
        key = space.encode(arch)
        assert len(key) == 8 and space.decode(key) == arch
    assert space.encode((0, 2, 0, 1, 2, 1, 0, 0)) == "02012100"


@pytest.mark.parametrize("bad, needle", [("0201210", "7 characters"), ("020121000", "9 characters"),
                                         ("02312100", "'3' at position 2"), ("0201a10x", "position 7"),
                                         ("", "0 characters")])
def test_decode_errors_name_problem_and_example(space, bad, needle):
    with pytest.raises(ArchStringError) as info:
        space.decode(bad)
    assert needle in str(info.value) and "02012100" in str(info.value)


def test_real_arch_key_moves_inner_identities_to_stage_end(space):
    # stages [2, 3, 3]: '00|102|010' -> '00|120|010'; the first layer of a stage never moves.
    assert space.real_arch_key("00102010") == "00120010"
    assert space.real_arch_key((0, 0, 0, 0, 1, 0, 0, 2)) == "00010020"
    assert space.real_arch_key("02012100") == "02012100"
    assert len({space.real_arch_key(a) for a in space.enumerate()}) == 3969


@pytest.mark.skipif(not BENCH_JSON.exists(), reason="NAS-Bench-Macro JSON not available")
def test_real_arch_groups_match_benchmark_entries(space):
    bench = json.loads(BENCH_JSON.read_text())
    assert set(bench) == {space.encode(a) for a in space.enumerate()}
    assert all(bench[k] == bench[space.real_arch_key(k)] for k in bench)


def test_sample_mutate_derive(space):
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        assert space.is_valid(arch)
        child = space.mutate(arch, rng)
        assert space.is_valid(child) and child != arch
    weights = [torch.tensor([0.1, 0.5, 0.2]), torch.tensor([3.0, 0.0, 1.0])] * 4
    assert space.derive_from_weights(weights) == (1, 0) * 4
    assert space.arch_to_path((2, 1, 0, 0, 1, 2, 0, 1)) == [2, 1, 0, 0, 1, 2, 0, 1]


# ---- networks -------------------------------------------------------------------------------------------------------

def test_layer_layout_at_paper_width():
    shapes = layer_shapes(32)
    assert [(s.in_ch, s.out_ch, s.stride) for s in shapes] == [
        (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1),
        (128, 256, 2), (256, 256, 1), (256, 256, 1)]


def test_paper_width_param_counts_match_benchmark(space):
    # Values from the benchmark JSON: min, max, and its documented sample.
    assert _param_count(space, "00000000", PAPER) == 387_882
    assert _param_count(space, "22222222", PAPER) == 2_932_586
    assert _param_count(space, "02012100", PAPER) == 890_666


@pytest.mark.skipif(not BENCH_JSON.exists(), reason="NAS-Bench-Macro JSON not available")
def test_param_counts_match_benchmark_json(space):
    bench = json.loads(BENCH_JSON.read_text())
    keys = random.Random(1).sample(sorted(bench), 25)
    assert {k: _param_count(space, k, PAPER) for k in keys} == {k: bench[k]["params"] for k in keys}


@pytest.mark.parametrize("key", SOME_KEYS)
def test_single_path_equals_standalone_after_loading_subnet(space, key):
    torch.manual_seed(0)
    arch = space.decode(key)
    supernet = space.build_supernet(SMALL)
    perturb_bn(supernet, seed=1)
    standalone = space.build_standalone(arch, SMALL)
    supernet.eval()
    standalone.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = standalone(x)
        standalone.load_state_dict(supernet.subnet_state_dict(arch), strict=True)
        got, want = standalone(x), supernet(x, space.arch_to_path(arch))
    assert got.shape == (2, SMALL.num_classes)
    assert not torch.allclose(before, want, atol=1e-4)  # the load really changed something
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_one_hot_weighted_choice_equals_int_path(space):
    torch.manual_seed(0)
    supernet = space.build_supernet(SMALL).eval()
    perturb_bn(supernet, seed=2)
    x = torch.randn(2, 3, 8, 8)
    arch = space.decode("10201021")
    with torch.no_grad():
        want = supernet(x, list(arch))
        full = [WeightedChoice((0, 1, 2), nn.functional.one_hot(torch.tensor(a), 3).float()) for a in arch]
        single = [WeightedChoice((a,), torch.ones(1)) for a in arch]
        torch.testing.assert_close(supernet(x, full), want)
        torch.testing.assert_close(supernet(x, single), want)


def test_weighted_choice_is_weighted_sum_of_candidates(space):
    torch.manual_seed(0)
    supernet = space.build_supernet(SMALL).eval()
    layer, (cands,) = supernet.layers[3], supernet.choice_ops(3)
    x = torch.randn(2, 32, 2, 2)  # layer 3 is 4C -> 4C, stride 1
    w = torch.tensor([0.2, 0.5, 0.3])
    with torch.no_grad():
        want = sum(w[k] * cands[k](x) for k in range(3))
        torch.testing.assert_close(layer(x, WeightedChoice((0, 1, 2), w)), want)


def test_candidates_off_the_path_get_no_gradient(space):
    torch.manual_seed(0)
    supernet = space.build_supernet(SMALL)
    x = torch.randn(2, 3, 8, 8)
    arch = space.decode("12021120")
    supernet(x, list(arch)).sum().backward()
    for point, chosen in enumerate(arch):
        (cands,) = supernet.choice_ops(point)  # one layer per point
        for k, cand in enumerate(cands):
            grads = [p.grad for p in cand.parameters()]
            if k == chosen:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads), f"layer {point} candidate {k} got a gradient"


def test_weighted_choice_sends_gradient_to_weights_and_used_candidates_only(space):
    torch.manual_seed(0)
    supernet = space.build_supernet(SMALL)
    w = torch.tensor([0.7, 0.3], requires_grad=True)
    path = [1] * 8
    path[4] = WeightedChoice((0, 2), w)
    supernet(torch.randn(2, 3, 8, 8), path).sum().backward()
    assert w.grad is not None and torch.all(w.grad != 0)
    (cands,) = supernet.choice_ops(4)
    assert all(p.grad is None for p in cands[1].parameters())
    assert all(p.grad is not None for p in cands[2].parameters())


def test_standalone_forward_shape(space):
    net = space.build_standalone(space.decode("22212220"), SMALL)
    assert net(torch.randn(3, 3, 16, 16)).shape == (3, SMALL.num_classes)


# ---- graph view -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", SOME_KEYS)
def test_graph_nodes_own_every_parameterised_module_once(space, key):
    arch = space.decode(key)
    graph = space.to_graph(arch, SMALL)
    model = space.build_standalone(arch, SMALL)
    modules = dict(model.named_modules())
    assert graph.node_types[0] == "input" and graph.node_types[-1] == "output"
    assert set(graph.node_types) <= set(space.graph_node_types)
    owners = [m for m in graph.node_modules if m is not None]
    assert len(owners) == len(set(owners)) and all(m in modules for m in owners)
    for name, module in modules.items():
        if any(True for _ in module.parameters(recurse=False)):
            covering = [o for o in owners if name == o or name.startswith(o + ".")]
            assert len(covering) == 1, f"{name} is owned by {covering}"
    # every node but the input has an input, every node but the output feeds something
    assert {d for _, d in graph.edges} == set(range(1, len(graph.node_types)))
    assert {s for s, _ in graph.edges} == set(range(len(graph.node_types) - 1))


def test_equivalent_keys_have_equal_graph_structure(space):
    a, b = space.to_graph(space.decode("00102010"), SMALL), space.to_graph(space.decode("00120010"), SMALL)
    assert (a.node_types, a.edges) == (b.node_types, b.edges)
    c = space.to_graph(space.decode("00210010"), SMALL)
    assert a.node_types != c.node_types
