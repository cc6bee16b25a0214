"""The DARTS CNN cell space (Liu et al., ICLR 2019): a normal and a reduction cell, each with 2 input nodes and
4 intermediate nodes; every intermediate node sums 2 ops applied to 2 distinct earlier nodes.

Nodes of a cell are numbered as in DARTS genotypes: 0 and 1 are the outputs of the two previous cells (after
preprocessing), 2..5 the intermediate nodes; the cell output concatenates nodes 2..5.

Arch: 32 ints, 16 per cell (normal first, then reduce), 4 per intermediate node i = 0..3 (node 2 + i):
input_a, op_a, input_b, op_b, with inputs in [0, 2 + i) and ops indexing OPS (the 7 non-'none' ops). An arch is
valid only when input_a < input_b, which makes the encoding canonical (one arch per network).

Canonical string: `normal=<node>|<node>|<node>|<node>;reduce=<node>|<node>|<node>|<node>`, each node written
`op_a~input_a,op_b~input_b`, e.g. DARTS-V2 (`DARTS_V2` below):
    normal=sep_conv_3x3~0,sep_conv_3x3~1|sep_conv_3x3~0,sep_conv_3x3~1|skip_connect~0,sep_conv_3x3~1|skip_connect~0,dil_conv_3x3~2;reduce=max_pool_3x3~0,max_pool_3x3~1|max_pool_3x3~1,skip_connect~2|max_pool_3x3~0,skip_connect~2|max_pool_3x3~1,skip_connect~2
`decode` also accepts the two inputs of a node in either order and spaces around separators.

Supernet choice points: every edge j -> i of both cells (14 per cell, 28 in all, normal first, DARTS edge
order), candidates SUPERNET_OPS = 'none' + OPS; `arch_to_path` puts 'none' on the 12 unused edges of a cell.

Network (DARTS NetworkCIFAR, no auxiliary head), C = NetConfig.channels, N = NetConfig.cells_per_stage:
stem conv3x3 + BN (in_channels -> 3C); 3N + 2 cells: N normal, reduction, N normal, reduction, N normal (cell
width C, doubled at each reduction, output 4x the width); global average pool; linear. N = 6, C = 36 is the
paper's 20-cell evaluation net. Differences from DARTS' search code: pooling ops have no extra BN and every BN
is affine, so that supernet weights copy exactly into standalone nets.
"""
from __future__ import annotations

import functools
import math
import operator
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError, ConfigError

from .base import (
    CELL,
    ENCODE,
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
    InputSelection,
    Op,
    Path,
    SearchSpace,
    Supernet,
    register_space,
)
from .ops import (
    DilConv,
    FactorizedReduce,
    GraphBuilder,
    ReLUConvBN,
    SepConv,
    Zero,
    avg_pool_3x3,
    drop_path,
    max_pool_3x3,
    subnet_state_dict,
    sum_or_zeros,
)

CELL_TYPES = ("normal", "reduce")
NUM_INPUTS = 2  # the two previous cells
NUM_NODES = 4  # intermediate nodes per cell
STEM_MULTIPLIER = 3
SLOTS = ("input_a", "op_a", "input_b", "op_b")

_OP_FACTORIES: dict[str, Callable[[int, int], nn.Module]] = {  # (channels, stride) -> op, DARTS operations.py
    "none": lambda c, s: Zero(s),
    "max_pool_3x3": lambda c, s: max_pool_3x3(s),
    "avg_pool_3x3": lambda c, s: avg_pool_3x3(s),
    "skip_connect": lambda c, s: nn.Identity() if s == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": lambda c, s: SepConv(c, c, 3, s, 1),
    "sep_conv_5x5": lambda c, s: SepConv(c, c, 5, s, 2),
    "dil_conv_3x3": lambda c, s: DilConv(c, c, 3, s, 2, 2),
    "dil_conv_5x5": lambda c, s: DilConv(c, c, 5, s, 4, 2),
}
SUPERNET_OPS: tuple[str, ...] = tuple(_OP_FACTORIES)
OPS: tuple[str, ...] = SUPERNET_OPS[1:]  # an arch's ops: never 'none'


def op_specs(reduction: bool) -> tuple[Op, ...]:
    """Traits of SUPERNET_OPS in a normal or a reduction cell (a strided skip is a FactorizedReduce with weights)."""
    return (Op("none", zero=True, parameter_free=True),
            Op("max_pool_3x3", parameter_free=True, pooling=True),
            Op("avg_pool_3x3", parameter_free=True, pooling=True),
            Op("skip_connect", parameter_free=not reduction),
            *(Op(name) for name in SUPERNET_OPS[4:]))


@dataclass(frozen=True, eq=False)
class CellLayout:
    """What follows from the number of intermediate nodes per cell (`space.params.nodes`; DARTS: 4): the edges
    j -> i of one cell in DARTS order (i = 2..nodes+1, j = 0..i-1, keyed "i<-j" in module names), the supernet's
    choice points and input selections, and the number of valid archs."""

    nodes: int
    edges: tuple[tuple[int, int], ...]
    edge_index: dict[tuple[int, int], int]
    choice_points: tuple[ChoicePoint, ...]
    input_selections: tuple[InputSelection, ...]
    num_archs: int  # per cell, node i picks 2 of its 2 + i inputs and an op for each

    @property
    def edges_per_cell(self) -> int:
        return len(self.edges)

    @property
    def decisions_per_cell(self) -> int:
        return self.nodes * len(SLOTS)


@functools.cache
def cell_layout(nodes: int) -> CellLayout:
    edges = tuple((i, j) for i in range(NUM_INPUTS, NUM_INPUTS + nodes) for j in range(i))
    index = {edge: e for e, edge in enumerate(edges)}
    # choice points: a cell's edges (normal cell first); the edges into node i are summed at node i
    points = tuple(ChoicePoint(f"{cell}.{i}<-{j}", op_specs(cell == "reduce"), node=f"{cell}.node{i}", cell=cell)
                   for cell in CELL_TYPES for i, j in edges)
    # each intermediate node keeps exactly 2 of its incoming edges (the others take 'none')
    selections = tuple(InputSelection(f"{cell}.node{i}", tuple(c * len(edges) + index[(i, j)] for j in range(i)),
                                      keep=2)
                       for c, cell in enumerate(CELL_TYPES) for i in range(NUM_INPUTS, NUM_INPUTS + nodes))
    count = math.prod(math.comb(NUM_INPUTS + i, 2) * len(OPS) ** 2 for i in range(nodes)) ** len(CELL_TYPES)
    return CellLayout(nodes, edges, index, points, selections, count)


MAX_NODES = 8
LAYOUT = cell_layout(NUM_NODES)  # DARTS' cell; the module constants below are its
EDGES: tuple[tuple[int, int], ...] = LAYOUT.edges
EDGE_INDEX = LAYOUT.edge_index
EDGES_PER_CELL = LAYOUT.edges_per_cell

DARTS_V2 = ("normal=sep_conv_3x3~0,sep_conv_3x3~1|sep_conv_3x3~0,sep_conv_3x3~1|skip_connect~0,sep_conv_3x3~1|"
            "skip_connect~0,dil_conv_3x3~2;reduce=max_pool_3x3~0,max_pool_3x3~1|max_pool_3x3~1,skip_connect~2|"
            "max_pool_3x3~0,skip_connect~2|max_pool_3x3~1,skip_connect~2")
_HELP = (f"a darts_cell arch string is 'normal=<4 nodes>;reduce=<4 nodes>', nodes separated by '|', each node "
         f"'op~input,op~input' with two distinct inputs < node number (2..5), ops {list(OPS)}; e.g. {DARTS_V2}")

NUM_ARCHS = LAYOUT.num_archs  # exact number of valid archs of DARTS' cell (about 1.08e18)

Gene = tuple[int, int]  # (input node, index into OPS)
Node = tuple[Gene, Gene]  # the two inputs of an intermediate node, input of the first < input of the second


def _to_nodes(arch: Arch) -> list[Node]:
    """The intermediate nodes (the normal cell's, then the reduction cell's)."""
    return [((arch[k], arch[k + 1]), (arch[k + 2], arch[k + 3])) for k in range(0, len(arch), len(SLOTS))]


def _from_nodes(nodes: Sequence[Sequence[Gene]]) -> Arch:
    """Flatten nodes into an arch, putting each node's two genes in canonical (input-sorted) order."""
    return tuple(v for node in nodes for gene in sorted(node) for v in gene)


def _is_valid(arch: Arch, layout: CellLayout = LAYOUT) -> bool:
    if len(arch) != len(CELL_TYPES) * layout.decisions_per_cell:
        return False
    return all(0 <= a < b < NUM_INPUTS + n % layout.nodes and 0 <= op_a < len(OPS) and 0 <= op_b < len(OPS)
               for n, ((a, op_a), (b, op_b)) in enumerate(_to_nodes(arch)))


def layout_of(arch: Arch) -> CellLayout:
    """The layout an arch's length implies (a standalone net needs no space to know its node count)."""
    return cell_layout(max(1, len(arch) // (len(CELL_TYPES) * len(SLOTS))))


def _check_arch(arch: Arch, layout: Optional[CellLayout] = None) -> Arch:
    arch = tuple(operator.index(a) for a in arch)
    layout = layout or layout_of(arch)
    if not _is_valid(arch, layout):
        raise ValueError(f"invalid darts_cell arch {arch}: expected {len(CELL_TYPES) * layout.decisions_per_cell} "
                         f"ints, (input_a, op_a, input_b, op_b) per node with input_a < input_b < node number")
    return arch


def _check_net(net: NetConfig) -> None:
    for name, least in (("channels", 2), ("cells_per_stage", 1), ("num_classes", 1), ("in_channels", 1)):
        if getattr(net, name) < least:
            raise ConfigError(f"darts_cell needs net.{name} >= {least}, got {getattr(net, name)}.")


def arch_to_path(arch: Arch, layout: Optional[CellLayout] = None) -> list[int]:
    """Index into SUPERNET_OPS for each edge (DARTS: 28): the chosen op + 1 on used edges, 0 ('none') elsewhere."""
    layout = layout or layout_of(arch)
    path = [0] * (len(CELL_TYPES) * layout.edges_per_cell)
    for n, node in enumerate(_to_nodes(_check_arch(arch, layout))):
        cell, i = divmod(n, layout.nodes)
        for j, op in node:
            path[cell * layout.edges_per_cell + layout.edge_index[(NUM_INPUTS + i, j)]] = op + 1
    return path




# ---- networks -------------------------------------------------------------------------------------------------------

class _CellBase(nn.Module):
    """Preprocessing of the two cell inputs to the cell width C: a FactorizedReduce for the input two cells back
    when the previous cell halved the resolution, else ReLU-Conv1x1-BN."""

    def _build_preprocess(self, c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        self.reduction = reduction
        self.preprocess0 = FactorizedReduce(c_prev_prev, c) if reduction_prev else ReLUConvBN(c_prev_prev, c, 1)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1)

    def _stride(self, j: int) -> int:
        return 2 if self.reduction and j < NUM_INPUTS else 1


class DartsCell(_CellBase):
    """One arch's cell: `edges["i<-j"]` holds the op of each of the 8 used edges."""

    def __init__(self, nodes: Sequence[Node], c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self._build_preprocess(c_prev_prev, c_prev, c, reduction, reduction_prev)
        self.inputs = [[j for j, _ in node] for node in nodes]  # node i's two input nodes
        self.edges = nn.ModuleDict({f"{NUM_INPUTS + i}<-{j}": _OP_FACTORIES[OPS[op]](c, self._stride(j))
                                    for i, node in enumerate(nodes) for j, op in node})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i, inputs in enumerate(self.inputs):
            terms = []
            for j in inputs:
                op = self.edges[f"{NUM_INPUTS + i}<-{j}"]
                h = op(states[j])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                terms.append(h)
            states.append(terms[0] + terms[1])
        return torch.cat(states[NUM_INPUTS:], dim=1)


class DartsSearchCell(_CellBase):
    """Supernet cell: `edges["i<-j"]` is a ChoiceOp over SUPERNET_OPS for each edge (DARTS: 14)."""

    def __init__(self, first_point: int, c_prev_prev: int, c_prev: int, c: int, reduction: bool,
                 reduction_prev: bool, layout: CellLayout = LAYOUT) -> None:
        super().__init__()
        self.layout = layout
        self._build_preprocess(c_prev_prev, c_prev, c, reduction, reduction_prev)
        self.edges = nn.ModuleDict({
            f"{i}<-{j}": ChoiceOp(first_point + e, op_specs(reduction), [_OP_FACTORIES[n](c, self._stride(j))
                                                                         for n in SUPERNET_OPS])
            for e, (i, j) in enumerate(layout.edges)})

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, path: Path) -> torch.Tensor:
        """`path` is this cell type's entries, one per edge."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(NUM_INPUTS, NUM_INPUTS + self.layout.nodes):
            terms = [self.edges[f"{i}<-{j}"](states[j], path[self.layout.edge_index[(i, j)]]) for j in range(i)]
            states.append(sum_or_zeros([t for t in terms if t is not None], states[0], 2 if self.reduction else 1))
        return torch.cat(states[NUM_INPUTS:], dim=1)


CellFactory = Callable[[int, int, int, bool, bool], nn.Module]  # (c_prev_prev, c_prev, c, reduction, red._prev)


class _NetworkCIFAR(nn.Module):
    """Stem, cell sequence and head shared by the standalone nets and the supernet (same module names)."""

    def _build(self, net: NetConfig, make_cell: CellFactory, nodes: int = NUM_NODES) -> None:
        _check_net(net)
        c = net.channels
        self.stem = nn.Sequential(nn.Conv2d(net.in_channels, STEM_MULTIPLIER * c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(STEM_MULTIPLIER * c))
        self._build_cells(net, make_cell, STEM_MULTIPLIER * c, reduction_prev=False, nodes=nodes)

    def _build_cells(self, net: NetConfig, make_cell: CellFactory, stem_channels: int, reduction_prev: bool,
                     nodes: int = NUM_NODES) -> None:
        """3N + 2 cells of `nodes` intermediate nodes after a stem of `stem_channels` (`reduction_prev`: the stem's
        last op halved the resolution, so the first cell reduces its older input), then global pooling and the
        classifier."""
        c = net.channels
        num_cells = 3 * net.cells_per_stage + 2
        reductions = {num_cells // 3, 2 * num_cells // 3}  # DARTS' positions: after each N normal cells
        c_prev_prev = c_prev = stem_channels
        cells = []
        for k in range(num_cells):
            reduction = k in reductions
            c = 2 * c if reduction else c
            cells.append(make_cell(c_prev_prev, c_prev, c, reduction, reduction_prev))
            c_prev_prev, c_prev, reduction_prev = c_prev, nodes * c, reduction
            if k == 2 * num_cells // 3:  # DARTS' auxiliary head reads this cell's output (C_aux)
                self.aux_index, self.aux_channels = k, c_prev
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, net.num_classes)
        self.num_classes = net.num_classes

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.global_pooling(x), 1))


class AuxiliaryHead(nn.Module):
    """DARTS' AuxiliaryHeadCIFAR: ReLU, 5x5 average pool at stride 3 (8x8 -> 2x2), 1x1 conv to 128, BN, ReLU, 2x2
    conv to 768, BN, ReLU, linear. On feature maps other than 8x8 (images below 32 px) the pool is an adaptive pool
    to 2x2, which keeps the head's shapes and parameter count."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = F.avg_pool2d(x, 5, stride=3) if x.shape[-1] == 8 else F.adaptive_avg_pool2d(x, 2)
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsNet(_NetworkCIFAR):
    """One architecture as a plain network (forward(x) -> logits). Final-training options (DARTS'): set
    `drop_path_prob` > 0 for drop-path in training mode; `enable_auxiliary()` adds the auxiliary head, whose logits
    a training forward leaves in `aux_logits` (parameter counts are taken without it, as DARTS reports them)."""

    def __init__(self, arch: Arch, net: NetConfig) -> None:
        super().__init__()
        nodes = _to_nodes(_check_arch(arch))
        per_cell = len(nodes) // len(CELL_TYPES)
        normal, reduce = nodes[:per_cell], nodes[per_cell:]

        def make_cell(c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool) -> DartsCell:
            return DartsCell(reduce if reduction else normal, c_prev_prev, c_prev, c, reduction, reduction_prev)

        self._build(net, make_cell, per_cell)
        self.drop_path_prob = 0.0
        self.auxiliary_head: Optional[nn.Module] = None  # AuxiliaryHead, or the ImageNet one
        self.aux_logits: Optional[torch.Tensor] = None

    def enable_auxiliary(self) -> None:
        if self.auxiliary_head is None:
            self.auxiliary_head = AuxiliaryHead(self.aux_channels, self.num_classes)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two inputs of the first cell."""
        s = self.stem(x)
        return s, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = self._stems(x)
        for k, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if k == self.aux_index and self.auxiliary_head is not None and self.training:
                self.aux_logits = self.auxiliary_head(s1)
        return self._logits(s1)


class AuxiliaryHeadImageNet(nn.Module):
    """DARTS' AuxiliaryHeadImageNet, on the second reduction cell's output (7x7 at 224 px): ReLU, 5x5 average pool
    at stride 2 (7x7 -> 2x2), 1x1 conv to 128, BN, ReLU, 2x2 conv to 768, ReLU, linear. As in the official code the
    BN after the 2x2 conv is left out ("omitted in my earlier implementation ... for consistency with the
    experiments in the paper"). Other map sizes (images below 224 px) pool adaptively to 2x2."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        x = (F.avg_pool2d(x, 5, stride=2, count_include_pad=False) if x.shape[-1] == 7
             else F.adaptive_avg_pool2d(x, 2))
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsImageNetNet(DartsNet):
    """DARTS' NetworkImageNet, the network of the ImageNet mobile setting that DARTS-space cells are transferred
    to: stem0 = 3x3 conv stride 2 to C/2, BN, ReLU, 3x3 conv stride 2 to C, BN (224 -> 56 px); stem1 = ReLU, 3x3
    conv stride 2, BN (-> 28 px); then 3N + 2 cells with reductions at (3N + 2)//3 and 2(3N + 2)//3 (DARTS: C=48,
    14 cells, i.e. N=4: 28 -> 14 -> 7 px), global average pooling and a linear classifier. The first cell's older
    input comes from stem0 at twice stem1's resolution, so it is reduced (FactorizedReduce), as in DARTS.
    Departure: global pooling is adaptive (DARTS: a fixed 7x7 average pool, the same at 224 px), so smaller images
    (tests) run too. The GHN paper describes its ImageNet net as NASNet's (one stride-2 conv, then 14 cells reducing
    at cells 1, 2, 6 and 10); this harness uses DARTS' network for every DARTS-space method alike."""

    def _build(self, net: NetConfig, make_cell: CellFactory, nodes: int = NUM_NODES) -> None:
        _check_net(net)
        c = net.channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(net.in_channels, c // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True), nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c))
        self.stem1 = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(c))
        self._build_cells(net, make_cell, c, reduction_prev=True, nodes=nodes)

    def enable_auxiliary(self) -> None:
        if self.auxiliary_head is None:
            self.auxiliary_head = AuxiliaryHeadImageNet(self.aux_channels, self.num_classes)

    def _stems(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


class DartsSupernet(Supernet, _NetworkCIFAR):
    """Weight-sharing net over the whole space: each cell has a ChoiceOp on all 14 edges; normal cells follow
    path[:14], reduction cells path[14:]. Each cell has its own weights."""

    def __init__(self, net: NetConfig, layout: CellLayout = LAYOUT) -> None:
        super().__init__()
        self.layout = layout

        def make_cell(c_prev_prev: int, c_prev: int, c: int, reduction: bool, reduction_prev: bool) -> DartsSearchCell:
            first_point = layout.edges_per_cell if reduction else 0  # reduction cells: the second half of the path
            return DartsSearchCell(first_point, c_prev_prev, c_prev, c, reduction, reduction_prev, layout)

        self._build(net, make_cell, layout.nodes)
        self.choice_points = list(layout.choice_points)

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        if len(path) != len(self.choice_points):
            raise ValueError(f"path has {len(path)} entries; the darts_cell supernet has "
                             f"{len(self.choice_points)} choice points (the normal cell's edges, then the reduction "
                             f"cell's)")
        per_cell = self.layout.edges_per_cell
        normal, reduce = path[:per_cell], path[per_cell:]
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self._logits(s1)

    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        return subnet_state_dict(self, arch_to_path(arch, self.layout))


# ---- the space ------------------------------------------------------------------------------------------------------

@dataclass
class DartsCellParams:
    """`space.params.<name>=` of darts_cell (Hydra's schema of conf/space/darts_cell.yaml)."""

    nodes: int = NUM_NODES  # intermediate nodes per cell (DARTS and NAS-Bench-301: 4); another count is another space


@register_space("darts_cell")
class DartsCellSpace(SearchSpace):
    capabilities = frozenset({SAMPLE, MUTATE, ENCODE, TO_GRAPH, SUPERNET, STANDALONE})
    final_training = frozenset({"drop_path", "auxiliary_head"})  # DartsNet supports both (DARTS' final training)
    description = "DARTS CNN cells: normal + reduction cell, 4 nodes x 2 inputs, 7 ops (~1e18 archs)"

    Params = DartsCellParams

    def __init__(self, nodes: int = DartsCellParams.nodes) -> None:
        """`nodes`: intermediate nodes per cell (`space.params.nodes`; DARTS and NAS-Bench-301: 4). Another count is
        another space: its archs, supernet and graphs have that many nodes per cell."""
        if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
            raise ConfigError(f"space.params.nodes={nodes!r} is not allowed: darts_cell cells have 1 to {MAX_NODES} "
                              f"intermediate nodes (DARTS: {NUM_NODES}).")
        self.nodes = nodes
        self.layout = cell_layout(nodes)

    def identity_params(self) -> dict[str, int]:
        return {} if self.nodes == NUM_NODES else {"nodes": self.nodes}
    graph_node_types = ("input", "conv_3x3_bn", "relu_conv_bn_1x1", "factorized_reduce", "max_pool_3x3",
                        "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                        "dil_conv_5x5", "sum", "concat", "global_avg_pool", "linear", "output")

    @property
    def decisions(self) -> list[Decision]:
        out = []
        for cell in CELL_TYPES:
            for i in range(self.nodes):
                inputs = tuple(str(j) for j in range(NUM_INPUTS + i))
                node = f"{cell}.node{NUM_INPUTS + i}"
                input_a = len(out)
                at = dict(cell=cell, node=NUM_INPUTS + i)
                out += [Decision(f"{node}.input_a", inputs, selects_input=True, **at),
                        Decision(f"{node}.op_a", OPS, **at),
                        Decision(f"{node}.input_b", inputs, greater_than=input_a, selects_input=True, **at),
                        Decision(f"{node}.op_b", OPS, **at)]
        return out

    @property
    def choice_points(self) -> list[ChoicePoint]:
        return list(self.layout.choice_points)

    @property
    def input_selections(self) -> list[InputSelection]:
        return list(self.layout.input_selections)

    def is_valid(self, arch: Arch) -> bool:
        return _is_valid(tuple(arch), self.layout)

    def sample(self, rng: random.Random) -> Arch:
        """Uniform over valid archs: a uniform pair of distinct inputs and two uniform ops per node."""
        nodes = []
        for _ in CELL_TYPES:
            for i in range(self.nodes):
                a, b = rng.sample(range(NUM_INPUTS + i), 2)
                nodes.append(((a, rng.randrange(len(OPS))), (b, rng.randrange(len(OPS)))))
        return _from_nodes(nodes)

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.1) -> Arch:
        """Resample each decision with probability `prob` (an input only among those keeping the node's two inputs
        distinct); if nothing changed, force one change. Always valid and different from `arch`."""
        arch = _check_arch(arch, self.layout)
        nodes = [[list(gene) for gene in node] for node in _to_nodes(arch)]
        for n, node in enumerate(nodes):
            for slot in range(len(SLOTS)):
                if rng.random() < prob:
                    self._resample(node, n, slot, rng, force=False)
        while _from_nodes(nodes) == arch:
            n = rng.randrange(len(nodes))
            self._resample(nodes[n], n, rng.randrange(len(SLOTS)), rng, force=True)
        return _from_nodes(nodes)

    def _resample(self, node: list[list[int]], n: int, slot: int, rng: random.Random, force: bool) -> None:
        gene, field = node[slot // 2], slot % 2  # field 0: input, 1: op
        if field == 1:
            options = [op for op in range(len(OPS)) if not (force and op == gene[1])]
        else:
            other = node[1 - slot // 2][0]
            options = [j for j in range(NUM_INPUTS + n % self.nodes) if j != other and not (force and j == gene[0])]
        if options:  # node 2's inputs are always (0, 1): nothing to resample there
            gene[field] = rng.choice(options)

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each intermediate node (its two inputs and ops) from either parent: always valid."""
        return _from_nodes([x if rng.random() < 0.5 else y for x, y in zip(_to_nodes(a), _to_nodes(b), strict=True)])

    def encode(self, arch: Arch) -> str:
        nodes = _to_nodes(_check_arch(arch, self.layout))
        cells = []
        for c, cell in enumerate(CELL_TYPES):
            text = "|".join(",".join(f"{OPS[op]}~{j}" for j, op in node)
                            for node in nodes[c * self.nodes:(c + 1) * self.nodes])
            cells.append(f"{cell}={text}")
        return ";".join(cells)

    def decode(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchStringError(f"expected a string, got {type(text).__name__}; {_HELP}")
        cells: dict[str, str] = {}
        for part in text.strip().split(";"):
            name, sep, body = part.partition("=")
            name = name.strip()
            if not sep or name not in CELL_TYPES or name in cells:
                raise ArchStringError(f"bad cell part {part!r} in {text!r}: expected 'normal=...' and 'reduce=...' "
                                      f"once each; {_HELP}")
            cells[name] = body
        if len(cells) != len(CELL_TYPES):
            raise ArchStringError(f"{text!r} lacks the {set(CELL_TYPES) - set(cells)} cell; {_HELP}")
        return _from_nodes([node for cell in CELL_TYPES for node in self._decode_cell(cell, cells[cell], text)])

    def _decode_cell(self, cell: str, body: str, text: str) -> list[Node]:
        node_texts = body.split("|")
        if len(node_texts) != self.nodes:
            raise ArchStringError(f"the {cell} cell of {text!r} has {len(node_texts)} '|'-separated nodes, not "
                                  f"{self.nodes} (space.params.nodes); {_HELP}")
        nodes = []
        for i, node_text in enumerate(node_texts):
            genes = []
            for token in node_text.split(","):
                op, sep, src = (s.strip() for s in token.partition("~"))
                if not sep or op not in OPS or not src.isdigit() or int(src) >= NUM_INPUTS + i:
                    raise ArchStringError(f"bad token {token.strip()!r} in node {NUM_INPUTS + i} of the {cell} cell: "
                                          f"expected 'op~input' with input < {NUM_INPUTS + i}; {_HELP}")
                genes.append((int(src), OPS.index(op)))
            if len(genes) != 2 or genes[0][0] == genes[1][0]:
                raise ArchStringError(f"node {NUM_INPUTS + i} of the {cell} cell ({node_text.strip()!r}) needs "
                                      f"exactly 2 ops on distinct inputs; {_HELP}")
            nodes.append(tuple(sorted(genes)))
        return nodes

    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        """One node per op instance of the standalone net (preprocessing included), a 'sum' per intermediate node,
        a 'concat' per cell output, then the head."""
        with torch.device("meta"):  # only the module structure is needed
            model = self.build_standalone(arch, net)
        g = GraphBuilder()
        g.enter("stem", STEM)
        s0 = s1 = g.add("conv_3x3_bn", [g.add("input")], "stem")
        for k, cell in enumerate(model.cells):
            name = g.enter(f"cells.{k}", CELL)
            states = [g.add_op(cell.preprocess0, f"{name}.preprocess0", s0),
                      g.add_op(cell.preprocess1, f"{name}.preprocess1", s1)]
            for i, inputs in enumerate(cell.inputs):
                terms = []
                for p, j in enumerate(inputs):  # node i's input p: decisions (input, op) at base + 2p, base + 2p + 1
                    key, base = f"{NUM_INPUTS + i}<-{j}", (int(cell.reduction) * self.nodes + i) * len(SLOTS)
                    with g.shaped_by(base + 2 * p, base + 2 * p + 1):
                        terms.append(g.add_op(cell.edges[key], f"{name}.edges.{key}", states[j]))
                states.append(g.add_sum(terms))
            s0, s1 = s1, g.add("concat", states[NUM_INPUTS:])
        g.enter("head", HEAD)
        g.add("output", [g.add("linear", [g.add("global_avg_pool", [s1])], "classifier")])
        return g.graph()

    def build_supernet(self, net: NetConfig) -> DartsSupernet:
        return DartsSupernet(net, self.layout)

    def build_standalone(self, arch: Arch, net: NetConfig) -> DartsNet:
        return DartsNet(_check_arch(arch, self.layout), net)

    def build_imagenet(self, arch: Arch, net: NetConfig) -> DartsImageNetNet:
        return DartsImageNetNet(_check_arch(arch, self.layout), net)

    def arch_to_path(self, arch: Arch) -> list[int]:
        return arch_to_path(arch, self.layout)

    def derive_from_weights(self, weights: Sequence[torch.Tensor]) -> Arch:
        """DARTS' rule per intermediate node: keep the 2 incoming edges whose strongest non-'none' weight is
        largest (ties: lower input first), each with its argmax op excluding 'none'."""
        per_cell = self.layout.edges_per_cell
        if len(weights) != len(CELL_TYPES) * per_cell:
            raise ValueError(f"expected {len(CELL_TYPES) * per_cell} weight vectors ({per_cell} normal edges, then "
                             f"{per_cell} reduction edges), got {len(weights)}")
        nodes = []
        for cell in range(len(CELL_TYPES)):
            for i in range(NUM_INPUTS, NUM_INPUTS + self.nodes):
                best = {}  # input j -> (strongest non-'none' weight, its op index into OPS)
                for j in range(i):
                    w = torch.as_tensor(weights[cell * per_cell + self.layout.edge_index[(i, j)]]).detach().flatten()
                    if w.numel() != len(SUPERNET_OPS):
                        raise ValueError(f"edge {CELL_TYPES[cell]}.{i}<-{j}: expected {len(SUPERNET_OPS)} weights, "
                                         f"got {w.numel()}")
                    op = int(w[1:].argmax())
                    best[j] = (float(w[1 + op]), op)
                kept = sorted(range(i), key=lambda j: -best[j][0])[:2]
                nodes.append([(j, best[j][1]) for j in kept])
        return _from_nodes(nodes)
