"""NAS-Bench-101 (Ying et al., ICML 2019): one cell, a DAG of up to 7 vertices (input, up to 5 op vertices, output)
and at most 9 edges, ops conv3x3-bn-relu, conv1x1-bn-relu and maxpool3x3; 423,624 distinct cells.

An arch is 26 ints: the 21 upper-triangular entries of the 7x7 adjacency matrix in row-major order (edge i -> j,
i < j; 0 or 1), then the op of vertices 1..5 (indexing OPS, NB101's canonical order, so an op index is NB101's
label). Like NB101's `ModelSpec`, a matrix is *pruned* before use: vertices not on a path from input to output are
dropped; an arch is valid when input reaches output and the pruned matrix has at most 9 edges. Many archs prune to
the same cell, and permuting vertices gives the same network: `spec_hash` is NB101's isomorphism-invariant graph
hash (`graph_util.hash_module`, reproduced here: the README example cell hashes to 00005c142e6f48ac...), and
`canonical` is the pruned cell written back into 7 vertices (unused vertices last, no edges, op 0).

Canonical string: `ops=<op1>|...|<op5>;edges=<i>><j>,...`, e.g.
    ops=conv3x3-bn-relu|maxpool3x3|conv3x3-bn-relu|conv3x3-bn-relu|conv1x1-bn-relu;edges=0>1,0>4,0>5,1>2,2>3,2>6,3>5,4>5,5>6

Network (nasbench/lib/model_builder.py), C = NetConfig.channels (the benchmark: 128), N =
NetConfig.cells_per_stage (the benchmark: 3): stem conv3x3-BN-ReLU (in_channels -> C); 3 stacks of N cells, each
stack after the first starting with a 2x2 max pool (stride 2) and doubling the width; global average pool;
linear. Inside a cell (the channel rule): the cell's output width is split as evenly as possible among the
vertices that feed the output, which are concatenated; every other vertex gets the widest width among the vertices
it feeds; a vertex sums its inputs, the cell input reaching it through a 1x1 conv-BN-ReLU projection and other
vertices truncated to its width; an input -> output edge adds a projection of the input to the concatenation.
At C=128, N=3 the parameter counts are NB101's (8,555,530 for the README example).
Departures from the TF reference: PyTorch's BatchNorm momentum (0.1, not 0.997 decay) and default init.

No weight-sharing supernet: the channel rule gives one op at one vertex different widths in different archs, so
one weight tensor cannot serve them all; NAS-Bench-1Shot1 (Zela et al., ICLR 2020) made one-shot NAS possible
only on three sub-spaces that fix each vertex's fan-in and connect every vertex to the output. Methods that need a
supernet say so through `unavailable`.
"""
from __future__ import annotations

import hashlib
import itertools
import operator
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError, ConfigError

from .base import (
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
    Decision,
    SearchSpace,
    register_space,
)
from .ops import GraphBuilder

NUM_VERTICES = 7
MAX_EDGES = 9
OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")  # NB101's config['available_ops']
EDGES: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(NUM_VERTICES) for j in range(i + 1, NUM_VERTICES))
NUM_OP_VERTICES = NUM_VERTICES - 2
NUM_DECISIONS = len(EDGES) + NUM_OP_VERTICES
EXAMPLE = ("ops=conv3x3-bn-relu|maxpool3x3|conv3x3-bn-relu|conv3x3-bn-relu|conv1x1-bn-relu;"
           "edges=0>1,0>4,0>5,1>2,2>3,2>6,3>5,4>5,5>6")
_HELP = (f"an nb101 arch string is 'ops=<5 ops, '|'-separated>;edges=<i>j pairs, ','-separated>' with ops in "
         f"{list(OPS)} and 0 <= i < j <= 6 (0 = input, 6 = output), at most {MAX_EDGES} edges once pruned, input "
         f"connected to output; e.g. {EXAMPLE}")


@dataclass(frozen=True)
class Spec:
    """A pruned NB101 cell: V x V adjacency (V <= 7) and V labels ('input', ops..., 'output')."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @property
    def num_vertices(self) -> int:
        return len(self.ops)

    @property
    def num_edges(self) -> int:
        return sum(map(sum, self.matrix))

    def edge(self, i: int, j: int) -> bool:
        return bool(self.matrix[i][j])


def matrix_and_ops(arch: Arch) -> tuple[list[list[int]], list[str]]:
    """The unpruned 7x7 matrix and the 7 labels of an arch."""
    matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
    for (i, j), bit in zip(EDGES, arch[:len(EDGES)], strict=True):
        matrix[i][j] = bit
    return matrix, ["input", *(OPS[k] for k in arch[len(EDGES):]), "output"]


def prune(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> Optional[Spec]:
    """NB101's ModelSpec._prune: keep the vertices on a path from input to output; None when there is none."""
    n = len(ops)
    forward, stack = {0}, [0]
    while stack:
        top = stack.pop()
        for v in range(top + 1, n):
            if matrix[top][v] and v not in forward:
                forward.add(v)
                stack.append(v)
    backward, stack = {n - 1}, [n - 1]
    while stack:
        top = stack.pop()
        for v in range(top):
            if matrix[v][top] and v not in backward:
                backward.add(v)
                stack.append(v)
    keep = sorted(forward & backward)
    if 0 not in keep or n - 1 not in keep:
        return None
    return Spec(tuple(tuple(matrix[i][j] for j in keep) for i in keep), tuple(ops[i] for i in keep))


def spec_of(arch: Arch) -> Optional[Spec]:
    return prune(*matrix_and_ops(arch))


def is_valid_spec(spec: Optional[Spec]) -> bool:
    return spec is not None and spec.num_edges <= MAX_EDGES


def spec_hash(spec: Spec) -> str:
    """NB101's isomorphism-invariant graph hash (graph_util.hash_module with labels -1, op index, -2)."""
    n = spec.num_vertices
    labels = [-1, *(OPS.index(op) for op in spec.ops[1:-1]), -2]
    in_edges = [sum(spec.matrix[i][j] for i in range(n)) for j in range(n)]
    out_edges = [sum(row) for row in spec.matrix]
    md5 = lambda text: hashlib.md5(text.encode("utf-8")).hexdigest()  # noqa: E731
    hashes = [md5(str(h)) for h in zip(out_edges, in_edges, labels, strict=True)]
    for _ in range(n):
        hashes = [md5("".join(sorted(hashes[w] for w in range(n) if spec.matrix[w][v])) + "|"
                      + "".join(sorted(hashes[w] for w in range(n) if spec.matrix[v][w])) + "|" + hashes[v])
                  for v in range(n)]
    return md5(str(sorted(hashes)))


def arch_from_spec(spec: Spec) -> Arch:
    """A pruned spec written back into 7 vertices: its op vertices first, the output last, unused vertices with
    no edges and op 0 (so every arch that prunes to `spec` has this one canonical representative)."""
    n = spec.num_vertices
    place = {v: v for v in range(n - 1)} | {n - 1: NUM_VERTICES - 1}
    matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
    for i, j in itertools.product(range(n), repeat=2):
        if spec.matrix[i][j]:
            matrix[place[i]][place[j]] = 1
    ops = [OPS.index(op) for op in spec.ops[1:-1]] + [0] * (NUM_OP_VERTICES - (n - 2))
    return tuple(matrix[i][j] for i, j in EDGES) + tuple(ops)


def vertex_channels(c_in: int, c_out: int, spec: Spec) -> list[int]:
    """model_builder.compute_vertex_channels: the output width split among the vertices that feed the output
    (the first `c_out % fan_in` of them get one more), other vertices the widest of the vertices they feed."""
    n = spec.num_vertices
    channels = [0] * n
    channels[0], channels[n - 1] = c_in, c_out
    if n == 2:
        return channels
    fan_in = sum(spec.matrix[v][n - 1] for v in range(1, n - 1))
    width, extra = divmod(c_out, fan_in)
    for v in range(1, n - 1):
        if spec.edge(v, n - 1):
            channels[v] = width + (1 if extra > 0 else 0)
            extra -= 1
    for v in range(n - 3, 0, -1):
        if not spec.edge(v, n - 1):
            channels[v] = max(channels[dst] for dst in range(v + 1, n - 1) if spec.edge(v, dst))
    return channels


def _check_arch(arch: Arch) -> Arch:
    arch = tuple(operator.index(a) for a in arch)
    if len(arch) != NUM_DECISIONS or not all(a in (0, 1) for a in arch[:len(EDGES)]) or not all(
            0 <= a < len(OPS) for a in arch[len(EDGES):]):
        raise ValueError(f"invalid nb101 arch {arch}: expected {len(EDGES)} edge bits then {NUM_OP_VERTICES} op "
                         f"indices in [0, {len(OPS)})")
    if not is_valid_spec(spec_of(arch)):
        raise ValueError(f"invalid nb101 arch {arch}: input does not reach output, or more than {MAX_EDGES} edges "
                         f"once pruned")
    return arch


def _check_net(net: NetConfig) -> None:
    for name in ("channels", "cells_per_stage", "num_classes", "in_channels"):
        if getattr(net, name) < 1:
            raise ConfigError(f"nb101 needs net.{name} >= 1, got {getattr(net, name)}.")


# ---- networks -------------------------------------------------------------------------------------------------------

class ConvBnRelu(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-5)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def _op_module(op: str, channels: int) -> nn.Module:
    if op == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    return ConvBnRelu(channels, channels, 3 if op == "conv3x3-bn-relu" else 1)


class NB101Cell(nn.Module):
    """model_builder.build_module for one pruned spec: `projections[t]` brings the input to vertex t,
    `ops[t]` is vertex t's op, `output_projection` the input -> output edge (or the whole bare cell)."""

    def __init__(self, spec: Spec, c_in: int, c_out: int) -> None:
        super().__init__()
        self.spec = spec
        n = spec.num_vertices
        self.channels = vertex_channels(c_in, c_out, spec)
        self.projections = nn.ModuleDict({str(t): ConvBnRelu(c_in, self.channels[t], 1)
                                          for t in range(1, n - 1) if spec.edge(0, t)})
        self.ops = nn.ModuleDict({str(t): _op_module(spec.ops[t], self.channels[t]) for t in range(1, n - 1)})
        self.output_projection = ConvBnRelu(c_in, c_out, 1) if spec.edge(0, n - 1) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec, n = self.spec, self.spec.num_vertices
        tensors, concat = [x], []
        for t in range(1, n - 1):
            width = self.channels[t]
            terms = [tensors[s][:, :width] for s in range(1, t) if spec.edge(s, t)]  # truncation
            if spec.edge(0, t):
                terms.append(self.projections[str(t)](x))
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            tensors.append(self.ops[str(t)](total))
            if spec.edge(t, n - 1):
                concat.append(tensors[-1])
        if not concat:  # only input -> output
            return self.output_projection(x)
        out = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)
        return out + self.output_projection(x) if self.output_projection is not None else out


class NB101Net(nn.Module):
    """One arch as a plain network (forward(x) -> logits); `downsample_before` holds the cells a stack starts at."""

    def __init__(self, arch: Arch, net: NetConfig) -> None:
        super().__init__()
        _check_net(net)
        spec = spec_of(_check_arch(arch))
        self.stem = ConvBnRelu(net.in_channels, net.channels, 3)
        self.downsample = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # TF 'same' padding on odd sizes
        cells, c_in, width = [], net.channels, net.channels
        self.downsample_before: set[int] = set()
        for stack in range(3):
            if stack > 0:
                self.downsample_before.add(len(cells))
                width *= 2
            for _ in range(net.cells_per_stage):
                cells.append(NB101Cell(spec, c_in, width))
                c_in = width
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(width, net.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for k, cell in enumerate(self.cells):
            if k in self.downsample_before:
                x = self.downsample(x)
            x = cell(x)
        return self.classifier(x.mean(dim=(2, 3)))


# ---- the space ------------------------------------------------------------------------------------------------------

@register_space("nb101")
class NB101Space(SearchSpace):
    capabilities = frozenset({SAMPLE, MUTATE, ENCODE, TO_GRAPH, STANDALONE})
    description = "NAS-Bench-101: a DAG cell of up to 7 vertices and 9 edges, 3 ops (423,624 distinct cells)"
    unavailable = {
        SUPERNET: "NB101's channel rule gives one op at one vertex a different width in different archs, so no "
                  "single weight tensor can be shared; NAS-Bench-1Shot1 shares weights only on sub-spaces that fix "
                  "every vertex's fan-in and wire every vertex to the output, which most NB101 cells are not",
        ENUMERATE: "its archs are unpruned matrices; the 423,624 distinct cells are not listed here",
    }
    graph_node_types = ("input", "conv3x3_bn_relu", "conv1x1_bn_relu", "maxpool3x3", "sum", "concat",
                        "maxpool2x2", "global_avg_pool", "linear", "output")

    @property
    def decisions(self) -> list[Decision]:
        return ([Decision(f"edge {i}->{j}", ("0", "1")) for i, j in EDGES]
                + [Decision(f"vertex{v}.op", OPS) for v in range(1, NUM_VERTICES - 1)])

    def is_valid(self, arch: Arch) -> bool:
        return super().is_valid(arch) and is_valid_spec(spec_of(arch))

    def sample(self, rng: random.Random) -> Arch:
        """NB101's random sampling: each edge present with probability 1/2 and a uniform op per vertex, redrawn until
        the arch is valid (uniform over valid archs, not over distinct cells)."""
        while True:
            arch = tuple(rng.randrange(2) for _ in EDGES) + tuple(rng.randrange(len(OPS))
                                                                  for _ in range(NUM_OP_VERTICES))
            if self.is_valid(arch):
                return arch

    # ---- identity -------------------------------------------------------------------------------------------------
    def spec(self, arch: Arch) -> Spec:
        return spec_of(_check_arch(arch))

    def spec_hash(self, arch: Arch) -> str:
        """NB101's graph hash of the cell `arch` is (isomorphic cells share it)."""
        return spec_hash(self.spec(arch))

    def canonical(self, arch: Arch) -> Arch:
        """The one representative of the pruned cell (unused vertices last, no edges, op 0)."""
        return arch_from_spec(self.spec(arch))

    def encode(self, arch: Arch) -> str:
        arch = _check_arch(arch)
        ops = "|".join(OPS[k] for k in arch[len(EDGES):])
        edges = ",".join(f"{i}>{j}" for (i, j), bit in zip(EDGES, arch, strict=False) if bit)
        return f"ops={ops};edges={edges}"

    def decode(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchStringError(f"expected a string, got {type(text).__name__}; {_HELP}")
        parts = dict(part.strip().partition("=")[::2] for part in text.strip().split(";"))
        if set(parts) != {"ops", "edges"}:
            raise ArchStringError(f"arch string {text!r} needs exactly an 'ops=' and an 'edges=' part; {_HELP}")
        ops = [op.strip() for op in parts["ops"].split("|")]
        if len(ops) != NUM_OP_VERTICES or any(op not in OPS for op in ops):
            raise ArchStringError(f"bad ops {parts['ops']!r} in {text!r}: need {NUM_OP_VERTICES} of {list(OPS)}; "
                                  f"{_HELP}")
        bits = dict.fromkeys(EDGES, 0)
        for token in filter(None, (t.strip() for t in parts["edges"].split(","))):
            i, sep, j = token.partition(">")
            edge = (int(i), int(j)) if sep and i.strip().isdigit() and j.strip().isdigit() else None
            if edge not in bits:
                raise ArchStringError(f"bad edge {token!r} in {text!r}: expected 'i>j' with 0 <= i < j <= 6; {_HELP}")
            bits[edge] = 1
        arch = tuple(bits[e] for e in EDGES) + tuple(OPS.index(op) for op in ops)
        spec = spec_of(arch)
        if spec is None:
            raise ArchStringError(f"arch string {text!r}: the input does not reach the output; {_HELP}")
        if spec.num_edges > MAX_EDGES:
            raise ArchStringError(f"arch string {text!r} has {spec.num_edges} edges once pruned; NB101 allows at most "
                                  f"{MAX_EDGES}; {_HELP}")
        return arch

    # ---- networks -------------------------------------------------------------------------------------------------
    def build_standalone(self, arch: Arch, net: NetConfig) -> NB101Net:
        return NB101Net(arch, net)

    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        """One node per conv-BN-ReLU (stem, projections, conv ops) and per max pool, a 'sum' where a vertex adds
        several inputs (and where the input projection joins the output), a 'concat' for the output, then the
        head. A stack's downsampling pool belongs to the scope of the cell it precedes."""
        with torch.device("meta"):  # only the module structure is needed
            model = self.build_standalone(arch, net)
        g = GraphBuilder()
        g.enter("stem", STEM)
        x = g.add("conv3x3_bn_relu", [g.add("input")], "stem")
        for k, cell in enumerate(model.cells):
            name = g.enter(f"cells.{k}", CELL)
            if k in model.downsample_before:
                x = g.add("maxpool2x2", [x])
            # NB101's vertex widths depend on the whole (pruned) cell graph: every decision shapes every cell module
            with g.shaped_by(*range(len(self.decisions))):
                spec, n = cell.spec, cell.spec.num_vertices
                vertices, concat = [x], []
                for t in range(1, n - 1):
                    terms = [vertices[s] for s in range(1, t) if spec.edge(s, t)]
                    if spec.edge(0, t):
                        terms.append(g.add("conv1x1_bn_relu", [x], f"{name}.projections.{t}"))
                    node = terms[0] if len(terms) == 1 else g.add("sum", terms)
                    op = spec.ops[t]
                    vertices.append(g.add("maxpool3x3", [node]) if op == "maxpool3x3" else g.add(
                        op.replace("-", "_"), [node], f"{name}.ops.{t}"))
                    if spec.edge(t, n - 1):
                        concat.append(vertices[-1])
                projection = (g.add("conv1x1_bn_relu", [x], f"{name}.output_projection") if spec.edge(0, n - 1)
                              else None)
                if concat:
                    x = concat[0] if len(concat) == 1 else g.add("concat", concat)
                    x = g.add("sum", [x, projection]) if projection is not None else x
                else:
                    x = projection
        g.enter("head", HEAD)
        g.add("output", [g.add("linear", [g.add("global_avg_pool", [x])], "classifier")])
        return g.graph()
