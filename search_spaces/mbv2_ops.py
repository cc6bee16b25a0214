"""MobileNetV2 building blocks of the NAS-Bench-Macro chain (xiusu/NAS-Bench-Macro, train/model.py).

Every conv is wrapped with its BatchNorm (and ReLU) in one `ConvBN` module, so a graph view can give each
conv+BN pair one node that owns all of its parameters (see `MBNetChainSpace.to_graph`).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ConvBN(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> optional ReLU; `groups == in_ch` makes it depthwise."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        # In place is safe: the ReLU only ever sees this module's own BN output.
        self.relu: nn.ReLU | None = nn.ReLU(inplace=True) if relu else None

    @property
    def node_type(self) -> str:
        """Operator name for graph views, e.g. 'conv1x1_bn_relu' or 'dwconv5x5_bn'."""
        k = self.conv.kernel_size[0]
        depthwise = "dw" if self.conv.groups > 1 else ""
        return f"{depthwise}conv{k}x{k}_bn" + ("_relu" if self.relu is not None else "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.relu(x) if self.relu is not None else x


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU) -> kxk depthwise (ReLU, carries the stride) -> 1x1 linear project,
    plus the input when shape is kept. Hidden width is round(in_ch * expansion), as in the benchmark."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int, expansion: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(in_ch * expansion)
        self.expand = ConvBN(in_ch, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_ch, 1, relu=False)
        self.use_shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.use_shortcut else out


class SkipOrDownsample(nn.Module):
    """The 'identity' choice: a no-op, except on a layer that changes stride or width, where the benchmark
    substitutes a 1x1 conv + BN (no ReLU) so that the chain stays well-shaped."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        needs_projection = stride != 1 or in_ch != out_ch
        self.downsample: ConvBN | None = (
            ConvBN(in_ch, out_ch, 1, stride, relu=False) if needs_projection else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) if self.downsample is not None else x


OpFactory = Callable[[int, int, int], nn.Module]  # (in_ch, out_ch, stride) -> module

# Candidate ops in the benchmark's key order: key digit i selects CANDIDATE_OPS[OP_NAMES[i]].
CANDIDATE_OPS: dict[str, OpFactory] = {
    "identity": lambda i, o, s: SkipOrDownsample(i, o, s),
    "mb_k3_e3": lambda i, o, s: InvertedResidual(i, o, s, kernel=3, expansion=3),
    "mb_k5_e6": lambda i, o, s: InvertedResidual(i, o, s, kernel=5, expansion=6),
}
OP_NAMES: tuple[str, ...] = tuple(CANDIDATE_OPS)
