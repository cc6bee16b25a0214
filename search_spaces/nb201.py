"""NAS-Bench-201 (Dong & Yang, ICLR 2020): one cell with 4 nodes and 6 edges, 5 ops per edge, 15,625 archs.

An arch is 6 ints, one per edge in the official order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2, each indexing OPS.
Its canonical string is the official one, e.g.
    |nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|
(nodes separated by '+', the token `op~j` is the edge from node j). Node i sums its incoming edges; the cell
output is node 3.

Network (AutoDL-Projects' TinyNetwork), C = NetConfig.channels, N = NetConfig.cells_per_stage (paper: 16, 5):
stem conv3x3 + BN (in_channels -> C); N cells at C; ResNetBasicblock stride 2 -> 2C; N cells; block -> 4C;
N cells; BN + ReLU; global average pool; linear. The same cell (same arch) is used everywhere.

Enumeration order: `enumerate()` is itertools.product order (first edge slowest, last edge fastest). The
benchmark's own arch index (NATS-Bench TSS, row i of its tables) is NOT a product order but a fixed permutation
of it, so look benchmark results up by the arch string, never by position.
"""
from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from oneshot_bench.config import BnMode, NetConfig
from oneshot_bench.errors import ArchStringError, ConfigError

from .base import (
    BLOCK,
    CELL,
    ENCODE,
    ENUMERATE,
    HEAD,
    MUTATE,
    SAMPLE,
    STANDALONE,
    STEM,
    SUPERNET,
    TO_GRAPH,
    Arch,
    ArchGraph,
    ChoiceOp,
    ChoicePoint,
    Decision,
    Op,
    Path,
    SearchSpace,
    Supernet,
    argmax_per_point,
    register_space,
)
from .ops import (
    GraphBuilder,
    ReLUConvBN,
    ResNetBasicblock,
    Zero,
    avg_pool_3x3,
    subnet_state_dict,
    sum_or_zeros,
)

OP_SPECS: tuple[Op, ...] = (
    Op("none", zero=True, parameter_free=True),
    Op("skip_connect", parameter_free=True),
    Op("nor_conv_1x1"),
    Op("nor_conv_3x3"),
    Op("avg_pool_3x3", parameter_free=True, pooling=True),
)
OPS: tuple[str, ...] = tuple(op.name for op in OP_SPECS)
NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), official order
EDGE_KEYS: tuple[str, ...] = tuple(f"{i}<-{j}" for i, j in EDGES)
# Edges into one node are summed there; one cell type, repeated (each cell has its own weights).
CHOICE_POINTS = tuple(ChoicePoint(key, OP_SPECS, node=f"node{i}", cell="cell") for key, (i, _) in
                      zip(EDGE_KEYS, EDGES, strict=True))
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
_HELP = f"an nb201 arch string has 3 '+'-separated nodes of '|op~input|' tokens, ops {list(OPS)}, e.g. {EXAMPLE}"

_OP_FACTORIES: dict[str, Callable[[int], nn.Module]] = {  # channels -> op, all stride 1 inside a cell
    "none": lambda c: Zero(),
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: ReLUConvBN(c, c, 1, 1, 0),
    "nor_conv_3x3": lambda c: ReLUConvBN(c, c, 3, 1, 1),
    "avg_pool_3x3": lambda c: avg_pool_3x3(),
}


def _incoming(node: int) -> list[tuple[int, int]]:
    """(edge index, source node) of the edges into `node`, in official order."""
    return [(e, j) for e, (i, j) in enumerate(EDGES) if i == node]


def _check_arch(arch: Arch) -> Arch:
    arch = tuple(operator.index(a) for a in arch)
    if len(arch) != len(EDGES) or not all(0 <= a < len(OPS) for a in arch):
        raise ValueError(f"invalid nb201 arch {arch}: expected {len(EDGES)} ints in [0, {len(OPS)})")
    return arch


def _check_net(net: NetConfig) -> None:
    for name in ("channels", "cells_per_stage", "num_classes", "in_channels"):
        if getattr(net, name) < 1:
            raise ConfigError(f"nb201 needs net.{name} >= 1, got {getattr(net, name)}.")


# ---- networks -------------------------------------------------------------------------------------------------------

class NB201Cell(nn.Module):
    """One arch's cell: `edges[key]` holds the op of each non-'none' edge."""

    def __init__(self, arch: Arch, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({key: _OP_FACTORIES[OPS[op]](channels)
                                    for key, op in zip(EDGE_KEYS, arch, strict=True) if not OP_SPECS[op].zero})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, NUM_NODES):
            terms = [self.edges[EDGE_KEYS[e]](nodes[j]) for e, j in _incoming(i) if EDGE_KEYS[e] in self.edges]
            nodes.append(sum_or_zeros(terms, x))
        return nodes[-1]


class NB201SearchCell(nn.Module):
    """Supernet cell: `edges[key]` is a ChoiceOp over all OPS; edge e follows path[e]."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({key: ChoiceOp(e, OP_SPECS, [_OP_FACTORIES[name](channels) for name in OPS])
                                    for e, key in enumerate(EDGE_KEYS)})

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        nodes = [x]
        for i in range(1, NUM_NODES):
            terms = [self.edges[EDGE_KEYS[e]](nodes[j], path[e]) for e, j in _incoming(i)]
            nodes.append(sum_or_zeros([t for t in terms if t is not None], x))
        return nodes[-1]


class _TinyNetwork(nn.Module):
    """Stem, stages and head shared by the standalone nets and the supernet (same module names)."""

    def _build(self, net: NetConfig, make_cell: Callable[[int], nn.Module]) -> None:
        _check_net(net)
        c, n = net.channels, net.cells_per_stage
        self.stem = nn.Sequential(nn.Conv2d(net.in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        cells: list[nn.Module] = []
        for stage in range(3):
            width = c * 2 ** stage
            if stage > 0:
                cells.append(ResNetBasicblock(width // 2, width, stride=2))
            cells.extend(make_cell(width) for _ in range(n))
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * c, net.num_classes)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(self.lastact(x)), 1))


class NB201Net(_TinyNetwork):
    """One architecture as a plain network (forward(x) -> logits)."""

    def __init__(self, arch: Arch, net: NetConfig) -> None:
        super().__init__()
        arch = _check_arch(arch)
        self._build(net, lambda width: NB201Cell(arch, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        return self._logits(x)


class NB201Supernet(Supernet, _TinyNetwork):
    """Weight-sharing net over all 15,625 archs; choice point e is edge e of every cell (each cell has its own
    weights, all cells follow the same path entry)."""

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        self._build(net, NB201SearchCell)
        self.choice_points = list(CHOICE_POINTS)

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        if len(path) != len(EDGES):
            raise ValueError(f"path has {len(path)} entries; the nb201 supernet has {len(EDGES)} choice points")
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResNetBasicblock) else cell(x, path)
        return self._logits(x)

    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        return subnet_state_dict(self, _check_arch(arch))


# ---- the space ------------------------------------------------------------------------------------------------------

@register_space("nb201")
class NB201Space(SearchSpace):
    capabilities = frozenset({SAMPLE, MUTATE, ENCODE, ENUMERATE, TO_GRAPH, SUPERNET, STANDALONE})
    # the choice BNs on batch statistics: across seeds 0-2 of every supernet method at budget=compare it ranks far
    # better than recalibrating every BN (README "Scoring BN modes"; results/measured/nb201_weight_sharing_bn_modes)
    scoring_bn_mode = BnMode.batch_stats_choice
    description = "NAS-Bench-201: 4-node cell, 6 edges x 5 ops (15,625 archs), ResNet-style macro skeleton"
    graph_node_types = ("input", "conv_3x3_bn", "relu_conv_bn_1x1", "relu_conv_bn_3x3", "avg_pool_3x3",
                        "skip_connect", "sum", "zeros", "avg_pool_2x2_conv_1x1", "bn_relu", "global_avg_pool",
                        "linear", "output")

    @property
    def decisions(self) -> list[Decision]:
        return [Decision(key, OPS) for key in EDGE_KEYS]

    @property
    def choice_points(self) -> list[ChoicePoint]:
        return list(CHOICE_POINTS)

    def encode(self, arch: Arch) -> str:
        arch = _check_arch(arch)
        nodes = ["|" + "|".join(f"{OPS[arch[e]]}~{j}" for e, j in _incoming(i)) + "|" for i in range(1, NUM_NODES)]
        return "+".join(nodes)

    def decode(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchStringError(f"expected a string, got {type(text).__name__}; {_HELP}")
        parts = text.strip().split("+")
        if len(parts) != NUM_NODES - 1:
            raise ArchStringError(f"arch string {text!r} has {len(parts)} '+'-separated nodes, not "
                                  f"{NUM_NODES - 1}; {_HELP}")
        arch: list[int] = []
        for i, part in enumerate(parts, start=1):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise ArchStringError(f"node {i} {part!r} of {text!r} must start and end with '|'; {_HELP}")
            tokens = part[1:-1].split("|")
            if len(tokens) != i:
                raise ArchStringError(f"node {i} {part!r} of {text!r} has {len(tokens)} tokens, not {i} (one per "
                                      f"earlier node); {_HELP}")
            for j, token in enumerate(tokens):
                op, sep, src = token.partition("~")
                if not sep or op not in OPS or src != str(j):
                    raise ArchStringError(f"bad token {token!r} in node {i} of {text!r}: expected 'op~{j}' with op "
                                          f"in {list(OPS)}; {_HELP}")
                arch.append(OPS.index(op))
        return tuple(arch)

    def size(self) -> int:
        return len(OPS) ** len(EDGES)

    def enumerate(self) -> Iterator[Arch]:
        # Product order, not the benchmark's index order (see the module docstring).
        return itertools.product(range(len(OPS)), repeat=len(EDGES))

    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        """One node per op instance of the standalone net ('none' edges have none), a 'sum' per cell node with
        several inputs ('zeros' with none), each ResNet block as its convs, shortcut and sum, then the head."""
        with torch.device("meta"):  # only the module structure is needed
            model = self.build_standalone(arch, net)
        g = GraphBuilder()
        g.enter("stem", STEM)
        x = g.add("conv_3x3_bn", [g.add("input")], "stem")
        for k, cell in enumerate(model.cells):
            name = g.enter(f"cells.{k}", BLOCK if isinstance(cell, ResNetBasicblock) else CELL)
            if isinstance(cell, ResNetBasicblock):
                main = g.add("relu_conv_bn_3x3", [g.add("relu_conv_bn_3x3", [x], f"{name}.conv_a")], f"{name}.conv_b")
                shortcut = g.add("avg_pool_2x2_conv_1x1", [x], f"{name}.downsample")
                x = g.add("sum", [shortcut, main])
                continue
            nodes = [x]
            for i in range(1, NUM_NODES):
                terms = []
                for e, j in _incoming(i):
                    if EDGE_KEYS[e] in cell.edges:
                        with g.shaped_by(e):  # decision e is edge e's op
                            terms.append(g.add_op(cell.edges[EDGE_KEYS[e]], f"{name}.edges.{EDGE_KEYS[e]}", nodes[j]))
                nodes.append(g.add_sum(terms))
            x = nodes[-1]
        g.enter("head", HEAD)
        x = g.add("global_avg_pool", [g.add("bn_relu", [x], "lastact")])
        g.add("output", [g.add("linear", [x], "classifier")])
        return g.graph()

    def build_supernet(self, net: NetConfig) -> NB201Supernet:
        return NB201Supernet(net)

    def build_standalone(self, arch: Arch, net: NetConfig) -> NB201Net:
        return NB201Net(arch, net)

    def arch_to_path(self, arch: Arch) -> list[int]:
        return list(_check_arch(arch))

    def derive_from_weights(self, weights: Sequence[torch.Tensor]) -> Arch:
        """Argmax per edge ('none' included, as in NB201's DARTS/GDAS baselines)."""
        return argmax_per_point(weights, CHOICE_POINTS)
