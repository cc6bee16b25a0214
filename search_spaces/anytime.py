"""Anytime prediction (GHN, Zhang, Ren & Urtasun, ICLR 2019, Sec. 5.2): networks with classifiers at several
depths, searched for the trade-off between how early they answer and how well.

The paper's setting: a network of 3 cells with 24, 16 and 8 nodes; every node has a spatial size and may carry an
early-exit classifier; networks are trained as in MSDNet (Huang et al. 2018) and the GHN picks the arch with the
largest area under its predicted accuracy-against-FLOPs curve (`oneshot_bench.exits`). Its results are a figure
(Figure 3, GHN against MSDNet and ensembles of ResNets and DenseNets on CIFAR-10), with no printed numbers.

This space (`space.params.nodes`, default the paper's [24, 16, 8]):

    cell s (s = 0, 1, ...): width C * 2^s, side resolution / 2^s, `nodes[s]` nodes; it begins with its input conv
        (the stem, 3x3 conv + BN + ReLU, for cell 0; a stride-2 3x3 conv + BN + ReLU that doubles the width for the
        others)
    node: an op from OPS: 'skip' computes nothing; the others are residual, x + op(x), with
        conv3x3 / conv5x5 = conv + BN + ReLU, sep3x3 = depthwise 3x3 + BN + ReLU, then 1x1 conv + BN + ReLU
    exit: every node but the last decides whether a classifier follows it; the last node's classifier (the net's
        final prediction) is always there. A classifier is 1x1 conv + BN + ReLU (same width), global average pool,
        linear.

An arch is, node by node, the op and then (all nodes but the last) the exit: 2 * nodes - 1 decisions. Its string
writes each node as its op digit, followed by 'e' when a classifier follows it, with cells separated by '|':
'1e2|03e|1' (nodes [2, 2, 1]) is conv3x3 with an exit, sep3x3; skip, conv5x5 with an exit; conv3x3 (final exit).

Departures from the paper, which gives no more detail of this space in its text:
- A node's spatial size is its cell's (MSDNet's scales, one per block), not a per-node choice: a per-node size
  would need the resampling between nodes that the paper does not describe.
- The op set is ours (the paper names none for this setting); 'skip' lets a cell be shallower, so archs differ in
  FLOPs as well as in where they answer.
- Classifiers are lighter than MSDNet's (two strided 3x3 convs): one 1x1 conv, so an exit costs little next to the
  nodes it follows.

`baseline_arch` is the hand-designed member of this family that the search must beat (an MSDNet-like placement):
conv3x3 at every node, classifiers in the middle and at the end of every cell.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError, ConfigError

from .base import (
    CELL,
    ENCODE,
    HEAD,
    MUTATE,
    SAMPLE,
    STANDALONE,
    SUPERNET,
    TO_GRAPH,
    Arch,
    ArchGraph,
    Decision,
    SearchSpace,
    register_space,
)
from .mbv2_ops import ConvBN
from .ops import GraphBuilder

OPS = ("skip", "conv3x3", "sep3x3", "conv5x5")
SKIP, CONV3X3 = 0, 1
COSTLIEST_OP = OPS.index("conv5x5")  # per node, the most FLOPs at every width (25 C^2 against 9 C^2 and 9 C + C^2)
EXIT_CHOICES = ("none", "exit")
PAPER_NODES = (24, 16, 8)
MAX_NODES_PER_CELL = 64
MAX_CELLS = 5


def _residual_body(op: int, width: int) -> nn.Module:
    name = OPS[op]
    if name == "sep3x3":
        return nn.Sequential(ConvBN(width, width, 3, groups=width), ConvBN(width, width, 1))
    return ConvBN(width, width, 3 if name == "conv3x3" else 5)


class ResidualNode(nn.Module):
    """x + body(x): the residual keeps a 48-node chain trainable."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ExitHead(nn.Module):
    """A classifier: 1x1 conv + BN + ReLU, global average pool, linear."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBN(width, width, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(self.conv(x)), 1))


@dataclass(frozen=True)
class Layout:
    """Where every node sits: `cell_of[g]` for global node g, and the arch indices of its decisions."""

    nodes: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.nodes)

    @property
    def cell_of(self) -> tuple[int, ...]:
        return tuple(s for s, n in enumerate(self.nodes) for _ in range(n))

    def op_index(self, g: int) -> int:
        return 2 * g

    def exit_index(self, g: int) -> Optional[int]:
        return None if g == self.total - 1 else 2 * g + 1

    def ops(self, arch: Arch) -> list[int]:
        return [arch[self.op_index(g)] for g in range(self.total)]

    def exits(self, arch: Arch) -> list[int]:
        """Global indices of the nodes a classifier follows, the last node's included."""
        return [g for g in range(self.total) if g == self.total - 1 or arch[2 * g + 1] == 1]


class AnytimeNet(nn.Module):
    """One arch as a plain network: forward returns the last classifier's logits and leaves every classifier's in
    `exit_logits` (see oneshot_bench.exits)."""

    def __init__(self, arch: Arch, layout: Layout, net: NetConfig) -> None:
        super().__init__()
        for name in ("channels", "num_classes", "in_channels"):
            if getattr(net, name) < 1:
                raise ConfigError(f"space anytime needs net.{name} >= 1, got {getattr(net, name)}.")
        widths = [net.channels * 2 ** s for s in range(len(layout.nodes))]
        self.layout = layout
        self.stem = ConvBN(net.in_channels, widths[0], 3)
        self.reductions = nn.ModuleList(ConvBN(widths[s], widths[s + 1], 3, stride=2)
                                        for s in range(len(widths) - 1))
        cell_of = layout.cell_of
        self.nodes = nn.ModuleList(nn.Identity() if op == SKIP else ResidualNode(_residual_body(op, widths[cell_of[g]]))
                                   for g, op in enumerate(layout.ops(arch)))
        self.exits = nn.ModuleDict({str(g): ExitHead(widths[cell_of[g]], net.num_classes)
                                    for g in layout.exits(arch)})
        self.exit_logits: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        logits = []
        cell_of = self.layout.cell_of
        for g, node in enumerate(self.nodes):
            if g > 0 and cell_of[g] != cell_of[g - 1]:
                x = self.reductions[cell_of[g] - 1](x)
            x = node(x)
            if str(g) in self.exits:
                logits.append(self.exits[str(g)](x))
        self.exit_logits = logits
        return logits[-1]


@dataclass
class AnytimeParams:
    """`space.params.<name>=` of anytime (Hydra's schema of conf/space/anytime.yaml)."""

    nodes: list[int] = field(default_factory=lambda: list(PAPER_NODES))  # nodes per cell (GHN: 24, 16, 8)


@register_space("anytime")
class AnytimeSpace(SearchSpace):
    capabilities = frozenset({SAMPLE, MUTATE, ENCODE, TO_GRAPH, STANDALONE})
    unavailable = {SUPERNET: "an arch places classifiers, and a weight-sharing supernet's choice points pick one "
                             "op per layer: there is no single path that runs a given set of exits, so supernet "
                             "methods (spos, oneshot, greedynas, enas, darts, proxylessnas) do not search it"}
    description = ("anytime prediction (GHN Sec. 5.2): 3 cells of 24/16/8 residual nodes, 4 ops each, an optional "
                   "classifier after every node; ranked by the anytime AUC")
    graph_node_types = ("input", "conv3x3_bn_relu", "conv5x5_bn_relu", "dwconv3x3_bn_relu", "conv1x1_bn_relu",
                        "sum", "avg_pool", "linear", "output")
    multi_exit = True
    Params = AnytimeParams

    def __init__(self, nodes: Sequence[int] = PAPER_NODES) -> None:
        """`nodes`: nodes per cell (`space.params.nodes`; GHN: [24, 16, 8]). Another count is another space."""
        try:
            counts = tuple(nodes)
        except TypeError:
            counts = ()
        if not (1 <= len(counts) <= MAX_CELLS and all(
                isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_NODES_PER_CELL for n in counts)):
            raise ConfigError(f"space.params.nodes={list(nodes) if counts else nodes!r} is not allowed: give 1 to "
                              f"{MAX_CELLS} cells of 1 to {MAX_NODES_PER_CELL} nodes each, e.g. "
                              f"space.params.nodes=[24,16,8] (GHN's).")
        self.layout = Layout(counts)
        self._pieces: dict[tuple, dict[tuple, float]] = {}  # (net, side) -> FLOPs of each piece

    def identity_params(self) -> dict[str, list[int]]:
        return {} if self.layout.nodes == PAPER_NODES else {"nodes": list(self.layout.nodes)}

    # ---- discrete architectures -----------------------------------------------------------------------------------
    @property
    def decisions(self) -> list[Decision]:
        out = []
        cell_of = self.layout.cell_of
        for g in range(self.layout.total):
            at = dict(cell=f"cell{cell_of[g]}", node=g)
            out.append(Decision(f"node{g}.op", OPS, **at))
            if self.layout.exit_index(g) is not None:
                out.append(Decision(f"node{g}.exit", EXIT_CHOICES, **at))
        return out

    def _check(self, arch: Arch) -> Arch:
        arch = tuple(int(a) for a in arch)
        decisions = self.decisions
        if len(arch) != len(decisions):
            raise ValueError(f"invalid anytime arch {arch}: {len(arch)} decisions, not {len(decisions)} (op 0-"
                             f"{len(OPS) - 1}, then exit 0/1, per node; the last node has no exit decision)")
        bad = [f"{d.name}={a} (choices 0-{len(d.choices) - 1})" for a, d in zip(arch, decisions, strict=True)
               if not 0 <= a < len(d.choices)]
        if bad:
            raise ValueError(f"invalid anytime arch {arch}: {', '.join(bad)}")
        return arch

    def _help(self) -> str:
        return (f"an anytime arch with nodes {list(self.layout.nodes)} writes each cell's nodes as op digits ("
                + ", ".join(f"{i}={o}" for i, o in enumerate(OPS)) + "), each followed by 'e' when a classifier "
                f"follows it (not the last node: its classifier is always there), cells separated by '|', e.g. "
                f"{self.encode(self.baseline_arch())!r}")

    def encode(self, arch: Arch) -> str:
        arch = self._check(arch)
        exits = set(self.layout.exits(arch))
        text, g = [], 0
        for n in self.layout.nodes:
            cell = ""
            for _ in range(n):
                cell += str(arch[self.layout.op_index(g)]) + ("e" if g in exits and g != self.layout.total - 1 else "")
                g += 1
            text.append(cell)
        return "|".join(text)

    def decode(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchStringError(f"expected a string, got {type(text).__name__}; {self._help()}.")
        cells = text.strip().split("|")
        if len(cells) != len(self.layout.nodes):
            raise ArchStringError(f"arch string {text!r} has {len(cells)} cells, not {len(self.layout.nodes)}; "
                                  f"{self._help()}.")
        arch: list[int] = []
        for s, (cell, n) in enumerate(zip(cells, self.layout.nodes, strict=True)):
            nodes, i = [], 0
            while i < len(cell):
                if cell[i] not in "0123"[:len(OPS)]:
                    raise ArchStringError(f"arch string {text!r}: cell {s} has {cell[i]!r} where an op digit belongs; "
                                          f"{self._help()}.")
                has_exit = i + 1 < len(cell) and cell[i + 1] == "e"
                nodes.append((int(cell[i]), int(has_exit)))
                i += 2 if has_exit else 1
            if len(nodes) != n:
                raise ArchStringError(f"arch string {text!r}: cell {s} has {len(nodes)} nodes, not {n}; "
                                      f"{self._help()}.")
            for op, has_exit in nodes:
                arch += [op, has_exit]
        if arch[-1] == 1:
            raise ArchStringError(f"arch string {text!r} marks the last node with 'e': its classifier is always "
                                  f"there and is not written; {self._help()}.")
        return tuple(arch[:-1])

    def baseline_arch(self) -> Arch:
        """The hand-designed baseline (MSDNet-like placement): conv3x3 everywhere, a classifier in the middle and at
        the end of every cell."""
        arch: list[int] = []
        for n in self.layout.nodes:
            marks = {n // 2 - 1, n - 1} - {-1}
            for j in range(n):
                arch += [CONV3X3, int(j in marks)]
        return tuple(arch[:-1])

    def largest_arch(self) -> Arch:
        """The arch with the most FLOPs: the costliest op at every node and a classifier after every node."""
        return tuple([COSTLIEST_OP, 1] * self.layout.total)[:-1]

    # ---- networks -------------------------------------------------------------------------------------------------
    def build_standalone(self, arch: Arch, net: NetConfig) -> AnytimeNet:
        return AnytimeNet(self._check(arch), self.layout, net)

    def _piece_flops(self, net: NetConfig, resolution: int) -> dict[tuple, float]:
        """FLOPs of every piece an arch is made of, counted once per (net, side) on the meta device: the stem,
        each cell's input reduction, each op at each cell's width and side, each cell's classifier. An arch's costs
        are sums of these (scoring a new arch then counts nothing)."""
        key = (astuple(net), resolution)
        if key not in self._pieces:
            widths = [net.channels * 2 ** s for s in range(len(self.layout.nodes))]
            pieces: dict[tuple, float] = {}

            def count(name: tuple, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
                with FlopCounterMode(display=False) as counter, torch.no_grad():
                    y = module.eval()(x)
                pieces[name] = float(counter.get_total_flops())
                return y

            with torch.device("meta"):
                x = count(("stem",), ConvBN(net.in_channels, widths[0], 3),
                          torch.zeros(1, net.in_channels, resolution, resolution))
                for s, width in enumerate(widths):
                    if s > 0:
                        x = count(("reduction", s), ConvBN(widths[s - 1], width, 3, stride=2), x)
                    for op in range(len(OPS)):
                        if op != SKIP:
                            count(("op", s, op), ResidualNode(_residual_body(op, width)), x)
                    count(("exit", s), ExitHead(width, net.num_classes), x)
            self._pieces[key] = pieces
        return self._pieces[key]

    def exit_flops(self, arch: Arch, net: NetConfig, resolution: int) -> list[float]:
        """Cumulative FLOPs of one image (a multiply-add = 2) when each classifier answers, in network order:
        everything computed up to it, earlier classifiers included (an anytime net runs them all)."""
        arch = self._check(arch)
        pieces = self._piece_flops(net, resolution)
        cell_of, exits = self.layout.cell_of, set(self.layout.exits(arch))
        total, marks = pieces[("stem",)], []
        for g, op in enumerate(self.layout.ops(arch)):
            if g > 0 and cell_of[g] != cell_of[g - 1]:
                total += pieces[("reduction", cell_of[g])]
            if op != SKIP:
                total += pieces[("op", cell_of[g], op)]
            if g in exits:
                total += pieces[("exit", cell_of[g])]
                marks.append(total)
        return marks

    def max_flops(self, net: NetConfig, resolution: int) -> float:
        """The end of the anytime budget range: the largest arch's full cost."""
        return self.exit_flops(self.largest_arch(), net, resolution)[-1]

    # ---- graph view -----------------------------------------------------------------------------------------------
    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        """One node per conv + BN + ReLU, residual sum, pool, linear and classifier output. Scopes: each cell (its
        input conv, its nodes and the classifiers that follow them), then the final classifier as the head; a skip
        node adds nothing, so a cell of skips is just its input conv."""
        arch = self._check(arch)
        layout = self.layout
        with torch.device("meta"):
            model = self.build_standalone(arch, net)
        g_builder = GraphBuilder()

        def conv(module: ConvBN, name: str, src: int) -> int:
            return g_builder.add(module.node_type, [src], name)

        def classifier(g: int, src: int) -> None:
            head = model.exits[str(g)]
            x = conv(head.conv, f"exits.{g}.conv", src)
            x = g_builder.add("avg_pool", [x])
            g_builder.add("output", [g_builder.add("linear", [x], f"exits.{g}.linear")])

        cell_of = layout.cell_of
        g_builder.enter("cell0", CELL)  # the input belongs to the first cell, which begins with the stem
        x = g_builder.add("input")
        for g, node in enumerate(model.nodes):
            if g == 0 or cell_of[g] != cell_of[g - 1]:
                g_builder.enter(f"cell{cell_of[g]}", CELL)
                x = (conv(model.stem, "stem", x) if g == 0 else
                     conv(model.reductions[cell_of[g] - 1], f"reductions.{cell_of[g] - 1}", x))
            if isinstance(node, ResidualNode):
                with g_builder.shaped_by(layout.op_index(g)):
                    y = x
                    if isinstance(node.body, nn.Sequential):
                        for k, part in enumerate(node.body):
                            y = conv(part, f"nodes.{g}.body.{k}", y)
                    else:
                        y = conv(node.body, f"nodes.{g}.body", y)
                    x = g_builder.add("sum", [y, x])
            exit_decision = layout.exit_index(g)
            if str(g) in model.exits:
                if exit_decision is None:
                    g_builder.enter("head", HEAD)
                    classifier(g, x)
                else:
                    with g_builder.shaped_by(exit_decision):
                        classifier(g, x)
        return g_builder.graph()
