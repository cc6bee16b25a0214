"""Candidate ops of the cell spaces (nb201, darts_cell), subnet weight extraction, and graph helpers.

The ops follow the reference code (AutoDL-Projects' `cell_operations.py` for NAS-Bench-201, DARTS'
`operations.py`) and keep its submodule names (`op.1.weight`...). Every BatchNorm is affine and tracks running
statistics, in the supernet too, so that a subnet's supernet weights copy exactly into a standalone network; a
method whose official supernet has non-affine candidate BNs (SPOS, DARTS) removes their scale and shift with
`make_choice_bn_non_affine`, and the copy stays exact.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .base import ArchGraph, ChoiceOp


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias) -> BatchNorm. The ReLU is not in place: the input feeds other edges too."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """DARTS dilated separable conv: ReLU -> depthwise kxk (dilated, strided) -> pointwise 1x1 -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """DARTS separable conv: two (ReLU -> depthwise kxk -> pointwise 1x1 -> BN) blocks, the first one strided."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, 1, padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing pixels: two strided 1x1 convs, the second shifted by one pixel, whose
    outputs are concatenated, then BN. The zero pad (as in NB201) keeps both halves the same size on odd inputs;
    on even inputs this equals DARTS' version."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out < 2:
            raise ValueError(f"FactorizedReduce needs at least 2 output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.pad = nn.ConstantPad2d((0, 1, 0, 1), 0.0)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = self.pad(x)[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The 'none' op: zeros shaped like the output of a same-width op with this stride."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zeros_like_output(x, self.stride)


def zeros_like_output(x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    return x[:, :, ::stride, ::stride].mul(0.0) if stride > 1 else x.mul(0.0)


def avg_pool_3x3(stride: int = 1) -> nn.AvgPool2d:
    # count_include_pad=False as in both reference codes: border pixels average only real neighbours.
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


def max_pool_3x3(stride: int = 1) -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=stride, padding=1)


class ResNetBasicblock(nn.Module):
    """NB201's block between stages: two ReLU-Conv3x3-BN (the first strided) plus a shortcut that is
    avgpool 2x2 -> conv 1x1 at stride 2, a ReLU-Conv1x1-BN on a width change alone, else the identity."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample: nn.Module | None
        if stride == 2:
            self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))
        elif c_in != c_out:
            self.downsample = ReLUConvBN(c_in, c_out, 1)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return residual + self.conv_b(self.conv_a(x))


def sum_or_zeros(terms: Sequence[torch.Tensor], like: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Sum of a cell node's incoming terms; a node whose every edge is 'none' is zeros (same shape as an op's
    output on `like` at `stride`), as the reference code computes it with Zero ops."""
    if not terms:
        return zeros_like_output(like, stride)
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """DARTS' drop-path: zero whole samples with probability `drop_prob`, rescale the others."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


# ---- choice points --------------------------------------------------------------------------------------------------

def make_choice_bn_non_affine(supernet: nn.Module) -> int:
    """Turn every BatchNorm inside a ChoiceOp's candidates into a non-affine one (no scale, no shift), as the
    official SPOS and DARTS supernets build their candidate ops (`affine=False`); returns how many. BNs outside the
    choice ops (stem, cell preprocessing, head) keep theirs. `subnet_state_dict` gives such a BN scale 1 and shift
    0, so the subnet still copies exactly into a standalone net (whose BNs are affine)."""
    count = 0
    for choice in (m for m in supernet.modules() if isinstance(m, ChoiceOp)):
        for bn in (m for m in choice.candidates.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            if bn.affine:
                del bn.weight, bn.bias
                bn.register_parameter("weight", None)
                bn.register_parameter("bias", None)
                bn.affine = False
                bn.affine_in_standalone = True
                count += 1
    return count


def add_bn_after_pooling(supernet: nn.Module, x: torch.Tensor, path: Sequence) -> int:
    """Add a non-affine BatchNorm after every pooling candidate (by the space's op traits) of every ChoiceOp, in the
    weighted (mixed) sum only (`ChoiceOp.mixed_norms`), as DARTS' MixedOp does; returns how many. A pooling op keeps
    its input's channels, read from one forward pass of `x` along `path` (which must run every pooling
    candidate, e.g. all candidates weighted). Single paths, and so subnets copied into standalone nets, are
    unchanged."""
    channels: dict[int, int] = {}
    choices = [m for m in supernet.modules() if isinstance(m, ChoiceOp)]

    def record(module: nn.Module, args: tuple) -> None:  # returning None keeps the inputs
        channels.setdefault(id(module), int(args[0].shape[1]))

    hooks = [c.register_forward_pre_hook(record) for c in choices]
    was_training = supernet.training
    supernet.eval()  # running statistics are read, not updated
    try:
        with torch.no_grad():
            supernet(x, path)
    finally:
        supernet.train(was_training)
        for h in hooks:
            h.remove()
    count = 0
    for choice in choices:
        for k, op in enumerate(choice.ops):
            if op.pooling and id(choice) in channels:
                ref = next(choice.parameters(), x)
                choice.mixed_norms[str(k)] = nn.BatchNorm2d(channels[id(choice)], affine=False).to(ref.device)
                count += 1
    return count


def subnet_state_dict(supernet: nn.Module, path: Sequence[int]) -> dict[str, torch.Tensor]:
    """`supernet.state_dict()` with every ChoiceOp replaced by its chosen candidate `path[op.point]`.

    Keys '<op>.candidates.<k>.<rest>' of the chosen k become '<op>.<rest>'; other candidates are dropped. This is
    the layout of standalone nets that hold the chosen op module where the supernet holds its ChoiceOp. A BN made
    non-affine by `make_choice_bn_non_affine` contributes scale 1 and shift 0, which is what it computes.
    """
    chosen = {name: path[m.point] for name, m in supernet.named_modules() if isinstance(m, ChoiceOp)}
    state: dict[str, torch.Tensor] = {}
    full = dict(supernet.state_dict())
    for name, bn in supernet.named_modules():
        if getattr(bn, "affine_in_standalone", False):
            ref = bn.running_mean
            full[f"{name}.weight"] = torch.ones(bn.num_features, dtype=ref.dtype, device=ref.device)
            full[f"{name}.bias"] = torch.zeros(bn.num_features, dtype=ref.dtype, device=ref.device)
    for key, value in full.items():
        if ".mixed_norms." in key:  # used in weighted sums only: not part of any single path
            continue
        owner, found, rest = key.partition(".candidates.")
        if not found or owner not in chosen:
            state[key] = value
            continue
        k, _, tail = rest.partition(".")
        if int(k) == chosen[owner]:
            state[f"{owner}.{tail}"] = value
    return state


# ---- graph view -----------------------------------------------------------------------------------------------------

def op_node_type(op: nn.Module) -> str:
    """Graph node type of a candidate op instance, e.g. 'relu_conv_bn_3x3', 'sep_conv_5x5', 'skip_connect'."""
    if isinstance(op, (ReLUConvBN, DilConv, SepConv)):
        k = op.op[1].kernel_size[0]
        kind = {ReLUConvBN: "relu_conv_bn", DilConv: "dil_conv", SepConv: "sep_conv"}[type(op)]
        return f"{kind}_{k}x{k}"
    if isinstance(op, (nn.AvgPool2d, nn.MaxPool2d)):
        k = op.kernel_size
        return f"{'avg' if isinstance(op, nn.AvgPool2d) else 'max'}_pool_{k}x{k}"
    names = {FactorizedReduce: "factorized_reduce", nn.Identity: "skip_connect", Zero: "zeros"}
    if type(op) in names:
        return names[type(op)]
    raise TypeError(f"no graph node type for {type(op).__name__}")


class GraphBuilder:
    """Appends nodes in execution order, so every edge points forward as ArchGraph requires. Nodes are tagged with
    the current scope: call `enter(name, kind)` as the net is walked (stem, each cell or block, head)."""

    def __init__(self) -> None:
        self.types: list[str] = []
        self.modules: list[str | None] = []
        self.scopes: list[str] = []
        self.scope_kinds: dict[str, str] = {}
        self.edges: list[tuple[int, int]] = []
        self.scope: str = ""
        self.decisions: list[tuple[int, ...]] = []
        self.shaping: tuple[int, ...] = ()

    @contextmanager
    def shaped_by(self, *decisions: int) -> Iterator[None]:
        """Nodes added inside are shaped by these decisions (indices into `space.decisions`)."""
        outer, self.shaping = self.shaping, tuple(decisions)
        try:
            yield
        finally:
            self.shaping = outer

    def enter(self, scope: str, kind: str) -> str:
        """Nodes added from now on belong to `scope` (of kind STEM, CELL, BLOCK or HEAD); returns the name."""
        self.scope = scope
        self.scope_kinds[scope] = kind
        return scope

    def add(self, node_type: str, inputs: Sequence[int] = (), module: str | None = None) -> int:
        node = len(self.types)
        self.types.append(node_type)
        self.modules.append(module)
        self.scopes.append(self.scope)
        self.decisions.append(self.shaping)
        self.edges.extend((src, node) for src in inputs)
        return node

    def add_op(self, op: nn.Module, module: str, src: int) -> int:
        """One node for a candidate op; it names `module` only when the op has parameters."""
        has_params = next(op.parameters(), None) is not None
        return self.add(op_node_type(op), [src], module if has_params else None)

    def add_sum(self, terms: Sequence[int]) -> int:
        """A cell node: a 'sum' of two or more terms, the term itself when alone, 'zeros' when there is none."""
        if not terms:
            return self.add("zeros")
        return terms[0] if len(terms) == 1 else self.add("sum", terms)

    def graph(self) -> ArchGraph:
        return ArchGraph(self.types, self.edges, self.modules, self.scopes, dict(self.scope_kinds), self.decisions)
