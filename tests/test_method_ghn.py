"""GHN: generated weights run the standalone net exactly, depend on the arch, train phi; propagation order."""
from __future__ import annotations

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_generated_forward_equals_standalone

from methods import SearchContext, get_method
from methods.ghn import GraphHyperNetwork
from oneshot_bench.config import BudgetConfig, DataConfig, NetConfig
from oneshot_bench.data import load_data
from oneshot_bench.errors import ConfigError
from search_spaces.base import get_space

SPACES = ("nb201", "darts_cell", "mbnet_chain")
NET = NetConfig(channels=8, cells_per_stage=1, num_classes=10, in_channels=1)


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig(), resolution=8, seed=0, max_train_images=32, max_val_images=32)


def make(data, space: str, net: NetConfig = NET, **hparams):
    budget = BudgetConfig(batch_size=16, search_epochs=1, score_batches=1, candidates=3)
    method = get_method("ghn", hparams)
    method.setup(SearchContext(get_space(space), data, budget, torch.device("cpu"), 0, net, net, data.resolution))
    return method


def batch(data, n=16):
    x, y = next(data.batches("train", n, torch.Generator().manual_seed(0), augment=False))
    return x, y


def archs(space: str, n: int, seed: int = 0):
    rng = random.Random(seed)
    return [get_space(space).sample(rng) for _ in range(n)]


@pytest.mark.parametrize("space", SPACES)
def test_graph_view_covers_every_parameter_once(space):
    """Every node type is declared, every owning node names a real module, and each parameter of the standalone
    net belongs to exactly one node (so GHN generates all weights from node embeddings, none from a fallback)."""
    sp = get_space(space)
    for arch in archs(space, 10):
        graph = sp.to_graph(arch, NET)
        assert set(graph.node_types) <= set(sp.graph_node_types)
        assert len(graph.node_scopes) == len(graph.node_types) and None not in graph.node_scopes
        assert graph.node_scopes[0] == "stem" and graph.node_scopes[-1] == "head"
        net = sp.build_standalone(arch, NET)
        modules = dict(net.named_modules())
        owned = [m for m in graph.node_modules if m is not None]
        assert len(owned) == len(set(owned)) and all(m in modules for m in owned)
        for name, _ in net.named_parameters():
            owners = [m for m in owned if name.startswith(m + ".")]
            assert len(owners) == 1, (space, name, owners)


@pytest.mark.parametrize("space", SPACES)
def test_generated_forward_equals_standalone_loaded_with_generated_weights(data, space):
    method = make(data, space)
    x, _ = batch(data)
    for arch in archs(space, 2, seed=1):
        assert_generated_forward_equals_standalone(method, get_space(space), arch, NET, x)


@pytest.mark.parametrize("hparams", [{}, {"propagation": "sync", "steps_T": 16}, {"stacked": True}])
def test_different_graphs_give_different_weights_for_a_shared_node(data, hparams):
    """The stem node exists in both graphs; the archs differ in one nb201 edge, far from the stem (sync needs
    enough steps to carry the difference there, one hop per step)."""
    method = make(data, "nb201", **hparams)
    a, b = (3, 3, 3, 1, 3, 2), (3, 3, 3, 1, 3, 4)
    with torch.no_grad():
        wa, wb = (method.generate(method.plan(arch)) for arch in (a, b))
    # stacked: the stem module is propagated before (and never hears from) the cells, so its weights cannot
    # depend on the cell; the first cell's edge 1<-0 (same op in both) hears it within its module
    shared = "cells.0.edges.1<-0.op.1.weight" if hparams.get("stacked") else "stem.0.weight"
    assert not torch.allclose(wa[shared], wb[shared])
    assert not torch.allclose(wa["classifier.weight"], wb["classifier.weight"])
    if hparams.get("stacked"):
        torch.testing.assert_close(wa["stem.0.weight"], wb["stem.0.weight"])
    with torch.no_grad():
        again = method.generate(method.plan(a))
    torch.testing.assert_close(again[shared], wa[shared])  # deterministic per arch


@pytest.mark.parametrize(("space", "hparams"), [
    ("nb201", {}), ("darts_cell", {"propagation": "sync"}), ("mbnet_chain", {}),
    ("darts_cell", {"stacked": True, "stacked_share_params": False})])
def test_gradients_reach_every_used_hypernet_parameter(data, space, hparams):
    method = make(data, space, **hparams)
    arch = archs(space, 1, seed=2)[0]
    plan = method.plan(arch)
    x, y = batch(data)
    F.cross_entropy(method.run(plan, method.generate(plan), x), y).backward()
    ghn: GraphHyperNetwork = method.hypernet
    used_gnns = {seg.gnn for seg in plan.extra["graph"].segments}
    assert len(used_gnns) == (1 if not hparams.get("stacked") or hparams.get("stacked_share_params", True)
                              else len(ghn.gnns))
    for name, p in ghn.named_parameters():
        if name.startswith("embed"):
            continue
        if name.startswith("gnns.") and int(name.split(".")[1]) not in used_gnns:
            continue
        if hparams.get("stacked") and name.startswith("gnns.0.msg_bwd"):
            continue  # stem module: its backward pass only updates the input node, whose embedding nothing reads
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    present = plan.extra["graph"].types.unique()
    row_grad = ghn.embed.weight.grad.abs().sum(1)
    assert (row_grad[present] > 0).all()
    absent = torch.ones_like(row_grad, dtype=torch.bool)
    absent[present] = False
    assert (row_grad[absent] == 0).all()


def _reference_forward_backward(ghn: GraphHyperNetwork, g, steps: int) -> torch.Tensor:
    """The paper's schedule written node by node: topological order from predecessors, then reverse order from
    successors, `steps` times, one GNN on the whole graph."""
    gnn = ghn.gnns[0]
    h = ghn.embed(g.types)
    edges = list(zip(g.src.tolist(), g.dst.tolist(), strict=True))
    n = len(g.types)
    preds = {v: [s for s, d in edges if d == v] for v in range(n)}
    succs = {v: [d for s, d in edges if s == v] for v in range(n)}
    for _ in range(steps):
        for order, senders_of, msg in ((range(n), preds, gnn.msg_fwd), (reversed(range(n)), succs, gnn.msg_bwd)):
            for v in order:
                senders = senders_of[v]
                m = msg(h[senders]).sum(0, keepdim=True) if senders else h.new_zeros(1, h.shape[1])
                h = h.clone()
                h[v] = gnn.gru(m, h[v:v + 1])[0]
    return h


@pytest.mark.parametrize("space", ["nb201", "darts_cell"])
def test_forward_backward_visits_topological_then_reverse_order(data, space):
    steps = 2
    method = make(data, space, steps_T=steps)
    ghn: GraphHyperNetwork = method.hypernet
    plan = method.plan(archs(space, 1, seed=3)[0])
    g = plan.extra["graph"]
    n = len(g.types)
    edges = list(zip(g.src.tolist(), g.dst.tolist(), strict=True))
    ghn.trace = []
    with torch.no_grad():
        h = ghn.propagate(g)
    trace, ghn.trace = ghn.trace, None
    # the recorded schedule: per round, a forward pass then a backward pass, each visiting every node once,
    # forward in an order that respects every edge, backward in an order that reverses every edge
    kinds = [kind for kind, _, _ in trace]
    passes: list[tuple[str, list[tuple[int, ...]]]] = []
    for kind, _, nodes in trace:
        if not passes or passes[-1][0] != kind:
            passes.append((kind, []))
        passes[-1][1].append(nodes)
    assert [k for k, _ in passes] == ["forward", "backward"] * steps, kinds
    for kind, groups in passes:
        when = {v: i for i, group in enumerate(groups) for v in group}
        assert sorted(v for group in groups for v in group) == list(range(n))
        for s, d in edges:
            assert (when[s] < when[d]) if kind == "forward" else (when[d] < when[s]), (kind, s, d)
    # and the batched schedule computes exactly what the node-by-node one does
    with torch.no_grad():
        torch.testing.assert_close(h, _reference_forward_backward(ghn, g, steps), rtol=1e-5, atol=1e-6)


def test_sync_information_travels_one_hop_per_step(data):
    """Sync propagation with T=1: the stem's embedding sees only its neighbours, so a change in the last cell edge
    does not reach it; one forward-backward round carries it there."""
    a, b = (3, 3, 3, 1, 3, 2), (3, 3, 3, 1, 3, 4)
    for hparams, same in (({"propagation": "sync", "steps_T": 1}, True), ({}, False)):
        method = make(data, "nb201", **hparams)
        with torch.no_grad():
            wa, wb = (method.generate(method.plan(arch))["stem.0.weight"] for arch in (a, b))
        assert torch.equal(wa, wb) == same, hparams


def test_sync_updates_all_nodes_together_each_step(data):
    method = make(data, "nb201", propagation="sync", steps_T=3)
    plan = method.plan(archs("nb201", 1)[0])
    method.hypernet.trace = []
    with torch.no_grad():
        method.hypernet.propagate(plan.extra["graph"])
    n = len(plan.extra["graph"].types)
    assert [(kind, nodes) for kind, _, nodes in method.hypernet.trace] == [("sync", tuple(range(n)))] * 3


@pytest.mark.parametrize("space", ("darts_cell", "nb201"))
def test_stacked_modules_follow_the_cells(data, space):
    """Every node of cells.k, parameter-free ones included (an nb201 skip edge or pooling from the cell input, a
    'sum'), lies in module k + 1; modules are propagated in order and backward passes stay inside their module."""
    net = NetConfig(8, 2, 10, 1)
    method = make(data, space, net, stacked=True, stacked_share_params=False)
    sp = get_space(space)
    rng = random.Random(4)
    # nb201: an arch whose cells start with a parameter-free op from the cell input (skip on edge 1<-0)
    arch = (1, 0, 4, 3, 2, 0) if space == "nb201" else sp.sample(rng)
    plan = method.plan(arch)
    graph = sp.to_graph(arch, net)
    g = plan.extra["graph"]
    num_cells = sum(1 for name, _ in plan.net.named_modules() if name.count(".") == 1 and name.startswith("cells."))
    assert len(method.hypernet.gnns) == num_cells + 2
    module_of = {v: seg.gnn for seg in g.segments for v in range(seg.start, seg.end)}
    expected = {"stem": 0, "head": num_cells + 1, **{f"cells.{k}": k + 1 for k in range(num_cells)}}
    assert [module_of[v] for v in range(len(graph.node_types))] == [expected[s] for s in graph.node_scopes]
    for v, module in enumerate(graph.node_modules):
        if module is not None and module.startswith("cells."):
            assert graph.node_scopes[v] == ".".join(module.split(".")[:2])
    free_in_cells = [v for v, (m, s) in enumerate(zip(graph.node_modules, graph.node_scopes, strict=True))
                     if m is None and s.startswith("cells.")]
    assert free_in_cells  # parameter-free nodes inside cells exist and are scoped to their cell
    assert [seg.gnn for seg in g.segments] == list(range(num_cells + 2))
    method.hypernet.trace = []
    with torch.no_grad():
        method.hypernet.propagate(g)
    order = [k for _, k, _ in method.hypernet.trace]
    assert order == sorted(order)
    for _, k, nodes in method.hypernet.trace:
        seg = g.segments[k]
        assert all(seg.start <= v < seg.end for v in nodes)
    for seg in g.segments:
        for level in seg.backward:  # backward messages come from successors inside the module only
            senders = g.dst[level.edges]
            assert ((senders >= seg.start) & (senders < seg.end)).all()


def test_config_errors(data):
    with pytest.raises(ConfigError, match="propagation"):
        make(data, "nb201", propagation="async")
    with pytest.raises(ConfigError, match="repeated cells"):
        make(data, "mbnet_chain", stacked=True)


def test_score_is_generated_weight_accuracy_and_resume_restores_the_hypernet(data):
    method = make(data, "nb201")
    method.train_epoch(0)
    sample = archs("nb201", 3, seed=5)
    scores = method.score(sample)
    assert scores == method.score(sample)  # same fixed val batches, deterministic generation
    # the score is the accuracy of the standalone net loaded with the generated weights (batch-statistic BN)
    plan = method.plan(sample[0])
    with torch.no_grad():
        params = method.generate(plan)
    net = get_space("nb201").build_standalone(sample[0], NET)
    net.load_state_dict({**params, **plan.buffers})
    net.train()
    x, y = next(data.batches("val", method.ctx.budget.batch_size, torch.Generator(), shuffle=False, augment=False))
    with torch.no_grad():
        assert scores[0] == pytest.approx(100.0 * (net(x).argmax(1) == y).float().mean().item())

    state = copy.deepcopy(method.state_dict())  # as saved to disk (no live optimizer tensors shared)
    clone = make(data, "nb201")
    clone.load_state_dict(state)
    assert clone.score(sample) == scores
    torch.manual_seed(0)
    a = method.train_epoch(1)
    torch.manual_seed(0)
    b = clone.train_epoch(1)
    assert a == b
    assert method.derive() == clone.derive()


def test_parameters_owned_by_no_node_come_from_the_mean_embedding(data):
    """Fallback for graph views that leave a parameterised module without a node: its parameters are generated
    from the mean node embedding (a global row) and still receive gradients."""
    method = make(data, "nb201")
    arch = archs("nb201", 1, seed=6)[0]
    plan = method.plan(arch)
    graph = get_space("nb201").to_graph(arch, NET)
    graph.node_modules = [None if m == "classifier" else m for m in graph.node_modules]
    g, (specs, counts) = method.graph_tensors(graph, plan)
    assert g.global_row and [s.name for s in specs[-2:]] == ["classifier.weight", "classifier.bias"]
    plan.extra.update(graph=g, specs=specs, layout=method.hypernet.decoder.layout(counts, torch.device("cpu")))
    x, y = batch(data)
    params = method.generate(plan)
    assert set(params) == {n for n, _ in plan.net.named_parameters()}
    F.cross_entropy(method.run(plan, params, x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.hypernet.decoder.parameters())
