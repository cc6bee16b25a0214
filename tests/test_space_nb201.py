"""nb201: official strings and sizes, supernet/standalone equivalence, single-path semantics, graph view."""
from __future__ import annotations

import csv
import itertools
import os
import random
from pathlib import Path

import pytest
import torch
from conftest import assert_subnets_equal_standalone, perturb_bn
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError
from search_spaces.base import WeightedChoice, get_space
from search_spaces.nb201 import EXAMPLE, OPS, NB201Space
from search_spaces.ops import ChoiceOp

REPO = Path(__file__).resolve().parents[1]
NB201_CSV = Path(os.environ.get("ONESHOT_SHARED_DATA", REPO.parent / "shared" / "data")) / \
    "nb201-nats-tss-test200" / "nats_bench.csv"
SMALL = NetConfig(channels=8, cells_per_stage=1, num_classes=5, in_channels=3)
PAPER = NetConfig(channels=16, cells_per_stage=5, num_classes=10, in_channels=3)
BEST = (3, 3, 3, 1, 3, 2)  # EXAMPLE, the CIFAR-10 optimum
# Archs with empty nodes: all 'none'; node 1 unreachable; node 3 (the output) without inputs.
EDGE_CASES = [(0,) * 6, (0, 3, 2, 1, 2, 4), (3, 3, 3, 0, 0, 0), (1,) * 6, (4,) * 6, BEST]


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()




@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    net = space.build_supernet(SMALL)
    perturb_bn(net, 1)
    return net.eval()


def _some_archs(space, n: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    return EDGE_CASES + [space.sample(rng) for _ in range(n)]


# ---- discrete archs -------------------------------------------------------------------------------------------------

def test_registered_decisions_and_size(space):
    assert isinstance(get_space("nb201"), NB201Space)
    assert [d.name for d in space.decisions] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert all(d.choices == OPS for d in space.decisions)
    assert space.size() == 15625 and len(space.choice_points) == 6


def test_enumerate_is_product_order_over_all_archs(space):
    archs = list(space.enumerate())
    assert archs == list(itertools.product(range(5), repeat=6))
    assert len(set(archs)) == 15625
    assert space.encode(archs[0]) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert space.encode(archs[-1]) == ("|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|"
                                       "avg_pool_3x3~1|avg_pool_3x3~2|")


def test_enumerate_covers_benchmark_strings():
    """Every benchmark row parses and re-encodes to itself and enumerate covers exactly the benchmark's archs.
    The benchmark's row order is a fixed permutation, not product order (hence lookup by string)."""
    if not NB201_CSV.is_file():
        pytest.skip(f"NB201 table not found at {NB201_CSV}")
    with NB201_CSV.open(newline="") as f:
        rows = [r["ArchitectureString"] for r in csv.DictReader(f)]
    space = NB201Space()
    assert [space.encode(space.decode(s)) for s in rows] == rows
    assert {space.encode(a) for a in space.enumerate()} == set(rows)
    assert rows[0] == "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    assert space.decode(rows[0]) == (4, 2, 1, 2, 1, 1) and space.decode(rows[-1]) == (2, 0, 2, 0, 2, 2)


def test_encode_official_string_and_round_trip(space):
    assert space.encode(BEST) == EXAMPLE
    assert space.decode(EXAMPLE) == BEST
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch


@pytest.mark.parametrize("bad, needle", [
    ("", "1 '+'-separated nodes"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "2 '+'-separated nodes"),
    ("|conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "'conv_3x3~0'"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     "'nor_conv_3x3~1'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     "'nor_conv_3x3'"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|", "1 tokens, not 2"),
    ("nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     "start and end with '|'"),
])
def test_decode_errors_name_the_problem_and_show_example(space, bad, needle):
    with pytest.raises(ArchStringError) as info:
        space.decode(bad)
    assert needle in str(info.value) and EXAMPLE in str(info.value)


def test_decode_rejects_non_strings(space):
    with pytest.raises(ArchStringError):
        space.decode(None)  # type: ignore[arg-type]


def test_sample_and_mutate_stay_valid_and_mutate_changes(space):
    rng = random.Random(1)
    for prob in (0.0, 0.1, 1.0):
        for _ in range(100):
            arch = space.sample(rng)
            child = space.mutate(arch, rng, prob)
            assert space.is_valid(arch) and space.is_valid(child) and child != arch


def test_param_counts_match_published_cifar10_range(space):
    """NAS-Bench-201 CIFAR-10 nets (C=16, N=5) have 0.073306M to 1.531546M parameters."""
    def count(arch):
        with torch.device("meta"):
            return sum(p.numel() for p in space.build_standalone(arch, PAPER).parameters())

    assert count((3,) * 6) == 1_531_546
    assert count((0,) * 6) == count((1,) * 6) == count((4,) * 6) == 73_306


def test_derive_from_weights_is_argmax_per_edge(space):
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(5, generator=g) for _ in range(6)]
    assert space.derive_from_weights(weights) == tuple(int(w.argmax()) for w in weights)
    with pytest.raises(ValueError):
        space.derive_from_weights(weights[:5])


# ---- networks -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [8, 16])
def test_supernet_subnet_equals_standalone(space, supernet, side):
    assert_subnets_equal_standalone(space, supernet, SMALL, _some_archs(space, 3, seed=side), side)


def test_accepts_channels_last_32px_and_other_input_channels(space):
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=3, in_channels=1)
    model = space.build_supernet(net).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    assert model(x, list(BEST)).shape == (2, 3)
    assert space.build_standalone(BEST, net)(x).shape == (2, 3)


def test_one_hot_weighted_choice_equals_single_path(space, supernet):
    x = torch.randn(2, 3, 8, 8)
    for arch in _some_archs(space, 2, seed=3):
        weighted = [WeightedChoice(tuple(range(5)), nn.functional.one_hot(torch.tensor(op), 5).float())
                    for op in arch]
        with torch.no_grad():
            assert torch.allclose(supernet(x, weighted), supernet(x, list(arch)), atol=1e-6)


def test_choice_op_sums_weighted_candidates_and_skips_none(space, supernet):
    op: ChoiceOp = supernet.cells[0].edges["1<-0"]
    x = torch.randn(2, 8, 4, 4)
    weights = torch.tensor([0.2, 0.3, 0.5], requires_grad=True)
    out = op(x, WeightedChoice((0, 2, 3), weights))
    expected = 0.3 * op.candidates[2](x) + 0.5 * op.candidates[3](x)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert weights.grad is not None and weights.grad[0] == 0
    assert op(x, 0) is None  # 'none' runs nothing
    with pytest.raises(IndexError):
        op(x, 5)
    with pytest.raises(ValueError):
        op(x, WeightedChoice((1, 2), torch.ones(3)))


def test_off_path_candidates_get_no_gradient(space):
    torch.manual_seed(0)
    model = space.build_supernet(SMALL).train()
    arch = (2, 3, 0, 1, 4, 3)
    model(torch.randn(4, 3, 8, 8), space.arch_to_path(arch)).sum().backward()
    choice_ops = [m for m in model.modules() if isinstance(m, ChoiceOp)]
    assert len(choice_ops) == 6 * 3
    for op in choice_ops:
        for k, candidate in enumerate(op.candidates):
            grads = [p.grad for p in candidate.parameters()]
            if k == arch[op.point]:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)
    assert all(p.grad is not None for p in model.stem.parameters())


def test_supernet_checks_path_length(space, supernet):
    with pytest.raises(ValueError, match="6 choice points"):
        supernet(torch.randn(1, 3, 8, 8), [0] * 5)
    instances = supernet.choice_ops(2)  # one per searchable cell (the ResNet blocks have none)
    assert len(instances) == sum(1 for c in supernet.cells if hasattr(c, "edges"))
    assert all(len(c) == 5 for c in instances)


# ---- graph view -----------------------------------------------------------------------------------------------------

def test_graph_nodes_own_every_parameter_exactly_once(space):
    for arch in _some_archs(space, 3, seed=4):
        graph = space.to_graph(arch, SMALL)
        assert set(graph.node_types) <= set(space.graph_node_types)
        assert graph.node_types[0] == "input" and graph.node_types[-1] == "output"
        model = space.build_standalone(arch, SMALL)
        owners = [m for m in graph.node_modules if m is not None]
        assert len(owners) == len(set(owners))
        for name in owners:
            assert next(model.get_submodule(name).parameters(), None) is not None, name
        for pname, _ in model.named_parameters():
            assert sum(pname.startswith(f"{m}.") for m in owners) == 1, pname
        # one op node per non-'none' edge and cell (3 cells at N=1)
        op_types = {"relu_conv_bn_1x1", "relu_conv_bn_3x3", "avg_pool_3x3", "skip_connect"}
        cell_ops = sum(t in op_types for t in graph.node_types) - 2 * 2  # minus the two ResNet blocks' convs
        assert cell_ops == 3 * sum(op != 0 for op in arch), space.encode(arch)


def test_graph_of_empty_cell_uses_zeros_nodes(space):
    graph = space.to_graph((0,) * 6, SMALL)
    assert graph.node_types.count("zeros") == 3 * 3  # three empty nodes in each of the three cells
