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
import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import torch
from tqdm.auto import tqdm

from oneshot_bench.config import BudgetConfig, NetConfig, ScoringConfig, params_to_dataclass
from oneshot_bench.data import DataBundle
from oneshot_bench.errors import ConfigError
from oneshot_bench.registry import Registry
from search_spaces.base import ENCODE, SAMPLE, SPACES, Arch, SearchSpace

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
    final_net: NetConfig  # the final network: params/FLOPs constraints refer to it (a tabular truth's own network)
    final_resolution: int  # and its image side
    # the archs the ground truth covers when it covers only a subset of the space (None: all); a method's own
    # candidates are drawn from it, so that the final accuracy of what it finds is a lookup
    arch_pool: Optional[Sequence[Arch]] = None
    scoring: ScoringConfig = field(default_factory=ScoringConfig)  # how supernet methods score a subnet


@dataclass
class NoHparams:
    pass


class Method(ABC):
    name: ClassVar[str]
    Hparams: ClassVar[type] = NoHparams
    required_capabilities: ClassVar[frozenset[str]] = frozenset({SAMPLE, ENCODE})
    # True where the method scores subnets by supernet accuracy: `scoring.bn_mode` applies and enters the identity
    bn_modes_apply: ClassVar[bool] = False
    # False for methods whose scores do not change with search epochs (random, zero-cost proxies): no anytime curve
    trains: ClassVar[bool] = True
    # set where the method runs here only as an adaptation (its published search space is none of this harness'):
    # reports print it beside every row of the method
    adaptation: ClassVar[str | None] = None
    # the functions of this method that read tensor values on the host every training step (or every
    # controller/architecture step), each with why its control flow needs the value; the module docstring lists
    # them too. tests/test_host_syncs.py counts every tensor read inside train_epoch and fails on one that grows
    # with the steps elsewhere: losses and statistics stay on the device and are read once per epoch (EpochMeans)
    host_reads_per_step: ClassVar[dict[str, str]] = {}

    def __init__(self, hparams: Optional[dict[str, Any]] = None):
        # validated here (types and ranges, in the dataclass' __post_init__), before any data is loaded
        self.hp = params_to_dataclass(self.Hparams, dict(hparams or {}), f"method {self.name!r}")
        self.ctx: Optional[SearchContext] = None
        self.rng = random.Random(0)
        # secondary proxies a method can report beside score()'s (e.g. DARTS' alpha log-likelihood), filled by
        # score() with one value per arch; the evaluator correlates each with ground truth too
        self.extra_scores: dict[str, list[float]] = {}
        # per-arch results worth keeping if the run is killed (a derive candidate's score, a standalone training),
        # by purpose; the runner persists them whenever `on_progress` fires and restores them on resume
        self.score_cache: dict[str, dict[Arch, float]] = {}
        self.on_progress: Optional[Callable[[], None]] = None

    @classmethod
    def unsupported_reason(cls, space: SearchSpace) -> Optional[str]:
        """Why this method cannot run on `space`, from what the space declares; None when it can. Subclasses
        whose idea needs more structure than capabilities (e.g. no input-selection constraints) extend it."""
        missing = sorted(cls.required_capabilities - space.capabilities)
        if not missing:
            return None
        why = [f"{c}: {space.unavailable[c]}" for c in missing if c in space.unavailable]
        return (f"it needs the space's {' and '.join(missing)} capability, which {space.name!r} does not have"
                + (f" ({'; '.join(why)})" if why else ""))

    @classmethod
    def check_supports(cls, space: SearchSpace) -> None:
        reason = cls.unsupported_reason(space)
        if reason is not None:
            ok = [s for s in SPACES.names() if cls.supports_name(s)]
            raise ConfigError(f"method {cls.name!r} does not support space {space.name!r}: {reason}. "
                              f"Spaces it supports: {', '.join(ok) or '(no registered space)'}.")

    @classmethod
    def supports_name(cls, space_name: str) -> bool:
        return cls.unsupported_reason(SPACES.get(space_name)()) is None

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
    def ranked(self, n: int) -> list[tuple[Arch, float]]:
        """The method's own search over (about) `n` candidates, best first, each with the method's proxy score:
        what the selection protocols pick from (top-k, Top-Best). Scores go through `cached`, so a resumed run
        and a later `derive` reuse them. Every returned arch lies in `ctx.arch_pool` when the truth covers only a
        subset of the space (tests/test_contract.py checks every method)."""

    # what sets how many archs `ranked` returns, for the error that refuses a selection.k above it
    ranking_size_source: ClassVar[str] = "selection.candidates, or budget.candidates where it is null"

    def ranking_size(self, n: int, budget: BudgetConfig) -> int:
        """At most how many archs `ranked(n)` returns under `budget`, known before any work (before the space's or
        the truth's pool caps it): selection.k is checked against it."""
        return n

    def derive(self) -> Arch:
        """The method's best architecture: the first of its own ranking of `budget.candidates` archs."""
        return self.ranked(self.ctx.budget.candidates)[0][0]

    # ---- shared search helpers ----------------------------------------------------------------------------------
    def cached(self, purpose: str, score: Callable[[Arch], float]) -> Callable[[Arch], float]:
        """`score` computed once per arch and kept in `score_cache[purpose]` (persisted by the runner, so a
        resumed run recomputes none of them). Scores must not depend on what was scored before (fixed batches,
        per-arch seeds), so a resumed search is the same search."""
        table = self.score_cache.setdefault(purpose, {})

        def once(arch: Arch) -> float:
            arch = tuple(arch)
            if arch not in table:
                table[arch] = float(score(arch))
                if self.on_progress is not None:
                    self.on_progress()
            return table[arch]

        return once

    def arch_seed(self, arch: Arch, purpose: str) -> int:
        """A seed for work on one arch that depends on the run's seed and the arch alone (not on what ran before)."""
        text = f"{self.ctx.seed}/{purpose}/{self.ctx.space.encode(arch)}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")

    def candidate_archs(self, n: int) -> list[Arch]:
        """`n` distinct archs drawn uniformly, from the ground truth's subset when there is one (else the space);
        fewer only when the pool (or, after 100 n draws, the space) holds fewer."""
        pool = self.ctx.arch_pool
        if pool is not None:
            return self.rng.sample(list(pool), min(n, len(pool)))
        return distinct_archs(lambda: self.ctx.space.sample(self.rng), n, max_draws=100 * n)

    def artifacts(self) -> dict[str, Any]:
        """JSON-serializable files to keep with the run (e.g. ProxylessNAS' measured latency table), by name."""
        return {}

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.getstate(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s state. A state of another layout (another version's, a hand-edited one) raises
        KeyError, TypeError, ValueError or RuntimeError, here or in a subclass' part; the runner turns any of them
        into one error naming the checkpoint and its fix."""
        missing = [key for key in ("rng", "generator") if key not in state]
        if missing:
            raise ValueError(f"the method state lacks {', '.join(map(repr, missing))} (it has "
                             f"{', '.join(map(repr, sorted(state))) or 'no keys'})")
        self.rng.setstate(state["rng"])
        self.generator.set_state(state["generator"])


def distinct_archs(draw: Callable[[], Arch], n: int, max_draws: int) -> list[Arch]:
    """Up to `n` distinct archs from repeated `draw()` calls, in draw order, stopping after `max_draws` draws."""
    out: dict[Arch, None] = {}
    for _ in range(max_draws):
        if len(out) >= n:
            break
        out.setdefault(tuple(draw()))
    return list(out)


def rank(archs: Sequence[Arch], score: Callable[[Arch], float], desc: str) -> list[tuple[Arch, float]]:
    """Score every arch (higher is better) and sort, best first; ties keep the given order. The "sample n, score,
    keep the best" search of One-Shot, ENAS, GHN, SMASH and random."""
    if not archs:
        raise ValueError("rank needs at least one architecture")
    scores = {tuple(a): float(score(a)) for a in tqdm(archs, desc=desc, leave=False)}
    return sorted(scores.items(), key=lambda item: -item[1])


def get_method(name: str, hparams: Optional[dict] = None) -> Method:
    return METHODS.get(name)(hparams)
