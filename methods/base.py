"""The lifecycle every NAS method follows (like NASLib's MetaOptimizer), driven by the evaluator:

    method = METHODS.get(name)(hparams)
    method.setup(ctx)                 # build supernet / hypernet / controller on the space
    for epoch in range(budget.search_epochs):
        method.train_epoch(epoch)     # supernet or hypernet training (the "supernet_train" cost phase)
    method.score(sample)              # proxy score per arch, higher = better ("ranking" phase)
    method.derive()                   # the method's own search for its best arch ("derive" phase)

state_dict()/load_state_dict() make a run resumable after any epoch.
"""
from __future__ import annotations

import dataclasses
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch

from oneshot_bench.config import BudgetConfig, NetConfig, params_to_dataclass
from oneshot_bench.data import DataBundle
from oneshot_bench.errors import ConfigError
from oneshot_bench.registry import Registry
from search_spaces.base import ENCODE, SAMPLE, Arch, SearchSpace

METHODS: Registry[Method] = Registry("method", "methods")
register_method = METHODS.register


@dataclass
class SearchContext:
    """Everything a method may use; identical for all methods of a comparison."""

    space: SearchSpace
    data: DataBundle
    budget: BudgetConfig
    device: torch.device
    seed: int
    net: NetConfig  # network size during search, with in_channels/num_classes filled from the data
    final_net: NetConfig  # size of the final network (constraints on params/FLOPs refer to it)


@dataclass
class NoHparams:
    pass


class Method(ABC):
    name: ClassVar[str]
    Hparams: ClassVar[type] = NoHparams
    required_capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE, ENCODE})
    # None = every space that has the required capabilities; else the spaces where the paper's idea applies
    supported_spaces: ClassVar[Optional[frozenset[str]]] = None
    why_unsupported: ClassVar[str] = ""

    def __init__(self, hparams: Optional[dict[str, Any]] = None):
        self.hp = params_to_dataclass(self.Hparams, dict(hparams or {}), f"method {self.name!r}")
        self.ctx: Optional[SearchContext] = None
        self.rng = random.Random(0)
        # secondary proxies a method can report beside score()'s (e.g. DARTS' alpha log-likelihood), filled by
        # score() with one value per arch; the evaluator correlates each with ground truth too
        self.extra_scores: dict[str, list[float]] = {}

    @classmethod
    def check_supports(cls, space: SearchSpace) -> None:
        missing = cls.required_capabilities - space.capabilities
        if (cls.supported_spaces is not None and space.name not in cls.supported_spaces) or missing:
            from search_spaces.base import SPACES

            ok = [s for s in SPACES.names() if cls.supports_name(s)]
            why = f" ({cls.why_unsupported})" if cls.why_unsupported else ""
            raise ConfigError(f"method {cls.name!r} does not support space {space.name!r}{why}. "
                              f"Spaces it supports: {', '.join(ok)}.")

    @classmethod
    def supports_name(cls, space_name: str) -> bool:
        from search_spaces.base import SPACES

        if cls.supported_spaces is not None and space_name not in cls.supported_spaces:
            return False
        return cls.required_capabilities <= SPACES.get(space_name).capabilities

    def hparams_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.hp)

    # ---- lifecycle ------------------------------------------------------------------------------------------------
    def setup(self, ctx: SearchContext) -> None:
        self.check_supports(ctx.space)
        self.ctx = ctx
        self.rng = random.Random(ctx.seed)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.build()

    @abstractmethod
    def build(self) -> None:
        """Create networks/optimizers on self.ctx (called by setup)."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One epoch of weight (and architecture) training; methods without a shared model do nothing."""
        return {}

    @abstractmethod
    def score(self, archs: list[Arch]) -> list[float]:
        """Proxy score of each arch (higher = predicted better), e.g. supernet accuracy after BN recalibration."""

    @abstractmethod
    def derive(self) -> Arch:
        """The method's own final search; returns its best architecture."""

    def artifacts(self) -> dict[str, Any]:
        """JSON-serializable files to keep with the run (e.g. ProxylessNAS' measured latency table), by name."""
        return {}

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])


def get_method(name: str, hparams: Optional[dict] = None) -> Method:
    return METHODS.get(name)(hparams)
