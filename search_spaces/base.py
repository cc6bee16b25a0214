"""The search-space interface every method is written against.

An architecture is a tuple of ints, one per *decision* (`space.decisions`), so generic machinery (random sampling,
mutation, evolution, RNN controllers, one-hot encodings for SMASH) works in every space. A weight-sharing
*supernet* exposes *choice points* (an edge or layer with candidate ops); `arch_to_path` maps an arch onto them.
Decisions and choice points coincide in nb201 and mbnet_chain; in darts_cell a decision is "input j of node i" or
"op of that input", while a choice point is an edge (j -> i) with all 8 ops, 'none' included, as in DARTS.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Union

import torch
from torch import nn

from oneshot_bench.config import NetConfig
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
    """One categorical choice of an architecture; arch[i] indexes `choices` of decision i."""

    name: str
    choices: tuple[str, ...]


@dataclass(frozen=True)
class ChoicePoint:
    """A place in the supernet with candidate ops (an edge of a cell, a layer of a chain)."""

    name: str
    candidates: tuple[str, ...]


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


@dataclass
class ArchGraph:
    """Computation graph of a standalone network, for graph hypernetworks (GHN).

    Nodes are in topological order. `node_types[v]` is the operator type (a key of the space's
    `graph_node_types`), `edges` are (src, dst) data-flow pairs, and `node_modules[v]` is the qualified name of the
    module inside `space.build_standalone(arch, net)` whose parameters node v owns (None for parameter-free nodes
    such as 'input', 'sum', 'output', pooling, skip). `node_scopes[v]` names the top-level part of the net that
    node v computes in, parameter-free nodes included: 'stem', 'cells.<k>' (a repeated module), 'head' (stacked
    GHN propagates one scope after another).
    """

    node_types: list[str]
    edges: list[tuple[int, int]]
    node_modules: list[Optional[str]] = field(default_factory=list)
    node_scopes: list[Optional[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.node_types)
        for s, d in self.edges:
            if not (0 <= s < d < n):
                raise ValueError(f"edge ({s}, {d}) is not forward in a {n}-node topologically ordered graph")
        if self.node_modules and len(self.node_modules) != n:
            raise ValueError("node_modules must have one entry per node")
        if self.node_scopes and len(self.node_scopes) != n:
            raise ValueError("node_scopes must have one entry per node")


class Supernet(nn.Module, ABC):
    """A weight-sharing network over every architecture of a space.

    forward(x, path) computes the network selected by `path` (one entry per choice point). A single-path `int`
    entry runs exactly one candidate and no other candidate of that point receives activations or gradients.
    """

    choice_points: list[ChoicePoint]

    @abstractmethod
    def forward(self, x: torch.Tensor, path: Path) -> torch.Tensor: ...

    @abstractmethod
    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        """Weights (and BN buffers) of `arch`'s subnet, loadable with strict=True into
        `space.build_standalone(arch, same_net_config)`; the two then compute the same function."""

    def candidate_modules(self, point: int) -> Sequence[nn.Module]:
        """The candidate op modules of choice point `point` (for per-op statistics, e.g. latency tables)."""
        raise NotImplementedError


class SearchSpace(ABC):
    """A NAS search space. Subclasses register with @register_space("name") and declare `capabilities`."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    def __init__(self, **params) -> None:
        if params:
            raise ConfigError(f"space {self.name!r} takes no parameters, got {sorted(params)}.")

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

    # ---- networks -------------------------------------------------------------------------------------------------
    @abstractmethod
    def build_supernet(self, net: NetConfig) -> Supernet: ...

    @abstractmethod
    def build_standalone(self, arch: Arch, net: NetConfig) -> nn.Module:
        """A plain nn.Module computing `arch` alone (forward(x) -> logits)."""

    @abstractmethod
    def arch_to_path(self, arch: Arch) -> list[int]:
        """Single-path view of `arch` in the supernet: one candidate index per choice point."""

    @abstractmethod
    def derive_from_weights(self, weights: Sequence[torch.Tensor]) -> Arch:
        """Discretize continuous per-choice-point weights (DARTS alphas, ProxylessNAS gate probabilities):
        argmax per point, and in darts_cell the top-2 incoming edges per node with 'none' excluded."""

    def num_choice_points(self) -> int:
        return len(self.arch_to_path(self.sample(random.Random(0))))


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
    return SPACES.get(name)(**(params or {}))
