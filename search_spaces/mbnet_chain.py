"""NAS-Bench-Macro (Su et al., CVPR 2021): a MobileNetV2-style chain of 8 searchable layers, 3 ops each.

Network (xiusu/NAS-Bench-Macro, train/model.py), with C = NetConfig.channels (the paper uses C = 32):

    stem   3x3 conv (stride 1) + BN + ReLU, in_channels -> C
    stage1 2 layers, C  -> 2C, first layer stride 2
    stage2 3 layers, 2C -> 4C, first layer stride 2
    stage3 3 layers, 4C -> 8C, first layer stride 2
    head   1x1 conv + BN + ReLU, 8C -> 40C (1280 at C = 32), global average pool, linear -> num_classes

So channels=32 reproduces the benchmark networks exactly (same parameter counts as the JSON's `params`), and a
smaller C shrinks every width proportionally. NetConfig.cells_per_stage is ignored: the depth is fixed.

An arch is 8 ints in {0, 1, 2}; its canonical string is the benchmark key, e.g. '02012100'. Within a stage, an
identity layer after the first is a no-op, so keys that differ only in where those identities sit are the same
network: `real_arch_key` gives the benchmark's representative ("real arch", identities moved to the stage end).
"""
from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from oneshot_bench.config import NetConfig
from oneshot_bench.errors import ArchStringError, ConfigError

from .base import (
    BLOCK,
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
from .mbv2_ops import CANDIDATE_OPS, OP_NAMES, ConvBN, InvertedResidual, SkipOrDownsample
from .ops import GraphBuilder, subnet_state_dict

STAGE_DEPTHS = (2, 3, 3)
NUM_LAYERS = sum(STAGE_DEPTHS)
IDENTITY = OP_NAMES.index("identity")
PAPER_STEM_CHANNELS = 32
HEAD_CHANNELS_PER_STEM_CHANNEL = 40  # 1280 / 32
EXAMPLE_KEY = "02012100"
_KEY_HELP = (f"an mbnet_chain arch is {NUM_LAYERS} digits, one per layer: "
             + ", ".join(f"{i}={name}" for i, name in enumerate(OP_NAMES)) + f", e.g. {EXAMPLE_KEY!r}")


@dataclass(frozen=True)
class LayerShape:
    in_ch: int
    out_ch: int
    stride: int


def layer_shapes(stem_channels: int) -> list[LayerShape]:
    """Width and stride of the 8 searchable layers: each stage doubles the width and halves the resolution."""
    shapes = []
    width = stem_channels
    for depth in STAGE_DEPTHS:
        shapes.append(LayerShape(width, 2 * width, 2))
        width *= 2
        shapes.extend(LayerShape(width, width, 1) for _ in range(depth - 1))
    return shapes


def op_specs(shape: LayerShape) -> tuple[Op, ...]:
    """Traits of OP_NAMES on a layer: the identity has weights only where it must project (stride or width)."""
    return tuple(Op(name, parameter_free=(k == IDENTITY and shape.stride == 1 and shape.in_ch == shape.out_ch))
                 for k, name in enumerate(OP_NAMES))


# A chain: every layer picks one op, nothing is summed across layers (no node, no cell). Traits at paper width.
CHOICE_POINTS = tuple(ChoicePoint(f"layer{i}", op_specs(shape))
                      for i, shape in enumerate(layer_shapes(PAPER_STEM_CHANNELS)))


def real_arch(arch: Arch) -> Arch:
    """The benchmark's representative of `arch`: in each stage, identity layers after the first layer (no-ops)
    are moved to the end of the stage (collect_benchmark.py's get_real_arch)."""
    result: list[int] = []
    start = 0
    for depth in STAGE_DEPTHS:
        first, rest = arch[start], arch[start + 1:start + depth]
        ops = [op for op in rest if op != IDENTITY]
        result += [first, *ops] + [IDENTITY] * (len(rest) - len(ops))
        start += depth
    return tuple(result)


def _check_arch(arch: Arch) -> Arch:
    arch = tuple(operator.index(a) for a in arch)
    if len(arch) != NUM_LAYERS or not all(0 <= a < len(OP_NAMES) for a in arch):
        raise ValueError(f"invalid arch {arch}: {_KEY_HELP}")
    return arch


def _check_net(net: NetConfig) -> None:
    for field_name in ("channels", "num_classes", "in_channels"):
        if getattr(net, field_name) < 1:
            raise ConfigError(f"mbnet_chain needs net.{field_name} >= 1, got {getattr(net, field_name)}.")


# ---- networks -------------------------------------------------------------------------------------------------------

class _ChainTrunk(nn.Module):
    """Stem, head and classifier shared by the supernet and the standalone nets (same names, same shapes)."""

    def _build_trunk(self, net: NetConfig) -> None:
        _check_net(net)
        head_channels = HEAD_CHANNELS_PER_STEM_CHANNEL * net.channels
        self.stem = ConvBN(net.in_channels, net.channels, 3)
        self.head = ConvBN(layer_shapes(net.channels)[-1].out_ch, head_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head_channels, net.num_classes)

    def _logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.head(features)), 1))


class MBNetChainNet(_ChainTrunk):
    """One architecture as a plain network: `layers[i]` is the op chosen for layer i."""

    def __init__(self, arch: Arch, net: NetConfig) -> None:
        super().__init__()
        self._build_trunk(net)
        self.layers = nn.Sequential(*(CANDIDATE_OPS[OP_NAMES[op]](s.in_ch, s.out_ch, s.stride)
                                      for op, s in zip(_check_arch(arch), layer_shapes(net.channels), strict=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self.layers(self.stem(x)))


class MBNetChainSupernet(Supernet, _ChainTrunk):
    """Weight-sharing net over all 6,561 archs: a shared stem/head and one ChoiceLayer per searchable layer."""

    def __init__(self, net: NetConfig) -> None:
        super().__init__()
        self._build_trunk(net)
        self.layers = nn.ModuleList(
            ChoiceOp(i, op_specs(shape), [CANDIDATE_OPS[name](shape.in_ch, shape.out_ch, shape.stride)
                                          for name in OP_NAMES])
            for i, shape in enumerate(layer_shapes(net.channels)))
        self.choice_points = list(CHOICE_POINTS)

    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor:
        if len(path) != NUM_LAYERS:
            raise ValueError(f"path has {len(path)} entries; the mbnet_chain supernet has {NUM_LAYERS} layers")
        x = self.stem(x)
        for layer, entry in zip(self.layers, path, strict=True):
            x = layer(x, entry)
        return self._logits(x)

    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        # Standalone names are the supernet's with "candidates.{k}." dropped from the chosen candidate.
        return subnet_state_dict(self, _check_arch(arch))


# ---- graph view -----------------------------------------------------------------------------------------------------

class _GraphBuilder(GraphBuilder):
    """The cell spaces' builder, with MBv2 blocks expanded into their conv nodes."""

    def add_conv(self, conv: ConvBN, module: str, src: int) -> int:
        return self.add(conv.node_type, [src], module)

    def add_op(self, op: nn.Module, module: str, src: int) -> int:
        """Nodes of one searchable layer; a no-op identity adds none, so equivalent keys give equal graphs."""
        if isinstance(op, SkipOrDownsample):
            return src if op.downsample is None else self.add_conv(op.downsample, f"{module}.downsample", src)
        assert isinstance(op, InvertedResidual)
        x = src
        for part in ("expand", "depthwise", "project"):
            x = self.add_conv(getattr(op, part), f"{module}.{part}", x)
        return self.add("sum", [x, src]) if op.use_shortcut else x



# ---- the space ------------------------------------------------------------------------------------------------------

@register_space("mbnet_chain")
class MBNetChainSpace(SearchSpace):
    capabilities = frozenset({SAMPLE, MUTATE, ENCODE, ENUMERATE, TO_GRAPH, SUPERNET, STANDALONE})
    description = "NAS-Bench-Macro: 8-layer MobileNetV2 chain, ops identity / MBv2 k3e3 / MBv2 k5e6 (6,561 archs)"
    graph_node_types = ("input", "conv3x3_bn_relu", "conv1x1_bn_relu", "conv1x1_bn", "dwconv3x3_bn_relu",
                        "dwconv5x5_bn_relu", "sum", "avg_pool", "linear", "output")

    @property
    def decisions(self) -> list[Decision]:
        return [Decision(f"layer{i}", OP_NAMES) for i in range(NUM_LAYERS)]

    @property
    def choice_points(self) -> list[ChoicePoint]:
        return list(CHOICE_POINTS)

    def encode(self, arch: Arch) -> str:
        return "".join(str(op) for op in _check_arch(arch))

    def decode(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise ArchStringError(f"expected a string, got {type(text).__name__}; {_KEY_HELP}.")
        key = text.strip()
        if len(key) != NUM_LAYERS:
            raise ArchStringError(f"arch string {text!r} has {len(key)} characters, not {NUM_LAYERS}; {_KEY_HELP}.")
        bad = [f"{c!r} at position {i}" for i, c in enumerate(key) if c not in "012"[:len(OP_NAMES)]]
        if bad:
            raise ArchStringError(f"arch string {text!r} has invalid characters ({', '.join(bad)}); {_KEY_HELP}.")
        return tuple(int(c) for c in key)

    def real_arch_key(self, arch: Arch | str) -> str:
        """Benchmark key of the network `arch` really is (keys sharing it are the same net with the same results)."""
        arch = self.decode(arch) if isinstance(arch, str) else _check_arch(arch)
        return self.encode(real_arch(arch))

    def size(self) -> int:
        return len(OP_NAMES) ** NUM_LAYERS

    def enumerate(self) -> Iterator[Arch]:
        # Same order as the benchmark's itertools.product over '012'.
        return itertools.product(range(len(OP_NAMES)), repeat=NUM_LAYERS)

    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        """One node per conv+BN(+ReLU) of the standalone net, plus input, residual sums, pool, linear, output."""
        with torch.device("meta"):  # only the module structure is needed, no weights
            model = self.build_standalone(arch, net)
        g = _GraphBuilder()
        g.enter("stem", STEM)
        x = g.add_conv(model.stem, "stem", g.add("input"))
        for i, op in enumerate(model.layers):
            g.enter(f"layers.{i}", BLOCK)
            with g.shaped_by(i):  # decision i is layer i's op
                x = g.add_op(op, f"layers.{i}", x)
        g.enter("head", HEAD)
        x = g.add("avg_pool", [g.add_conv(model.head, "head", x)])
        g.add("output", [g.add("linear", [x], "classifier")])
        return g.graph()

    def build_supernet(self, net: NetConfig) -> MBNetChainSupernet:
        return MBNetChainSupernet(net)

    def build_standalone(self, arch: Arch, net: NetConfig) -> MBNetChainNet:
        return MBNetChainNet(arch, net)

    def arch_to_path(self, arch: Arch) -> list[int]:
        return list(_check_arch(arch))

    def derive_from_weights(self, weights: Sequence[torch.Tensor]) -> Arch:
        return argmax_per_point(weights, CHOICE_POINTS)
