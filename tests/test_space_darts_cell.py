"""darts_cell: canonical archs and strings, supernet/standalone equivalence, path semantics, DARTS derivation, graph."""
from __future__ import annotations

import random

import pytest
import torch
from conftest import assert_subnets_equal_standalone, perturb_bn
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError
from search_spaces.base import ENUMERATE, WeightedChoice, get_space
from search_spaces.darts_cell import DARTS_V2, NUM_ARCHS, OPS, SUPERNET_OPS, DartsCellSpace
from search_spaces.ops import ChoiceOp

SMALL = NetConfig(channels=8, cells_per_stage=1, num_classes=5, in_channels=3)
V2_NORMAL_NODE4 = "skip_connect~0,sep_conv_3x3~1"  # published as [('sep_conv_3x3', 1), ('skip_connect', 0)]


@pytest.fixture(scope="module")
def space() -> DartsCellSpace:
    return DartsCellSpace()




@pytest.fixture(scope="module")
def supernet(space):
    torch.manual_seed(0)
    net = space.build_supernet(SMALL)
    perturb_bn(net, 1)
    return net.eval()


def _some_archs(space, n: int, seed: int) -> list[tuple[int, ...]]:
    rng = random.Random(seed)
    return [space.decode(DARTS_V2)] + [space.sample(rng) for _ in range(n)]


def _nodes(arch):
    """(input_a, op_a, input_b, op_b) of each of the 8 intermediate nodes."""
    return [tuple(arch[k:k + 4]) for k in range(0, 32, 4)]


# ---- discrete archs -------------------------------------------------------------------------------------------------

def test_registered_decisions_and_choice_points(space, supernet):
    assert isinstance(get_space("darts_cell"), DartsCellSpace)
    ds = space.decisions
    assert len(ds) == 32 and ds[4].name == "normal.node3.input_a" and ds[16].name == "reduce.node2.input_a"
    assert [len(d.choices) for d in ds[:16]] == [2, 7, 2, 7, 3, 7, 3, 7, 4, 7, 4, 7, 5, 7, 5, 7]
    assert "none" not in ds[1].choices and len(SUPERNET_OPS) == 8 and SUPERNET_OPS[0] == "none"
    assert len(supernet.choice_points) == 28 and len(space.choice_points) == 28
    assert supernet.choice_points[14].name == "reduce.2<-0"
    assert all(cp.candidates == SUPERNET_OPS for cp in supernet.choice_points)
    assert space.size() is None and ENUMERATE not in space.capabilities
    assert NUM_ARCHS == (1 * 3 * 6 * 10 * 49 ** 4) ** 2


def test_darts_v2_string_and_published_param_count(space):
    """DARTS-V2 evaluated at C=36 with 20 cells has 3.349342M parameters (without the auxiliary head)."""
    arch = space.decode(DARTS_V2)
    assert space.is_valid(arch) and space.encode(arch) == DARTS_V2
    assert V2_NORMAL_NODE4 in DARTS_V2
    with torch.device("meta"):
        model = space.build_standalone(arch, NetConfig(channels=36, cells_per_stage=6, num_classes=10))
    assert len(model.cells) == 20
    assert [k for k, c in enumerate(model.cells) if c.reduction] == [6, 13]
    assert sum(p.numel() for p in model.parameters()) == 3_349_342


def test_round_trip_and_decode_canonicalizes(space):
    rng = random.Random(0)
    for _ in range(300):
        arch = space.sample(rng)
        assert space.decode(space.encode(arch)) == arch
    swapped = DARTS_V2.replace(V2_NORMAL_NODE4, "sep_conv_3x3~1, skip_connect~0").replace(";", " ; ")
    assert space.decode(swapped) == space.decode(DARTS_V2)
    reduce_first = ";".join(reversed(DARTS_V2.split(";")))
    assert space.decode(reduce_first) == space.decode(DARTS_V2)


_NORMAL, _REDUCE = DARTS_V2.split(";")


@pytest.mark.parametrize("bad, needle", [
    (_NORMAL, "lacks"),
    (f"{_NORMAL};{_NORMAL}", "once each"),
    (f"{_NORMAL};{_REDUCE.replace('reduce', 'reduction')}", "'reduction="),
    (f"{_NORMAL.rsplit('|', 1)[0]};{_REDUCE}", "3 '|'-separated nodes"),
    (f"{_NORMAL.replace('sep_conv_3x3~0', 'none~0', 1)};{_REDUCE}", "'none~0'"),
    (f"{_NORMAL.replace('sep_conv_3x3~1', 'sep_conv_3x3~2', 1)};{_REDUCE}", "'sep_conv_3x3~2'"),
    (f"{_NORMAL.replace('sep_conv_3x3~1', 'sep_conv_3x3~0', 1)};{_REDUCE}", "distinct inputs"),
    (f"{_NORMAL.replace('sep_conv_3x3~0,', '', 1)};{_REDUCE}", "exactly 2 ops"),
    (f"{_NORMAL.replace('sep_conv_3x3~0', 'sep_conv_3x3:0', 1)};{_REDUCE}", "'sep_conv_3x3:0'"),
    ("", "bad cell part"),
])
def test_decode_errors_name_the_problem_and_show_example(space, bad, needle):
    with pytest.raises(ArchStringError) as info:
        space.decode(bad)
    assert needle in str(info.value) and DARTS_V2 in str(info.value)


def test_is_valid_requires_sorted_distinct_inputs(space):
    arch = list(space.decode(DARTS_V2))
    assert space.is_valid(tuple(arch))
    arch[4], arch[6] = arch[6], arch[4]  # node 3: inputs (1, 0)
    assert not space.is_valid(tuple(arch))
    arch[4] = arch[6]  # inputs (0, 0)
    assert not space.is_valid(tuple(arch))
    assert not space.is_valid(tuple(arch[:31]))
    with pytest.raises(ValueError):
        space.encode(tuple(arch))


def test_sample_is_valid_and_covers_input_pairs(space):
    rng = random.Random(1)
    pairs = set()
    for _ in range(1000):
        arch = space.sample(rng)
        assert space.is_valid(arch)
        pairs.add(arch[12:15:2])  # normal node 5's inputs
    assert pairs == {(a, b) for a in range(5) for b in range(a + 1, 5)}


def test_mutate_and_crossover_stay_valid(space):
    rng = random.Random(2)
    for prob in (0.0, 0.1, 1.0):
        for _ in range(100):
            a, b = space.sample(rng), space.sample(rng)
            child = space.mutate(a, rng, prob)
            assert space.is_valid(child) and child != a
            mix = space.crossover(a, b, rng)
            assert space.is_valid(mix)
            assert all(n in (na, nb) for n, na, nb in zip(_nodes(mix), _nodes(a), _nodes(b), strict=True))


def test_arch_to_path_marks_two_edges_per_node(space):
    arch = space.decode(DARTS_V2)
    path = space.arch_to_path(arch)
    assert len(path) == 28 and sum(k != 0 for k in path) == 16
    # normal node 2 = sep_conv_3x3 on inputs 0 and 1: edges 0 and 1; node 5 = skip 0, dil_conv_3x3 2: edges 9, 11
    assert path[:2] == [SUPERNET_OPS.index("sep_conv_3x3")] * 2
    assert path[9:14] == [SUPERNET_OPS.index("skip_connect"), 0, SUPERNET_OPS.index("dil_conv_3x3"), 0, 0]


def test_derive_keeps_top2_edges_by_strongest_non_none_weight(space):
    rng = random.Random(3)
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        target = space.sample(rng)
        path = space.arch_to_path(target)
        weights = []
        for k in path:
            w = 0.1 * torch.rand(8, generator=g)
            w[0] = 10.0  # 'none' dominates everywhere, as it often does in DARTS, and must be ignored
            if k:
                w[k] = 1.0 + torch.rand(1, generator=g).item()
            weights.append(w)
        derived = space.derive_from_weights(weights)
        assert derived == target and space.is_valid(derived)
    with pytest.raises(ValueError):
        space.derive_from_weights(weights[:27])


# ---- networks -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [8, 16])
def test_supernet_subnet_equals_standalone(space, supernet, side):
    assert_subnets_equal_standalone(space, supernet, SMALL, _some_archs(space, 3, seed=side), side)


def test_accepts_channels_last_32px_and_drop_path(space):
    net = NetConfig(channels=4, cells_per_stage=1, num_classes=3, in_channels=1)
    arch = space.decode(DARTS_V2)
    x = torch.randn(2, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    model = space.build_supernet(net).to(memory_format=torch.channels_last)
    assert model(x, space.arch_to_path(arch)).shape == (2, 3)
    standalone = space.build_standalone(arch, net)
    assert standalone.drop_path_prob == 0.0
    standalone.drop_path_prob = 0.5
    standalone.train()(x).sum().backward()


def test_one_hot_weighted_choice_equals_single_path(space, supernet):
    x = torch.randn(2, 3, 8, 8)
    for arch in _some_archs(space, 2, seed=4):
        path = space.arch_to_path(arch)
        weighted = [WeightedChoice(tuple(range(8)), nn.functional.one_hot(torch.tensor(k), 8).float()) for k in path]
        with torch.no_grad():
            assert torch.allclose(supernet(x, weighted), supernet(x, path), atol=1e-6)


def test_all_none_path_runs(space, supernet):
    assert supernet(torch.randn(1, 3, 8, 8), [0] * 28).shape == (1, 5)


def test_off_path_candidates_get_no_gradient(space):
    torch.manual_seed(0)
    model = space.build_supernet(SMALL).train()
    path = space.arch_to_path(space.decode(DARTS_V2))
    model(torch.randn(4, 3, 8, 8), path).sum().backward()
    choice_ops = [m for m in model.modules() if isinstance(m, ChoiceOp)]
    assert len(choice_ops) == 14 * 5
    for op in choice_ops:
        for k, candidate in enumerate(op.candidates):
            grads = [p.grad for p in candidate.parameters()]
            if k == path[op.point]:
                assert all(g is not None for g in grads)
            else:
                assert all(g is None for g in grads)
    instances = model.choice_ops(27)  # one per reduction cell (2 of the 5 cells)
    assert len(instances) == 2 and all(len(c) == 8 for c in instances)


# ---- graph view -----------------------------------------------------------------------------------------------------

def test_graph_nodes_own_every_parameter_exactly_once(space):
    for arch in _some_archs(space, 3, seed=5):
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
        in_degree = [0] * len(graph.node_types)
        for _, dst in graph.edges:
            in_degree[dst] += 1
        kinds = {"sum": 2, "concat": 4}
        assert all(in_degree[v] == kinds[t] for v, t in enumerate(graph.node_types) if t in kinds)
        assert graph.node_types.count("sum") == 5 * 4 and graph.node_types.count("concat") == 5
        assert sum(t in OPS or t == "factorized_reduce" for t in graph.node_types) >= 5 * 8
