"""NAS-Bench-101: pruning, the graph hash and the channel rule as NB101 defines them (checked against NB101's own
example and NASLib's parameter counts), the 292-cell truth subset, and the methods that run on it."""
from __future__ import annotations

import ast
import json
import random
from collections import Counter

import pytest
import torch
from conftest import assert_generated_forward_equals_standalone

from evaluators.truth import resolve_truth
from evaluators.truth.nb101 import OP_CODES
from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError
from oneshot_bench.measure import count_params
from search_spaces import get_space
from search_spaces.nb101 import EDGES, Spec, prune, spec_hash, vertex_channels

# NB101's README example cell and its entry in the NB101 dataset (hash, trainable parameters)
EXAMPLE = ("ops=conv3x3-bn-relu|maxpool3x3|conv3x3-bn-relu|conv3x3-bn-relu|conv1x1-bn-relu;"
           "edges=0>1,0>4,0>5,1>2,2>3,2>6,3>5,4>5,5>6")
EXAMPLE_HASH = "00005c142e6f48ac74fdcf73e3439874"
BENCHMARK_NET = NetConfig(channels=128, cells_per_stage=3, num_classes=10, in_channels=3)
SMALL = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=3)


@pytest.fixture(scope="module")
def space():
    return get_space("nb101")


@pytest.fixture(scope="module")
def truth(space):
    return resolve_truth(space, "nb101")


def records(truth):
    with open(truth.path) as f:
        return json.load(f)["nasbench101"]["cifar10"]


def spec_of_key(key: str):
    values = ast.literal_eval(key)
    return prune([list(values[7 * i:7 * i + 7]) for i in range(7)], [OP_CODES[c] for c in values[49:]])


def params_at_benchmark_size(space, arch) -> int:
    with torch.device("meta"):
        return count_params(space.build_standalone(arch, BENCHMARK_NET))


# ---- the cell as NB101 defines it -------------------------------------------------------------------------------
def test_readme_example_has_nb101s_hash_and_parameter_count(space):
    arch = space.decode(EXAMPLE)
    assert space.spec_hash(arch) == EXAMPLE_HASH
    assert params_at_benchmark_size(space, arch) == 8_555_530


def test_parameter_counts_equal_naslibs_for_every_record(space, truth):
    """NASLib's `params` (millions, its own PyTorch NB101 network) for all 500 records: an oracle nobody here wrote."""
    from search_spaces.nb101 import arch_from_spec

    for key, record in records(truth).items():
        arch = arch_from_spec(spec_of_key(key))
        assert round(params_at_benchmark_size(space, arch) / 1e6, 6) == pytest.approx(record["params"], abs=1e-6)


def test_pruning_drops_vertices_off_every_path_and_keeps_nb101s_validity_rule(space):
    # vertex 2 feeds nothing that reaches the output; vertex 3 has no input: both are pruned
    arch = space.decode("ops=conv3x3-bn-relu|maxpool3x3|conv1x1-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu;"
                        "edges=0>1,1>2,1>6,3>6")
    spec = space.spec(arch)
    assert spec.ops == ("input", "conv3x3-bn-relu", "output") and spec.num_edges == 2
    with pytest.raises(ArchStringError, match="input does not reach the output"):
        space.decode("ops=conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu;"
                     "edges=0>1,2>6")
    # ten edges on the input->output paths: invalid; ten edges of which two dangle: valid (NB101 prunes first)
    ten = "0>1,1>2,2>3,3>4,4>5,5>6,0>2,0>3,0>4,0>5"
    with pytest.raises(ArchStringError, match="10 edges once pruned"):
        space.decode(f"ops=conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu;"
                     f"edges={ten}")
    dangling = space.decode("ops=conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|conv3x3-bn-relu|maxpool3x3;"
                            "edges=0>1,1>2,2>3,3>4,4>6,0>2,0>3,0>4,0>5,1>5")
    assert sum(dangling[:len(EDGES)]) == 10 and space.spec(dangling).num_edges == 8


def test_bare_cell_is_the_input_projected_to_the_output(space):
    arch = space.decode("ops=maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3;edges=0>6")
    net = space.build_standalone(arch, SMALL)
    assert [n for n, _ in net.cells[0].named_children()] == ["projections", "ops", "output_projection"]
    assert len(net.cells[0].projections) == 0 and len(net.cells[0].ops) == 0
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_channel_rule_splits_the_output_and_never_widens_along_an_edge(space):
    # three vertices feed the output: 128 = 43 + 43 + 42; vertex 1 feeds vertex 2 only and takes its width
    spec = Spec(((0, 1, 1, 1, 1, 0), (0, 0, 1, 0, 0, 0), (0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 1),
                 (0, 0, 0, 0, 0, 1), (0, 0, 0, 0, 0, 0)), ("input", *["conv3x3-bn-relu"] * 4, "output"))
    assert vertex_channels(64, 128, spec) == [64, 43, 43, 43, 42, 128]
    rng = random.Random(0)
    for _ in range(200):
        s = space.spec(space.sample(rng))
        ch, n = vertex_channels(32, 100, s), s.num_vertices
        if n > 2:
            assert sum(ch[v] for v in range(1, n - 1) if s.edge(v, n - 1)) == 100
        assert all(ch[v] >= ch[w] for v in range(1, n - 1) for w in range(v + 1, n - 1) if s.edge(v, w))


def test_hash_is_invariant_to_vertex_relabeling_and_sees_ops(space):
    a = space.decode("ops=conv3x3-bn-relu|conv1x1-bn-relu|maxpool3x3|maxpool3x3|maxpool3x3;"
                     "edges=0>1,0>2,1>6,2>6")
    b = space.decode("ops=conv1x1-bn-relu|conv3x3-bn-relu|maxpool3x3|maxpool3x3|maxpool3x3;"
                     "edges=0>1,0>2,1>6,2>6")  # the two parallel vertices swapped: the same network
    c = space.decode("ops=conv1x1-bn-relu|conv1x1-bn-relu|maxpool3x3|maxpool3x3|maxpool3x3;"
                     "edges=0>1,0>2,1>6,2>6")
    assert space.spec_hash(a) == space.spec_hash(b) != space.spec_hash(c)
    assert spec_hash(space.spec(space.canonical(a))) == space.spec_hash(a)


def test_sample_mutate_encode_decode(space):
    rng = random.Random(1)
    for _ in range(100):
        arch = space.sample(rng)
        assert space.is_valid(arch) and space.decode(space.encode(arch)) == arch
        child = space.mutate(arch, rng)
        assert child != arch and space.is_valid(child)
        canonical = space.canonical(arch)
        assert space.canonical(canonical) == canonical and space.spec(canonical) == space.spec(arch)
    with pytest.raises(ArchStringError, match="'ops='"):
        space.decode("edges=0>6")
    with pytest.raises(ArchStringError, match="bad edge '6>0'"):
        space.decode("ops=maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3;edges=6>0")


def test_graph_view_owns_every_parameter_and_has_cell_scopes(space):
    from methods._hypernet import standalone_plan

    rng = random.Random(2)
    for _ in range(10):
        arch = space.sample(rng)
        graph = space.to_graph(arch, SMALL)
        assert set(graph.node_types) <= set(space.graph_node_types)
        owned = [m for m in graph.node_modules if m]
        plan = standalone_plan(space, arch, SMALL, torch.device("cpu"))
        assert {p.name.rsplit(".", 2)[0] for p in plan.params} == set(owned)  # each param has one owner node
        assert graph.scopes() == ["stem", *(f"cells.{k}" for k in range(3)), "head"]
        assert graph.scope_kinds["cells.1"] == "cell"


# ---- the truth subset ------------------------------------------------------------------------------------------
def test_truth_covers_292_cells_from_500_records_averaging_duplicates(space, truth):
    recs = records(truth)
    specs = {key: spec_of_key(key) for key in recs}
    assert len(recs) == 500
    assert sum(sum(ast.literal_eval(k)[:49]) > 9 for k in recs) == 305  # unpruned matrices
    assert sum(s.num_vertices == 2 for s in specs.values()) == 55  # the bare input -> output cell
    assert len({(s.matrix, s.ops) for s in specs.values()}) == 301  # distinct pruned specs...
    by_hash = Counter(spec_hash(s) for s in specs.values())
    assert len(truth.table) == len(by_hash) == 292  # ...of which 9 are relabelings of others
    accs: dict[str, list[float]] = {}
    for k, r in recs.items():
        accs.setdefault(spec_hash(specs[k]), []).append(r["val_accuracy"])
    assert max(accs.values(), key=len) and len(max(accs.values(), key=len)) == 55  # the bare cell, 55 single runs
    assert max(max(a) - min(a) for a in accs.values()) == pytest.approx(1.41, abs=0.01)  # one network, 1.4 apart
    assert all(truth.table[h] == pytest.approx(sum(a) / len(a)) for h, a in accs.items())


def test_pool_is_one_canonical_arch_per_cell_and_every_arch_of_a_cell_looks_it_up(space, truth):
    pool = truth.arch_pool()
    assert len(pool) == 292 and len({space.spec_hash(a) for a in pool}) == 292
    assert all(space.canonical(a) == a for a in pool)
    record_key = next(iter(records(truth)))
    values = ast.literal_eval(record_key)
    unpruned = tuple(values[i * 7 + j] for i, j in EDGES) + tuple(
        ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3").index(OP_CODES[c]) for c in values[50:55])
    assert truth.accuracies([unpruned]) == truth.accuracies([space.canonical(unpruned)])
    with pytest.raises(ValueError, match="covers 292 cells"):
        truth.accuracies([space.decode("ops=maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3|maxpool3x3;"
                                       "edges=0>1,1>2,2>3,3>4,4>5,5>6")])


def test_ranking_sample_is_drawn_from_the_subset_and_prefix_stable(space, truth):
    from evaluators.sample import benchmark_sample

    pool = truth.arch_pool()
    twenty = benchmark_sample(space, 0, 20, pool=pool, truth="nb101")
    fifty = benchmark_sample(space, 0, 50, pool=pool, truth="nb101")
    assert fifty[:20] == twenty and len(set(fifty)) == 50 and set(fifty) <= set(pool)
    assert benchmark_sample(space, 1, 20, pool=pool, truth="nb101") != twenty


def test_supernet_methods_say_why(smoke_config):
    from evaluators.runner import plan_run
    from oneshot_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="supernet capability.*channel rule.*NAS-Bench-1Shot1"):
        plan_run(smoke_config("method=spos", "space=nb101"))


def test_a_random_run_ranks_and_finds_archs_of_the_subset(smoke_config, truth, space):
    from evaluators.runner import run_benchmark

    record = run_benchmark(smoke_config("method=random", "space=nb101", "budget.ranking_sample=6",
                                        "budget.candidates=3"), progress=False)
    pool = {space.encode(a) for a in truth.arch_pool()}
    assert set(record.ranking.archs) <= pool and record.found.arch in pool
    assert record.found.final_source == "tabular" and record.hashes.truth["name"] == "nb101"
    assert record.found.final_test_acc == truth.accuracies([space.decode(record.found.arch)])[0]


@pytest.mark.parametrize("stacked", [False, True])
def test_ghn_generates_every_weight_of_an_nb101_net(space, stacked):
    from methods.base import SearchContext, get_method
    from oneshot_bench.config import BudgetConfig, DataConfig
    from oneshot_bench.data import load_data

    data = load_data(DataConfig(), resolution=8, seed=0, max_train_images=32, max_val_images=16)
    net = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)
    method = get_method("ghn", {"stacked": stacked})
    method.setup(SearchContext(space=space, data=data, budget=BudgetConfig(batch_size=16), device=torch.device("cpu"),
                               seed=0, net=net, final_net=net, final_resolution=data.resolution))
    arch = space.decode(EXAMPLE)
    assert_generated_forward_equals_standalone(method, space, arch, net, torch.randn(4, 1, 8, 8))
