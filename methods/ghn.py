"""GHN: Graph HyperNetworks for Neural Architecture Search (Zhang, Ren & Urtasun, ICLR 2019).

Each arch becomes its computation graph (`space.to_graph`: nodes = operators, edges = data flow, in topological
order). A gated graph neural network propagates node embeddings, and a shared hypernetwork H maps each node's
final embedding to all the weights of the operator that node owns; the generated net is trained end to end (task
loss backpropagated through the generated weights into phi), with a new uniformly sampled arch every step.
Search = rank `budget.candidates` random archs by val accuracy with generated weights, keep the best.

GNN (paper Sec. 3, ppuda's `GatedGNN` reimplementation of GHN-1): h_v^0 = embedding of v's operator type
(`nn.Embedding` over `space.graph_node_types`, equivalent to the paper's one-hot input); a message is
m_v = sum_u M(h_u) over v's neighbours with M a two-layer MLP; the update is h_v <- GRU(m_v, h_v) (a GRUCell).
Messages along data flow (from predecessors) and against it (from successors) have separate MLPs M_fwd, M_bwd
(ppuda shares one MLP for both; separate ones keep the direction visible to sync propagation as well); one GRU.

Propagation (`propagation`):
- forward_backward (the paper's scheme): one step visits the nodes in topological order, each updated from its
  predecessors' states already updated in this pass, then in reverse topological order from its successors.
  Nodes of equal depth do not depend on each other and are updated together, which equals the one-by-one order.
- sync: every node updates simultaneously from all its neighbours (predecessors via M_fwd, successors via M_bwd).
`steps_T` repeats either scheme (one forward-backward round covers the whole graph; sync needs about the graph's
depth to do so).

Stacked GHN (`stacked`): the graph is cut into the modules its view declares (`ArchGraph.node_scopes`: the stem,
each cell or fixed block between cells, the head, parameter-free nodes such as sums, concats, pooling and zeros
included); modules are propagated one after the other, each with its own GNN (`stacked_share_params: false`) or
one GNN for all (true). A module's nodes receive the final embeddings of their predecessors in earlier modules and
propagate (forward-backward or sync, T steps) only within the module; later modules never send messages back. The
type embedding and H are shared. It needs a graph view with repeated cells (a scope of kind CELL); a chain of
layers has none.

Weight generation: H is `methods._hypernet.ChunkDecoder` conditioned on h_v: the node's parameters (every tensor
of the module it owns, in `named_parameters` order, e.g. both depthwise/pointwise convs and BNs of a sep_conv) are
generated as consecutive fixed-size chunks, chunk j from (h_v, code of j); parameters owned by no node (none in
the three spaces) would be generated from the mean node embedding. Conv weights are whole-tensor normalised
(`weight_norm`), see `_hypernet`. BN uses batch statistics in training and scoring, as in the paper.

Optimiser: Adam, lr 1e-3 (the paper's), cosine-annealed to 0 over the search, gradient clipping at
budget.grad_clip; loss is cross-entropy on training batches of budget.batch_size.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from oneshot_bench.config import Choice
from oneshot_bench.errors import ConfigError
from search_spaces.base import CELL, ENCODE, SAMPLE, STANDALONE, TO_GRAPH, ArchGraph

from ._hypernet import ChunkDecoder, HypernetHparams, HypernetMethod, StandalonePlan, owning_module, shape_params
from .base import register_method


class Propagation(Choice):
    forward_backward = "forward_backward"  # the paper's: topological order, then reverse order
    sync = "sync"  # every node at once from all its neighbours


@dataclass
class GHNHparams(HypernetHparams):
    hidden: int = 32  # node embedding size (ppuda's GHN-1: 32)
    propagation: Propagation = Propagation.forward_backward  # forward_backward (paper) | sync
    steps_T: int = 1  # propagation steps (forward_backward: rounds of forward + backward pass)
    stacked: bool = False  # one GNN per repeated module (cell), modules propagated in order
    stacked_share_params: bool = True  # stacked: one GNN shared by all modules (true) or one per module (false)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps_T < 1 or self.hidden < 1:
            raise ConfigError(f"method.params.steps_T and hidden must be >= 1, got {self.steps_T} and {self.hidden}.")


# ---- graph tensors --------------------------------------------------------------------------------------------------

@dataclass
class Level:
    """Nodes updated together and the edges whose messages they receive; `slot[i]` is the position in `nodes` of
    the receiving node of edge `edges[i]`."""

    nodes: torch.Tensor
    edges: torch.Tensor
    slot: torch.Tensor


@dataclass
class Segment:
    gnn: int  # index of the GNN that propagates this module
    start: int  # node range [start, end) (modules are contiguous in topological order)
    end: int
    forward: list[Level]  # topological order, by depth within the module
    backward: list[Level]  # reverse topological order
    sync_in: Level  # all module nodes; messages from all predecessors (also in earlier modules)
    sync_out: Level  # all module nodes; messages from successors inside the module


@dataclass
class GraphTensors:
    types: torch.Tensor  # (N,) index into space.graph_node_types
    src: torch.Tensor  # (E,)
    dst: torch.Tensor  # (E,)
    segments: list[Segment]
    rows: torch.Tensor  # (R,) nodes that own parameters, in the decoder's row order
    global_row: bool  # one more decoder row (mean embedding) for parameters owned by no node


def _tensor(values, device) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.long, device=device)


def scope_bounds(graph: ArchGraph) -> list[tuple[int, int]]:
    """[start, end) node range of every declared scope, in network order (ArchGraph checks they are contiguous)."""
    bounds: list[tuple[int, int]] = []
    for v, scope in enumerate(graph.node_scopes):
        if v == 0 or graph.node_scopes[v - 1] != scope:
            bounds.append((v, v + 1))
        else:
            bounds[-1] = (bounds[-1][0], v + 1)
    return bounds


def _segment(gnn: int, start: int, end: int, src: list[int], dst: list[int], device) -> Segment:
    inside = lambda v: start <= v < end  # noqa: E731
    into = {v: [] for v in range(start, end)}  # edge ids into v (any source)
    internal_in = {v: [] for v in range(start, end)}
    internal_out = {v: [] for v in range(start, end)}
    for e, (u, v) in enumerate(zip(src, dst, strict=True)):
        if inside(v):
            into[v].append(e)
            if inside(u):
                internal_in[v].append(e)
                internal_out[u].append(e)
    depth: dict[int, int] = {}
    for v in range(start, end):  # predecessors have smaller indices
        depth[v] = 1 + max((depth[src[e]] for e in internal_in[v]), default=-1)
    rdepth: dict[int, int] = {}
    for v in reversed(range(start, end)):
        rdepth[v] = 1 + max((rdepth[dst[e]] for e in internal_out[v]), default=-1)

    def levels(by: dict[int, int], edges_of: dict[int, list[int]]) -> list[Level]:
        out = []
        for d in range(max(by.values()) + 1):
            nodes = [v for v in range(start, end) if by[v] == d]
            pairs = [(e, i) for i, v in enumerate(nodes) for e in edges_of[v]]
            out.append(Level(_tensor(nodes, device), _tensor((e for e, _ in pairs), device),
                             _tensor((i for _, i in pairs), device)))
        return out

    all_nodes = list(range(start, end))
    sync_in = [(e, v - start) for v in all_nodes for e in into[v]]
    sync_out = [(e, v - start) for v in all_nodes for e in internal_out[v]]
    return Segment(gnn, start, end, levels(depth, into), levels(rdepth, internal_out),
                   Level(_tensor(all_nodes, device), _tensor((e for e, _ in sync_in), device),
                         _tensor((i for _, i in sync_in), device)),
                   Level(_tensor(all_nodes, device), _tensor((e for e, _ in sync_out), device),
                         _tensor((i for _, i in sync_out), device)))


# ---- the hypernetwork -----------------------------------------------------------------------------------------------

def _mlp(hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))


class GatedGNN(nn.Module):
    """One set of propagation parameters: message MLPs along / against data flow and a GRU update."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.msg_fwd = _mlp(hidden)
        self.msg_bwd = _mlp(hidden)
        self.gru = nn.GRUCell(hidden, hidden)

    def update(self, h: torch.Tensor, level: Level, senders: torch.Tensor, message: nn.Module,
               extra: Optional[tuple[Level, torch.Tensor, nn.Module]] = None) -> torch.Tensor:
        """New states of `level.nodes` from the messages of `senders[level.edges]` (plus an optional second set).
        States and message sums stay in h's dtype (fp32) under bf16 autocast, where the MLPs and the GRU compute."""
        m = h.new_zeros(len(level.nodes), h.shape[1])
        if len(level.edges):
            m = m.index_add(0, level.slot, message(h[senders[level.edges]]).to(m.dtype))
        if extra is not None:
            lvl, snd, msg = extra
            if len(lvl.edges):
                m = m.index_add(0, lvl.slot, msg(h[snd[lvl.edges]]).to(m.dtype))
        return h.index_copy(0, level.nodes, self.gru(m, h[level.nodes]).to(h.dtype))


class GraphHyperNetwork(nn.Module):
    def __init__(self, node_types: tuple[str, ...], hp: GHNHparams, num_gnns: int) -> None:
        super().__init__()
        self.node_types = node_types
        self.propagation, self.steps = hp.propagation, hp.steps_T
        self.embed = nn.Embedding(len(node_types), hp.hidden)
        self.gnns = nn.ModuleList(GatedGNN(hp.hidden) for _ in range(num_gnns))
        self.decoder = ChunkDecoder(hp.hidden, hp.decoder_hidden, hp.chunk_size, hp.pos_dim, hp.decoder_layers,
                                    hp.code_radix)
        # set to a list to record the propagation schedule: (pass, module index, node ids updated together)
        self.trace: Optional[list[tuple[str, int, tuple[int, ...]]]] = None

    def _record(self, kind: str, k: int, nodes: torch.Tensor) -> None:
        if self.trace is not None:
            self.trace.append((kind, k, tuple(nodes.tolist())))

    def propagate(self, g: GraphTensors) -> torch.Tensor:
        h = self.embed(g.types)
        for k, seg in enumerate(g.segments):
            gnn = self.gnns[seg.gnn]
            for _ in range(self.steps):
                if self.propagation == Propagation.sync:
                    self._record("sync", k, seg.sync_in.nodes)
                    h = gnn.update(h, seg.sync_in, g.src, gnn.msg_fwd, (seg.sync_out, g.dst, gnn.msg_bwd))
                    continue
                for level in seg.forward:
                    self._record("forward", k, level.nodes)
                    h = gnn.update(h, level, g.src, gnn.msg_fwd)
                for level in seg.backward:
                    self._record("backward", k, level.nodes)
                    h = gnn.update(h, level, g.dst, gnn.msg_bwd)
        return h

    def forward(self, g: GraphTensors, layout) -> torch.Tensor:
        """All generated values, rows in `g.rows` order (then the global row)."""
        h = self.propagate(g)
        cond = h[g.rows]
        if g.global_row:
            cond = torch.cat([cond, h.mean(0, keepdim=True)])
        return self.decoder(cond, layout)


# ---- the method -----------------------------------------------------------------------------------------------------

@register_method("ghn")
class GHN(HypernetMethod):
    Hparams = GHNHparams
    required_capabilities = frozenset({SAMPLE, ENCODE, STANDALONE, TO_GRAPH})

    def make_hypernet(self) -> GraphHyperNetwork:
        space = self.ctx.space
        if not space.graph_node_types:
            raise ConfigError(f"space {space.name!r} declares no graph_node_types; GHN needs its graph view.")
        num_gnns = 1
        self.num_scopes = None
        if self.hp.stacked:
            # every arch of a space has the same modules (stem, cells, blocks, head); a probe arch shows them
            probe = space.to_graph(space.sample(random.Random(0)), self.ctx.net)
            if not probe.node_scopes or CELL not in probe.scope_kinds.values():
                raise ConfigError(f"stacked GHN needs a graph view whose modules include repeated cells (scopes of "
                                  f"kind {CELL!r}); space {space.name!r} declares "
                                  f"{sorted(set(probe.scope_kinds.values())) or 'no scopes'}. Set stacked=false.")
            self.num_scopes = len(probe.scopes())
            num_gnns = 1 if self.hp.stacked_share_params else self.num_scopes
        return GraphHyperNetwork(tuple(space.graph_node_types), self.hp, num_gnns)

    def graph_tensors(self, graph: ArchGraph, plan: StandalonePlan) -> tuple[GraphTensors, list]:
        space, device = self.ctx.space, self.ctx.device
        type_index = {t: i for i, t in enumerate(space.graph_node_types)}
        unknown = sorted({t for t in graph.node_types if t not in type_index})
        if unknown:
            raise ValueError(f"space {space.name!r}: to_graph produced node types {unknown} missing from "
                             f"graph_node_types {list(space.graph_node_types)}")
        n = len(graph.node_types)
        src = [s for s, _ in graph.edges]
        dst = [d for _, d in graph.edges]
        if self.hp.stacked:
            bounds = scope_bounds(graph)
            if len(bounds) != self.num_scopes:
                raise ValueError(f"space {space.name!r}: the graph of {space.encode(plan.arch)} has {len(bounds)} "
                                 f"scopes, the probe arch {self.num_scopes}; stacked GHN needs the same modules in "
                                 f"every arch")
            segments = [_segment(0 if self.hp.stacked_share_params else k, start, end, src, dst, device)
                        for k, (start, end) in enumerate(bounds)]
        else:
            segments = [_segment(0, 0, n, src, dst, device)]

        # owner node of every parameter: the node naming the longest module prefix of its name
        modules = graph.node_modules or [None] * n
        owner_of: dict[str, int] = {}
        for v, module in enumerate(modules):
            if module is None:
                continue
            if module in owner_of:
                raise ValueError(f"space {space.name!r}: graph nodes {owner_of[module]} and {v} both own {module!r}")
            owner_of[module] = v
        rows: dict[int, list] = {}
        unowned = []
        for spec in plan.params:
            module = owning_module(spec.name, owner_of)
            owner = None if module is None else owner_of[module]
            if owner is None:
                unowned.append(spec)
            else:
                rows.setdefault(owner, []).append(spec)
        order = sorted(rows)
        specs = [s for v in order for s in rows[v]] + unowned
        counts = [sum(s.numel for s in rows[v]) for v in order] + ([sum(s.numel for s in unowned)] if unowned else [])
        g = GraphTensors(_tensor((type_index[t] for t in graph.node_types), device), _tensor(src, device),
                         _tensor(dst, device), segments, _tensor(order, device), bool(unowned))
        return g, [specs, counts]

    def extend_plan(self, plan: StandalonePlan) -> None:
        graph = self.ctx.space.to_graph(plan.arch, self.ctx.net)
        if not any(m is not None for m in graph.node_modules):
            raise ConfigError(f"space {self.ctx.space.name!r}: to_graph names no node's module (ArchGraph."
                              f"node_modules), so GHN cannot tell which node generates which weights.")
        g, (specs, counts) = self.graph_tensors(graph, plan)
        plan.extra.update(graph=g, specs=specs, layout=self.hypernet.decoder.layout(counts, self.ctx.device))

    def generate(self, plan: StandalonePlan) -> dict[str, torch.Tensor]:
        flat = self.hypernet(plan.extra["graph"], plan.extra["layout"])
        return shape_params(flat, plan.extra["specs"], self.hp.weight_norm)
