"""The search-space interface every method is written against.

An architecture is a tuple of ints, one per *decision* (`space.decisions`), so generic machinery (random sampling,
mutation, evolution, RNN controllers, one-hot encodings for SMASH) works in every space. A weight-sharing
*supernet* exposes *choice points* (an edge or layer with candidate ops); `arch_to_path` maps an arch onto them.
Decisions and choice points coincide in nb201 and mbnet_chain; in darts_cell a decision is "input j of node i" or
"op of that input", while a choice point is an edge (j -> i) with all 8 ops, 'none' included, as in DARTS.
"""
from __future__ import annotations

import operator
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional, Union

import torch
from torch import nn

from oneshot_bench.config import LEGACY_BN_MODE, BnMode, NetConfig
from oneshot_bench.errors import ConfigError
from oneshot_bench.registry import Registry

Arch = tuple[int, ...]

SPACES: Registry[SearchSpace] = Registry("space", "search_spaces")
register_space = SPACES.register

# Capabilities a space may declare; methods list the ones they need.
SAMPLE, MUTATE, ENCODE, ENUMERATE, TO_GRAPH, SUPERNET, STANDALONE = (
    "sample", "mutate", "encode", "enumerate", "to_graph", "supernet", "standalone")


@dataclass(frozen=True)
class Decision:
    """One categorical choice of an architecture; arch[i] indexes `choices` of decision i.

    `greater_than` declares an ordering constraint between decisions: this decision's chosen index must exceed the
    chosen index of the earlier decision `greater_than` (darts_cell: a node's second input comes after its first,
    which makes the encoding canonical). Generic samplers such as an RNN controller mask choices with it.

    `cell` and `node` place the decision in a cell (a cell type's name, the index of the node it builds there;
    consecutive decisions of one node are adjacent), and `selects_input` says that its choice c is node c of that
    cell (an input selection); ENAS' official micro controller attends over the nodes built so far for those.
    """

    name: str
    choices: tuple[str, ...]
    greater_than: Optional[int] = None
    cell: Optional[str] = None
    node: Optional[int] = None
    selects_input: bool = False


@dataclass(frozen=True)
class Op:
    """A candidate operation at a choice point, with the traits methods act on (never its name).

    zero: outputs nothing (the op of an unused edge): a path through it carries no signal and holds no weights.
    parameter_free: has no trainable weights at this place (pooling, identity, zero).
    pooling: a pooling op (e.g. DARTS adds a BatchNorm after pooling in its mixed op).
    """

    name: str
    zero: bool = False
    parameter_free: bool = False
    pooling: bool = False


@dataclass(frozen=True)
class ChoicePoint:
    """A place in the supernet with candidate ops (an edge of a cell, a layer of a chain).

    `node` names the sum this point's output feeds: choice points that share a node are added together there (the
    edges into one cell node); None means the point feeds nothing shared (a layer of a chain). `cell` names the
    repeated module type it belongs to (None outside cells).
    """

    name: str
    ops: tuple[Op, ...]
    node: Optional[str] = None
    cell: Optional[str] = None

    @property
    def candidates(self) -> tuple[str, ...]:
        """Candidate op names, in index order."""
        return tuple(op.name for op in self.ops)

    @property
    def zero_index(self) -> Optional[int]:
        """Index of the zero op, or None when every candidate computes something."""
        return next((k for k, op in enumerate(self.ops) if op.zero), None)

    @property
    def nonzero_indices(self) -> tuple[int, ...]:
        return tuple(k for k, op in enumerate(self.ops) if not op.zero)


@dataclass(frozen=True)
class InputSelection:
    """An input-selection constraint: every arch keeps exactly `keep` of the choice points `points` (all feeding
    `node`) with a non-zero op; the others take their zero op (a DARTS node keeps 2 of its incoming edges)."""

    node: str
    points: tuple[int, ...]
    keep: int


@dataclass(frozen=True, eq=False)  # eq on tensors is elementwise; compare by identity
class WeightedChoice:
    """Run the candidates at `indices` and sum them weighted by `weights` (a 1-D tensor, same length).

    DARTS passes all indices with softmax weights; One-Shot path dropout passes the kept ops with ones;
    ProxylessNAS passes the two sampled ops with gate values that carry the gradient to the arch parameters.
    """

    indices: tuple[int, ...]
    weights: torch.Tensor


PathEntry = Union[int, WeightedChoice]  # int = exactly one candidate runs (single path)
Path = Sequence[PathEntry]  # one entry per supernet choice point

# Kinds of the top-level parts of a network in a graph view (ArchGraph.scope_kinds)
STEM, CELL, BLOCK, HEAD = "stem", "cell", "block", "head"


@dataclass
class ArchGraph:
    """Computation graph of a standalone network, for graph hypernetworks (GHN).

    Nodes are in topological order. `node_types[v]` is the operator type (a key of the space's
    `graph_node_types`), `edges` are (src, dst) data-flow pairs, and `node_modules[v]` is the qualified name of the
    module inside `space.build_standalone(arch, net)` whose parameters node v owns (None for parameter-free nodes
    such as 'input', 'sum', 'output', pooling, skip). `node_scopes[v]` names the top-level part of the net that
    node v computes in, parameter-free nodes included; each scope is one contiguous run of nodes, and
    `scope_kinds[scope]` says what it is: STEM, CELL (a repeated cell), BLOCK (a fixed block between cells) or
    HEAD. Stacked GHN propagates one scope after another. `node_decisions[v]` lists the indices (into
    `space.decisions`) of the decisions that shape node v's module (its edge's op and input, its layer's op; every
    decision of a cell whose widths depend on the whole cell graph); empty for fixed parts (stem, head). SMASH
    conditions each generated weight on exactly these.
    """

    node_types: list[str]
    edges: list[tuple[int, int]]
    node_modules: list[Optional[str]] = field(default_factory=list)
    node_scopes: list[str] = field(default_factory=list)
    scope_kinds: dict[str, str] = field(default_factory=dict)
    node_decisions: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.node_types)
        for s, d in self.edges:
            if not (0 <= s < d < n):
                raise ValueError(f"edge ({s}, {d}) is not forward in a {n}-node topologically ordered graph")
        if self.node_modules and len(self.node_modules) != n:
            raise ValueError("node_modules must have one entry per node")
        if self.node_decisions and len(self.node_decisions) != n:
            raise ValueError("node_decisions must have one entry per node")
        if self.node_scopes:
            if len(self.node_scopes) != n:
                raise ValueError("node_scopes must have one entry per node")
            missing = sorted(set(self.node_scopes) - set(self.scope_kinds))
            if missing:
                raise ValueError(f"scopes {missing} have no entry in scope_kinds")
            runs = [s for i, s in enumerate(self.node_scopes) if i == 0 or self.node_scopes[i - 1] != s]
            if len(runs) != len(set(runs)):
                raise ValueError("every scope must be one contiguous run of nodes")

    def scopes(self) -> list[str]:
        """Scope names in network order."""
        return list(dict.fromkeys(self.node_scopes))


class ChoiceOp(nn.Module):
    """All candidate ops of one place in a supernet (a DARTS MixedOp that also runs a single path).

    forward(x, entry): an int runs only that candidate; a WeightedChoice sums weights[k] * candidates[indices[k]](x).
    A zero op is never run: it contributes nothing, and forward returns None when nothing was added, so the cell
    decides what an empty sum is. `point` is the index of the supernet choice point whose path entry selects here;
    several ChoiceOps (one per cell) may follow the same point. `mixed_norms` (empty unless a method adds some, see
    `search_spaces.ops.add_bn_after_pooling`) holds modules applied after candidate k in the weighted (mixed) sum
    only: a single path runs the plain candidate, as the standalone net does.
    """

    def __init__(self, point: int, ops: Sequence[Op], candidates: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(ops) != len(candidates):
            raise ValueError(f"{len(ops)} ops for {len(candidates)} candidate modules")
        self.point = point
        self.ops = tuple(ops)
        self.zero_index = next((k for k, op in enumerate(self.ops) if op.zero), None)
        self.candidates = nn.ModuleList(candidates)
        self.mixed_norms = nn.ModuleDict()  # str(k) -> module after candidate k in weighted sums only

    def _check_index(self, k: int) -> int:
        k = operator.index(k)
        if not 0 <= k < len(self.ops):
            raise IndexError(f"candidate index {k} out of range for {len(self.ops)} candidates "
                             f"{[op.name for op in self.ops]}")
        return k

    def forward(self, x: torch.Tensor, entry: PathEntry) -> Optional[torch.Tensor]:
        if not isinstance(entry, WeightedChoice):
            k = self._check_index(entry)
            return None if k == self.zero_index else self.candidates[k](x)
        if len(entry.indices) == 0 or entry.weights.shape != (len(entry.indices),):
            raise ValueError(f"WeightedChoice needs one weight per index, got indices {entry.indices} and weights "
                             f"of shape {tuple(entry.weights.shape)}")
        out: Optional[torch.Tensor] = None
        for k, weight in zip(entry.indices, entry.weights, strict=True):
            k = self._check_index(k)
            if k == self.zero_index:  # weight * 0: adds nothing and gives the weight no gradient either way
                continue
            y = self.candidates[k](x)
            if str(k) in self.mixed_norms:
                y = self.mixed_norms[str(k)](y)
            # one fused multiply-add per candidate (addcmul) instead of a product and a sum: two elementwise passes
            # over every candidate's output, forward and backward, are most of what a mixed op costs beyond its ops
            out = y * weight if out is None else torch.addcmul(out, y, weight)
        return out


class Supernet(nn.Module, ABC):
    """A weight-sharing network over every architecture of a space.

    forward(x, path) computes the network selected by `path` (one entry per choice point). A single-path `int`
    entry runs exactly one candidate and no other candidate of that point receives activations or gradients.
    Choice points are run by `ChoiceOp` modules, so `choice_ops` finds every instance of a point's candidates.
    """

    choice_points: list[ChoicePoint]

    @abstractmethod
    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor: ...

    @abstractmethod
    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        """Weights (and BN buffers) of `arch`'s subnet, loadable with strict=True into
        `space.build_standalone(arch, same_net_config)`; the two then compute the same function."""

    def choice_ops(self, point: int) -> list[Sequence[nn.Module]]:
        """The candidate modules of choice point `point`, one list per ChoiceOp that follows it (nb201 and
        darts_cell: one per cell), indexed like `choice_points[point].ops`."""
        found = [list(m.candidates) for m in self.modules() if isinstance(m, ChoiceOp) and m.point == point]
        if not found:
            raise ValueError(f"no ChoiceOp follows choice point {point} of {type(self).__name__}")
        return found


class SearchSpace(ABC):
    """A NAS search space. Subclasses register with @register_space("name") and declare `capabilities`."""

    name: ClassVar[str]
    Params: ClassVar[Optional[type]] = None  # a dataclass of `space.params.<name>=` and their defaults, if any
    capabilities: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""
    # how a supernet method scores subnets here unless `scoring.bn_mode` says otherwise (methods/bn_scoring.py): a
    # space moves off the legacy recalibrate_all only where measurements across training seeds support another mode
    scoring_bn_mode: ClassVar[BnMode] = LEGACY_BN_MODE

    def __init__(self, **params) -> None:
        if params:
            raise ConfigError(f"space {self.name!r} has no parameters, got space.params {sorted(params)}; drop "
                              f"them.")

    def identity_params(self) -> dict[str, Any]:
        """The space's parameters that differ from its defaults: what a run's identity records (an explicit default
        names the same runs as none)."""
        return {}

    # ---- discrete architectures -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def decisions(self) -> list[Decision]: ...

    def is_valid(self, arch: Arch) -> bool:
        ds = self.decisions
        return len(arch) == len(ds) and all(0 <= a < len(d.choices) for a, d in zip(arch, ds, strict=True))

    def sample(self, rng: random.Random) -> Arch:
        """Uniform over valid architectures (subclasses with constraints override)."""
        return tuple(rng.randrange(len(d.choices)) for d in self.decisions)

    def mutate(self, arch: Arch, rng: random.Random, prob: float = 0.1) -> Arch:
        """Resample each decision with probability `prob`; always returns a valid arch different from `arch`."""
        ds = self.decisions
        for _ in range(100):
            new = tuple(rng.randrange(len(d.choices)) if rng.random() < prob else a
                        for a, d in zip(arch, ds, strict=True))
            if new != arch and self.is_valid(new):
                return new
            i = rng.randrange(len(ds))  # force at least one change
            new = tuple(rng.randrange(len(ds[i].choices)) if j == i else a for j, a in enumerate(arch))
            if new != arch and self.is_valid(new):
                return new
        raise RuntimeError(f"could not mutate {self.encode(arch)}")

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        for _ in range(100):
            child = tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))
            if self.is_valid(child):
                return child
        return a

    @abstractmethod
    def encode(self, arch: Arch) -> str:
        """Canonical string (nb201: the official `|op~0|+|...|` form)."""

    @abstractmethod
    def decode(self, text: str) -> Arch:
        """Inverse of encode; raises ArchStringError naming what is wrong and showing a valid example."""

    def size(self) -> Optional[int]:
        """Number of architectures when finite and enumerable, else None."""
        return None

    def enumerate(self) -> Iterator[Arch]:
        raise NotImplementedError(f"space {self.name} cannot be enumerated")

    def to_graph(self, arch: Arch, net: NetConfig) -> ArchGraph:
        raise NotImplementedError(f"space {self.name} has no graph view")

    graph_node_types: ClassVar[tuple[str, ...]] = ()

    # ---- structure that methods read ----------------------------------------------------------------------------
    # Why a capability is missing, for the error a method gets on this space (e.g. {SUPERNET: "..."}).
    unavailable: ClassVar[dict[str, str]] = {}
    # Final-training regularisers its standalone nets support beyond cutout (which every net takes): "drop_path",
    # "auxiliary_head"
    final_training: ClassVar[frozenset[str]] = frozenset()

    @property
    def choice_points(self) -> list[ChoicePoint]:
        """The supernet's choice points, in path order (spaces with the SUPERNET capability)."""
        raise NotImplementedError(f"space {self.name} has no supernet")

    @property
    def input_selections(self) -> list[InputSelection]:
        """Input-selection constraints over the choice points (empty: every point picks its op freely)."""
        return []

    # ---- networks -------------------------------------------------------------------------------------------------
    def build_supernet(self, net: NetConfig) -> Supernet:
        raise NotImplementedError(f"space {self.name} has no supernet")

    @abstractmethod
    def build_standalone(self, arch: Arch, net: NetConfig) -> nn.Module:
        """A plain nn.Module computing `arch` alone (forward(x) -> logits)."""

    def build_imagenet(self, arch: Arch, net: NetConfig) -> nn.Module:
        """`arch` in this space's ImageNet (mobile setting) network, for transfers (forward(x) -> logits;
        `enable_auxiliary()` adds an auxiliary head whose training logits land in `aux_logits`)."""
        raise ConfigError(f"space {self.name!r} has no ImageNet network to transfer its archs to; transfers take "
                          f"darts_cell archs (DARTS' NetworkImageNet).")

    # ---- multi-exit (anytime) spaces ------------------------------------------------------------------------------
    # Archs with several classifiers (`oneshot_bench.exits`): ranked by the anytime AUC instead of one accuracy.
    multi_exit: ClassVar[bool] = False

    def exit_flops(self, arch: Arch, net: NetConfig, resolution: int) -> list[float]:
        """Cumulative FLOPs of one image at each classifier of `arch`, in network order (multi-exit spaces)."""
        raise NotImplementedError(f"space {self.name} has one classifier per arch")

    def max_flops(self, net: NetConfig, resolution: int) -> float:
        """The end of the anytime budget range, the same for every arch (multi-exit spaces)."""
        raise NotImplementedError(f"space {self.name} has one classifier per arch")

    def baseline_arch(self) -> Arch:
        """The hand-designed arch of this family that is trained beside every found arch (multi-exit spaces)."""
        raise NotImplementedError(f"space {self.name} declares no hand-designed baseline")

    def arch_to_path(self, arch: Arch) -> list[int]:
        """Single-path view of `arch` in the supernet: one candidate index per choice point."""
        raise NotImplementedError(f"space {self.name} has no supernet")

    def derive_from_weights(self, weights: Sequence[torch.Tensor]) -> Arch:
        """Discretize continuous per-choice-point weights (DARTS alphas, ProxylessNAS gate probabilities): the
        argmax per point, within the space's input-selection constraints."""
        raise NotImplementedError(f"space {self.name} has no supernet")


def argmax_per_point(weights: Sequence[torch.Tensor], points: Sequence[ChoicePoint]) -> Arch:
    """The argmax candidate of each choice point, after checking one weight vector of the right size per point."""
    if len(weights) != len(points):
        raise ValueError(f"expected {len(points)} weight vectors (one per choice point), got {len(weights)}")
    arch = []
    for point, w in zip(points, weights, strict=True):
        w = torch.as_tensor(w).detach().flatten()
        if w.numel() != len(point.candidates):
            raise ValueError(f"{point.name}: expected {len(point.candidates)} weights, got {w.numel()}")
        arch.append(int(w.argmax()))
    return tuple(arch)


def get_space(name: str, params: Optional[dict] = None) -> SearchSpace:
    cls, params = SPACES.get(name), dict(params or {})
    if cls.Params is not None:  # (`+space.params.<key>=` gets past Hydra's schema)
        valid = [f.name for f in fields(cls.Params)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ConfigError(f"unknown space.params key(s) {unknown} of space {name!r}. Valid: {', '.join(valid)}.")
    return cls(**params)
