"""Typed configuration. Hydra's DictConfig becomes these dataclasses once, in `run.py`; core code takes plain values.

OmegaConf validates against the dataclasses, so a misspelt key or a wrong type fails at the edge with the key's name.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from .errors import ConfigError
from .names import check_name


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """One range check: a ConfigError naming the key, the value and what is allowed, raised before any work."""
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}.")


def require_finite(key: str, obj: Any) -> None:
    """Every float field of a dataclass is a finite number: inf or nan would pass most range checks (inf >= 0)
    and surface much later as a diverged run blamed on other settings."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        require(not isinstance(value, float) or math.isfinite(value), f"{key}.{f.name}", value,
                "it must be a finite number")


# image side of every network (search, truth, final, transfer): 512 px already holds 256 times CIFAR's pixels, and
# a search keeps its whole dataset on the device at that size (oneshot_bench/data.py)
MAX_RESOLUTION = 512
# seeds reach torch.manual_seed and torch.Generator (< 2**64), numpy's default_rng (any int >= 0), random.Random,
# and derived seeds: a transfer epoch's seed * 100,003 + epoch (< 2**64 only for seeds < 2**47), a truth's
# seed + 1000 * its index; a 32-bit seed fits every one of them (and numpy's legacy np.random.seed, < 2**32)
MAX_SEED = 2**32 - 1
# torch CPU threads: today's largest two-socket servers have 256 cores (2 x 128); threads beyond the cores only slow
# torch down, and each one reserves a stack: execution.threads=100000 ran the machine out of memory
MAX_THREADS = 256
# cells per stage of any network: the papers use at most 6 (DARTS' 20-cell CIFAR network); a bound keeps an absurd
# value from building millions of modules before the memory estimate (evaluators/runner.py) can refuse it
MAX_CELLS_PER_STAGE = 64


def _check_net(key: str, net: NetConfig) -> None:
    for name in ("channels", "cells_per_stage"):
        require(getattr(net, name) >= 1, f"{key}.{name}", getattr(net, name), "it must be >= 1")
    require(net.cells_per_stage <= MAX_CELLS_PER_STAGE, f"{key}.cells_per_stage", net.cells_per_stage,
            f"it must be <= {MAX_CELLS_PER_STAGE} (the papers use at most 6)")


def _check_train(key: str, train: TrainConfig) -> None:
    require_finite(key, train)
    require(train.epochs >= 1, f"{key}.epochs", train.epochs, "it must be >= 1")
    require(train.batch_size >= 1, f"{key}.batch_size", train.batch_size, "it must be >= 1")
    require(train.lr > 0, f"{key}.lr", train.lr, "it must be > 0")
    require(0 <= train.momentum < 1, f"{key}.momentum", train.momentum, "it must be in [0, 1)")
    require(train.weight_decay >= 0, f"{key}.weight_decay", train.weight_decay, "it must be >= 0")
    require(train.grad_clip > 0, f"{key}.grad_clip", train.grad_clip, "it must be > 0")
    require(train.max_train_images is None or train.max_train_images >= 1, f"{key}.max_train_images",
            train.max_train_images, "it must be >= 1, or null for all images")


class Choice(str, Enum):
    """A configuration choice among named options: compares equal to, prints as and serialises as its value, and
    OmegaConf rejects any other string naming the valid ones."""

    def __str__(self) -> str:
        return self.value


class Precision(Choice):
    """Arithmetic of the search's forward passes: fp32, or bf16 autocast (bfloat16 matmuls/convolutions with fp32
    master weights, optimizer state and losses; no loss scaling needed, bf16 has fp32's exponent range)."""
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class NetConfig:
    """Size of a network built from a search space (supernet or standalone)."""

    channels: int = 16  # stem width C
    cells_per_stage: int = 5  # N (nb201 and darts_cell); mbnet_chain has a fixed depth and ignores it
    num_classes: int = 10  # filled from the data at run time
    in_channels: int = 3  # filled from the data at run time


@dataclass
class TrainConfig:
    """Standalone training of one architecture (random baseline proxy, darts_cell ground truth, final retraining)."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    max_train_images: Optional[int] = None  # cap the training images per epoch (None = all)


@dataclass(frozen=True)
class TrainingExtras:
    """A final-training protocol's regularisers (part of a paper row's protocol, never of a budget): cutout square
    side in pixels at 32 px (scaled to the run's resolution; DARTS: 16), drop-path probability reached at the end
    (DARTS: 0.2) and the auxiliary head's loss weight (DARTS: 0.4); 0 turns each off."""

    cutout: int = 0
    drop_path: float = 0.0
    auxiliary_weight: float = 0.0

    @property
    def active(self) -> bool:
        return self.cutout > 0 or self.drop_path > 0 or self.auxiliary_weight > 0


@dataclass
class BudgetConfig:
    """A budget profile (smoke / cpu / paper): how much every method may spend, identical for all methods. Its `name`
    is a label (it begins the run id, a folder name); what a budget is, reports read from its values."""

    name: str = "smoke"
    resolution: int = 8  # image side in pixels fed to every network
    max_train_images: Optional[int] = None  # cap on the search-train split (None = all)
    max_val_images: Optional[int] = None  # cap on the search-val split
    net: NetConfig = field(default_factory=NetConfig)  # supernet / hypernet target size during search
    net_by_space: dict[str, NetConfig] = field(default_factory=dict)  # per-space override of `net`
    search_epochs: int = 1
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    ranking_sample: int = 20  # size of the one fixed arch sample per (space, seed) that all methods score
    score_batches: int = 2  # val batches used to score one arch with shared/generated weights
    bn_recalibration_batches: int = 2  # train batches a recalibrating scoring.bn_mode re-estimates BNs on
    candidates: int = 20  # archs a method may score during its own search (random search, evolution...)
    evolution_generations: int = 2
    evolution_population: int = 10
    standalone: TrainConfig = field(default_factory=TrainConfig)  # random baseline + darts_cell ground truth
    final: TrainConfig = field(default_factory=TrainConfig)  # retraining of the found arch (no tabular truth)
    final_net: NetConfig = field(default_factory=NetConfig)
    final_net_by_space: dict[str, NetConfig] = field(default_factory=dict)  # per-space override of `final_net`
    bootstrap_resamples: int = 1000
    # score the shared sample every this many search epochs (an anytime ranking curve; 0: only at the end). It
    # never changes training (state restored after); due epochs get points as `anytime_share` affords them
    ranking_every: int = 0
    # archs an anytime point scores: the first this many of the shared sample (null, or more: all); the curve's
    # taus, its last point included, are on them, so a cheap subset buys more points under the cap
    anytime_sample: Optional[int] = None
    # cap on anytime scoring, as a share of the whole run's training time (projected from the mean epoch so far);
    # the points it affords are spread evenly over the due epochs (evaluators/anytime.py). Raise it to study a
    # curve closely (e.g. 1.0): it never changes training, only the run's wall time
    anytime_share: float = 0.1

    def __post_init__(self) -> None:
        """Ranges of every field (types are OmegaConf's), so a bad budget fails before any data is read."""
        b = "budget"
        require_finite(b, self)
        check_name(f"{b}.name", self.name, "budget.name=cpu_32px, or leave it at the budget file's name",
                   becomes="the start of the run id, which names the run's folder under results/runs/")
        require(4 <= self.resolution <= MAX_RESOLUTION, f"{b}.resolution", self.resolution,
                f"images must be at least 4 px and at most {MAX_RESOLUTION} px a side")
        for key in ("max_train_images", "max_val_images"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"{b}.{key}", value, "it must be >= 1, or null for all images")
        require(self.search_epochs >= 0, f"{b}.search_epochs", self.search_epochs,
                "it must be >= 0 (0: no supernet or hypernet training)")
        require(self.batch_size >= 1, f"{b}.batch_size", self.batch_size, "it must be >= 1")
        require(self.lr > 0, f"{b}.lr", self.lr, "it must be > 0")
        require(0 <= self.momentum < 1, f"{b}.momentum", self.momentum, "it must be in [0, 1)")
        require(self.weight_decay >= 0, f"{b}.weight_decay", self.weight_decay, "it must be >= 0")
        require(self.grad_clip > 0, f"{b}.grad_clip", self.grad_clip, "it must be > 0")
        require(self.ranking_sample >= 4, f"{b}.ranking_sample", self.ranking_sample,
                "rank correlations and their bootstrap intervals need at least 4 archs")
        require(self.score_batches >= 1, f"{b}.score_batches", self.score_batches,
                "scoring an arch needs at least one validation batch")
        require(self.bn_recalibration_batches >= 0, f"{b}.bn_recalibration_batches", self.bn_recalibration_batches,
                "it must be >= 0 (0 only with a scoring.bn_mode that does not recalibrate)")
        require(self.candidates >= 1, f"{b}.candidates", self.candidates, "a method needs at least 1 candidate")
        require(self.evolution_generations >= 0, f"{b}.evolution_generations", self.evolution_generations,
                "it must be >= 0")
        require(self.evolution_population >= 2, f"{b}.evolution_population", self.evolution_population,
                "evolution needs a population of at least 2")
        require(self.bootstrap_resamples >= 0, f"{b}.bootstrap_resamples", self.bootstrap_resamples,
                "it must be >= 0 (0: no confidence intervals)")
        require(self.ranking_every >= 0, f"{b}.ranking_every", self.ranking_every,
                "it must be >= 0 (0: rank the sample only after training)")
        require(self.anytime_share > 0, f"{b}.anytime_share", self.anytime_share,
                "it must be > 0 (0.1: anytime scoring takes at most 10% of the run's training time)")
        require(self.anytime_sample is None or self.anytime_sample >= 4, f"{b}.anytime_sample",
                self.anytime_sample, "it must be null (the whole ranking sample) or >= 4 (a larger value than "
                "budget.ranking_sample means the whole sample)")
        _check_net(f"{b}.net", self.net)
        _check_net(f"{b}.final_net", self.final_net)
        for space, net in self.net_by_space.items():
            _check_net(f"{b}.net_by_space.{space}", net)
        for space, net in self.final_net_by_space.items():
            _check_net(f"{b}.final_net_by_space.{space}", net)
        _check_train(f"{b}.standalone", self.standalone)
        _check_train(f"{b}.final", self.final)


class Dataset(Choice):
    digits = "digits"  # scikit-learn's bundled 8x8 digits (offline)
    cifar10 = "cifar10"  # the official python batches from data.root or $ONESHOT_CIFAR10_ROOT
    imagenet = "imagenet"  # train/ and val/ class folders from data.root or $ONESHOT_IMAGENET_ROOT (transfers only)


@dataclass
class DataConfig:
    name: Dataset = Dataset.digits
    root: Optional[str] = None  # dataset folder; None falls back to the env var named in `root_env`
    root_env: str = "ONESHOT_CIFAR10_ROOT"
    download: bool = False  # allow torchvision to download when the root holds no data (needs internet)
    val_fraction: float = 0.5  # share of the training images held out as search-val (arch steps, ranking)
    augment: bool = True  # random crop with padding + horizontal flip, batched on the device

    def __post_init__(self) -> None:
        valid = [d.value for d in Dataset]
        require(self.name in valid, "data.name", self.name, f"choose one of {', '.join(valid)} (data=<name>)")
        self.name = Dataset(self.name)
        require(0.0 < self.val_fraction < 1.0, "data.val_fraction", self.val_fraction, "it must be in (0, 1)")


@dataclass
class SpaceConfig:
    name: str = "nb201"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodConfig:
    name: str = "spos"
    params: dict[str, Any] = field(default_factory=dict)


class Protocol(Choice):
    top1 = "top1"  # the method's best arch, trained (or looked up) once
    topk = "topk"  # the k best archs by the method's proxy, each trained under the final budget: mean ± std
    top_best = "top_best"  # rank `candidates` archs, short-train the top k, keep the best by validation accuracy,
    #                        train it under the final budget `final_seeds` times: mean ± std (GHN's Top-Best)


class BnMode(Choice):
    """How BatchNorm is handled when a supernet scores one subnet by its accuracy (`methods/bn_scoring.py`).
    "Choice BNs" are the BNs inside the candidate ops of the space's declared choice points; the others (stem,
    cell boundaries, reduction blocks, head) are "fixed"."""
    recalibrate_all = "recalibrate_all"  # reset every BN, re-estimate on calibration batches (SPOS's recipe)
    recalibrate_choice = "recalibrate_choice"  # re-estimate the choice BNs only; fixed BNs keep trained statistics
    batch_stats_choice = "batch_stats_choice"  # choice BNs normalise with the batch's own statistics (NB201's
    #                                             track_running_stats=False); fixed BNs use trained statistics
    running = "running"  # eval mode: every BN uses the statistics the supernet tracked while training


# What every record written before scoring modes existed used; a run's identity names its mode only when it differs
# from this, so those records keep their ids and their meaning.
LEGACY_BN_MODE = BnMode.recalibrate_all


@dataclass
class ScoringConfig:
    """How a weight-sharing method scores a subnet by its supernet accuracy (the ranking of the shared sample, and
    every search step that ranks subnets by accuracy). Scoring never changes training: a run's checkpoints are
    bit-identical under every mode."""

    # None: the space's `scoring_bn_mode`, the mode the across-seed evidence of issue 28 supports on that space
    # (README "Scoring BN modes"); a run resolves it before anything else, and records the resolved mode
    bn_mode: Optional[BnMode] = None
    # more modes to score the shared sample under, from the same trained supernet, as extra proxies "bn:<mode>"
    # (the ranking only; search steps use bn_mode)
    also_bn_modes: list[BnMode] = field(default_factory=list)

    def __post_init__(self) -> None:
        require(self.bn_mode is None or self.bn_mode not in self.also_bn_modes, "scoring.also_bn_modes",
                [str(m) for m in self.also_bn_modes],
                f"it repeats scoring.bn_mode={self.bn_mode}; list the other modes only")
        require(len(set(self.also_bn_modes)) == len(self.also_bn_modes), "scoring.also_bn_modes",
                [str(m) for m in self.also_bn_modes], "each mode at most once")

    def resolved(self, space_default: BnMode, space: str) -> ScoringConfig:
        """This scoring with `bn_mode` filled in from the space's default where unset."""
        mode = self.bn_mode if self.bn_mode is not None else space_default
        require(mode not in self.also_bn_modes, "scoring.also_bn_modes", [str(m) for m in self.also_bn_modes],
                f"it repeats the scoring mode {mode} (space {space}'s default; scoring.bn_mode unset); list the "
                f"other modes only, or set scoring.bn_mode")
        return ScoringConfig(bn_mode=mode, also_bn_modes=list(self.also_bn_modes))

    def identity(self) -> dict[str, Any]:
        """What a run's identity records of its (resolved) scoring: only what differs from the legacy protocol
        (every supernet record before scoring modes recalibrated every BN and scored one mode)."""
        out: dict[str, Any] = {}
        if self.bn_mode is not None and self.bn_mode != LEGACY_BN_MODE:
            out["bn_mode"] = str(self.bn_mode)
        if self.also_bn_modes:  # in BnMode's order: the same modes listed in another order are the same run
            out["also_bn_modes"] = [str(m) for m in BnMode if m in self.also_bn_modes]
        return out


@dataclass
class SelectionConfig:
    """How the archs a method found become its reported final accuracy (the papers' selection protocols), and the
    final training's regularisers. Every training it costs is charged: short trainings to the search, final ones to
    the final phase. Choose with `selection=<name>`; set any field with `selection.<field>=<value>`."""

    name: Protocol = Protocol.top1
    k: int = 10  # topk: archs trained; top_best: archs given the short training (the papers' top 10)
    candidates: Optional[int] = None  # archs the method ranks; null: budget.candidates (GHN Top-Best 1K: 1000)
    short_epochs: Optional[int] = None  # top_best: epochs of the short training; null: budget.standalone.epochs
    final_seeds: int = 1  # top_best: final trainings of the kept arch, each with its own seed (GHN Table 2: 5)
    final_channels: Optional[int] = None  # width F of the final network (Bender et al.'s F=32/64); null: budget's
    final_cells: Optional[int] = None  # cells per stage N of the final network (DARTS: 6, ENAS: 5); null: budget's
    cutout: int = 0  # final training: cutout side at 32 px (DARTS-space papers: 16); 0 = off
    drop_path: float = 0.0  # final training: drop-path probability at the last epoch (DARTS: 0.2)
    auxiliary_weight: float = 0.0  # final training: auxiliary head loss weight (DARTS: 0.4)

    def __post_init__(self) -> None:
        s = "selection"
        require_finite(s, self)
        require(self.k >= 1, f"{s}.k", self.k, "it must be >= 1")
        require(self.candidates is None or self.candidates >= 1, f"{s}.candidates", self.candidates,
                "it must be >= 1, or null for budget.candidates")
        require(self.short_epochs is None or self.short_epochs >= 1, f"{s}.short_epochs", self.short_epochs,
                "it must be >= 1, or null for budget.standalone.epochs")
        require(self.final_seeds >= 1, f"{s}.final_seeds", self.final_seeds, "it must be >= 1")
        require(self.final_channels is None or self.final_channels >= 2, f"{s}.final_channels", self.final_channels,
                "it must be >= 2, or null for the budget's final network")
        require(self.final_cells is None or self.final_cells >= 1, f"{s}.final_cells", self.final_cells,
                "it must be >= 1, or null for the budget's final network")
        require(self.cutout >= 0, f"{s}.cutout", self.cutout, "it must be >= 0 (0: no cutout)")
        require(0.0 <= self.drop_path < 1.0, f"{s}.drop_path", self.drop_path, "it must be in [0, 1)")
        require(self.auxiliary_weight >= 0, f"{s}.auxiliary_weight", self.auxiliary_weight, "it must be >= 0")

    def final_net(self, budget_net: NetConfig) -> NetConfig:
        """The network final trainings use: the budget's, with this protocol's width and depth where it sets them."""
        return dataclasses.replace(budget_net, channels=self.final_channels or budget_net.channels,
                                   cells_per_stage=self.final_cells or budget_net.cells_per_stage)

    @property
    def extras(self) -> TrainingExtras:
        return TrainingExtras(self.cutout, self.drop_path, self.auxiliary_weight)


@dataclass
class TruthConfig:
    """Which ground-truth source scores the rankings (a name registered with `register_truth`; `auto` = the
    space's default) and that source's own parameters (e.g. `truth.params.dataset=cifar100` for nb201)."""

    name: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)
    verify: bool = True  # check a shipped table against its pinned sha256; false uses a changed file (recorded)


class Mode(Choice):
    search = "search"  # a benchmark run
    transfer = "transfer"  # train a found arch on another dataset's network (`+transfer=imagenet_mobile`)
    truth = "truth"  # only fill the ground-truth cache for the shared arch sample
    report = "report"  # rebuild the HTML report from the records under results_dir; nothing trains
    sweep = "sweep"  # an Optuna study over the `sweep` group's search space (`+sweep=<method>` selects it)


class Reuse(Choice):
    """Which finished record a run returns instead of computing (evaluators/fingerprint.py: the code that made it)."""

    current = "current"  # only one made by this code (same fingerprint); a legacy record (none) is recomputed
    stale = "stale"  # any finished record, with a warning naming what changed (rendering committed results)


class SamplerName(Choice):
    tpe = "tpe"  # single- and multi-objective
    random = "random"
    nsga2 = "nsga2"  # multi-objective (also runs single-objective)


@dataclass
class SweepConfig:
    """An Optuna study (`python run.py +sweep=<method> ...`, conf/sweep/<method>.yaml holds the search space).
    Like `execution`, it is not part of any run's identity: each trial is an ordinary run whose config is the
    composed one plus the trial's values, so a trial that repeats a finished run reuses its record."""

    # config key -> search dimension in Hydra's sweep syntax: choice(a, b), interval(lo, hi), int(interval(lo, hi)),
    # tag(log, interval(lo, hi)), range(start, stop[, step])
    params: dict[str, str] = field(default_factory=dict)
    # summary fields, each optimized in its own sense (accuracies and correlations up, costs and sizes down); two or
    # more make a multi-objective study, whose Pareto front the report draws
    objectives: list[str] = field(default_factory=lambda: ["kendall_tau"])
    n_trials: int = 20  # COMPLETE trials over all workers of the study; a worker stops when they are reached
    # sqlite:///path, postgresql://user:password@host/db, or journal:path (a JSONL journal on a shared file system,
    # no database server, no heartbeats)
    storage: str = "${oc.env:ONESHOT_SWEEP_STORAGE,sqlite:///results/sweeps.db}"
    study_name: Optional[str] = None  # None: <method>-<space>-<data>-<budget>-<objectives>
    sampler: SamplerName = SamplerName.tpe
    sampler_seed: Optional[int] = None  # None: each worker draws its own seed (two workers must not propose alike)
    # database storages: a trial whose worker stopped beating for `grace_period` s is marked FAILED and retried
    heartbeat_interval: int = 60
    grace_period: Optional[int] = None  # None: 2 x heartbeat_interval
    max_retry: int = 2  # retries of one killed trial
    max_failed: Optional[int] = None  # the study stops (an error) after this many failed runs; None: n_trials
    # this worker's index when several are launched by one command (`-m sweep.worker=0,1,2,3`); offsets the
    # sampler's seed so that seeded workers do not propose the same values
    worker: int = 0

    def __post_init__(self) -> None:
        if self.study_name is not None:
            check_name("sweep.study_name", self.study_name, "sweep.study_name=spos-topk, or null for the default "
                       "name", becomes="the file name of the study's summary under results/sweeps/")
        require(bool(self.params), "sweep.params", self.params, "a sweep needs at least one search dimension, "
                "e.g. sweep.params='{method.params.topk: choice(5, 10)}'")
        require(bool(self.objectives), "sweep.objectives", self.objectives,
                "name at least one summary field, e.g. sweep.objectives=[kendall_tau]")
        require(len(set(self.objectives)) == len(self.objectives), "sweep.objectives", self.objectives,
                "each objective at most once")
        require(self.n_trials >= 1, "sweep.n_trials", self.n_trials, "it must be >= 1")
        require(self.heartbeat_interval >= 1, "sweep.heartbeat_interval", self.heartbeat_interval, "it must be >= 1")
        require(self.grace_period is None or self.grace_period > self.heartbeat_interval, "sweep.grace_period",
                self.grace_period, "it must exceed sweep.heartbeat_interval (or be null for twice it)")
        require(self.max_retry >= 0, "sweep.max_retry", self.max_retry, "it must be >= 0")
        require(self.worker >= 0, "sweep.worker", self.worker, "it must be >= 0")
        require(self.max_failed is None or self.max_failed >= 1, "sweep.max_failed", self.max_failed,
                "it must be >= 1, or null for sweep.n_trials")
        for key in self.params:
            require(not key.startswith(("execution.", "sweep.")), f"sweep.params.{key}", self.params[key],
                    "a search dimension must change what a run measures (not execution.* or sweep.*)")


@dataclass
class TransferConfig:
    """Training a searched cell in another setting's network and evaluating it (`+transfer=imagenet_mobile`, which
    selects mode=transfer, data=imagenet and space=darts_cell): the ImageNet mobile setting of DARTS (Liu et al.
    2019, Sec. 3.3 and the official train_imagenet.py), which GHN and the other DARTS-space papers follow. Like
    `execution`, it is not part of any search run's identity; a transfer has its own id (evaluators/transfer.py)."""

    source: Optional[str] = None  # a run id under execution.results_dir (its found arch), or an encoded arch
    channels: Optional[int] = None  # initial width C; null: the largest even C under `madds_limit` (DARTS: 48)
    cells_per_stage: int = 4  # N: 3N + 2 cells with two reductions (DARTS: 14 cells)
    resolution: int = 224  # training crop side; evaluation resizes to 256/224 of it, then centre-crops
    madds_limit: Optional[float] = 600e6  # multiply-adds of one image (the mobile setting); null: no limit
    epochs: int = 250
    batch_size: int = 128
    lr: float = 0.1
    lr_decay: float = 0.97  # the learning rate is multiplied by this after every epoch
    momentum: float = 0.9
    weight_decay: float = 3e-5
    grad_clip: float = 5.0
    label_smoothing: float = 0.1
    auxiliary_weight: float = 0.4  # 0: no auxiliary head
    drop_path: float = 0.0  # reached at the last epoch, linearly (DARTS' ImageNet training: 0)
    max_train_images: Optional[int] = None  # images per epoch (a fixed seeded subset); null: all
    max_val_images: Optional[int] = None  # images evaluated (a fixed seeded subset); null: all
    workers: int = 4  # DataLoader worker processes decoding images (0: in the main process)

    def __post_init__(self) -> None:
        t = "transfer"
        require_finite(t, self)
        require(self.channels is None or self.channels >= 2, f"{t}.channels", self.channels,
                "it must be >= 2, or null for the largest width under transfer.madds_limit")
        require(1 <= self.cells_per_stage <= MAX_CELLS_PER_STAGE, f"{t}.cells_per_stage", self.cells_per_stage,
                f"it must be in [1, {MAX_CELLS_PER_STAGE}] (DARTS: 4)")
        require(16 <= self.resolution <= MAX_RESOLUTION, f"{t}.resolution", self.resolution,
                f"the ImageNet network halves the image 5 times: use at least 16 px (DARTS: 224), and at most "
                f"{MAX_RESOLUTION} px")
        require(self.madds_limit is None or self.madds_limit > 0, f"{t}.madds_limit", self.madds_limit,
                "it must be > 0, or null for no limit")
        require(self.channels is not None or self.madds_limit is not None, f"{t}.channels", self.channels,
                "with transfer.madds_limit=null the width must be given, e.g. transfer.channels=48")
        require(self.epochs >= 1, f"{t}.epochs", self.epochs, "it must be >= 1")
        require(self.batch_size >= 1, f"{t}.batch_size", self.batch_size, "it must be >= 1")
        require(self.lr > 0, f"{t}.lr", self.lr, "it must be > 0")
        require(0 < self.lr_decay <= 1, f"{t}.lr_decay", self.lr_decay, "it must be in (0, 1]")
        require(0 <= self.momentum < 1, f"{t}.momentum", self.momentum, "it must be in [0, 1)")
        require(self.weight_decay >= 0, f"{t}.weight_decay", self.weight_decay, "it must be >= 0")
        require(self.grad_clip > 0, f"{t}.grad_clip", self.grad_clip, "it must be > 0")
        require(0 <= self.label_smoothing < 1, f"{t}.label_smoothing", self.label_smoothing, "it must be in [0, 1)")
        require(self.auxiliary_weight >= 0, f"{t}.auxiliary_weight", self.auxiliary_weight, "it must be >= 0")
        require(0 <= self.drop_path < 1, f"{t}.drop_path", self.drop_path, "it must be in [0, 1)")
        for key in ("max_train_images", "max_val_images"):
            value = getattr(self, key)
            require(value is None or value >= 1, f"{t}.{key}", value, "it must be >= 1, or null for all images")
        require(self.workers >= 0, f"{t}.workers", self.workers, "it must be >= 0")


def _check_folder(key: str, value: str, example: str) -> None:
    """A folder setting names a folder: not empty or blank, and not an existing file."""
    require(bool(value.strip()), key, value, f"an empty folder name means the current directory; name a folder, "
                                             f"e.g. {example}")
    require(not os.path.exists(value) or os.path.isdir(value), key, value,
            f"it is a file, not a folder; name a folder (new or existing), e.g. {example}")


@dataclass
class ExecutionConfig:
    """Where and how a run executes: locations and controls. Nothing here changes what a run measures, so a run's
    identity (its id) is the whole RunConfig except this group. Select `mode` with `mode=<name>` (conf/mode/)."""

    results_dir: str = "${oc.env:ONESHOT_RESULTS_DIR,results}"
    cache_dir: Optional[str] = None  # standalone-training ground truth cache; None: <results_dir>/cache
    report_dir: str = "reports/out"  # mode=report: folder of report.html
    resume: bool = True  # continue from the run's last checkpoint when one exists
    force: bool = False  # recompute even when a finished record exists
    reuse: Reuse = Reuse.current  # which finished record is returned as is: made by this code, or any (`stale`)
    threads: Optional[int] = None  # CPU threads for torch; None keeps torch's default (one per core)
    mode: Mode = Mode.search
    truth_shard: str = "0/1"  # mode=truth: "i/n" trains every n-th sample arch from the i-th (n parallel workers)

    def __post_init__(self) -> None:
        require(self.threads is None or 1 <= self.threads <= MAX_THREADS, "execution.threads", self.threads,
                f"it must be >= 1 and <= {MAX_THREADS}, or null for torch's default (one per core)")
        self.shard()  # checks the format
        # an empty folder name is the working directory: runs/, cache/ and Hydra's files would land there unasked
        _check_folder("execution.results_dir", self.results_dir, "execution.results_dir=results")
        if self.cache_dir is not None:
            _check_folder("execution.cache_dir", self.cache_dir,
                          "execution.cache_dir=results/cache, or null for <results_dir>/cache")
        if self.mode == Mode.report:  # read only by mode=report (reports/__main__.py checks it is writable)
            _check_folder("execution.report_dir", self.report_dir, "execution.report_dir=reports/out")

    def shard(self) -> tuple[int, int]:
        """(i, n) of `truth_shard`."""
        try:
            index, count = (int(part) for part in self.truth_shard.split("/"))
        except ValueError:
            index, count = -1, 0
        require(0 <= index < count, "execution.truth_shard", self.truth_shard,
                "it must be i/n with 0 <= i < n, e.g. execution.truth_shard=1/2")
        return index, count


@dataclass
class RunConfig:
    method: MethodConfig = field(default_factory=MethodConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N; the device type is part of a run's identity
    deterministic: bool = True  # torch's deterministic kernels: a run repeats bit for bit with the same seed/threads
    precision: Precision = Precision.fp32  # search-phase autocast; ground truth and final training stay fp32
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    sweep: Optional[SweepConfig] = None  # set by `+sweep=<method>`; outside every run's identity, like execution
    transfer: Optional[TransferConfig] = None  # set by `+transfer=<setting>`; outside every search run's identity

    def __post_init__(self) -> None:
        require(self.execution.mode != Mode.sweep or self.sweep is not None, "mode", "sweep",
                "a sweep needs its search space: add +sweep=<method> (conf/sweep/)")
        require(self.execution.mode != Mode.transfer or self.transfer is not None, "mode", "transfer",
                "a transfer needs its setting: add +transfer=imagenet_mobile (conf/transfer/)")
        require(0 <= self.seed <= MAX_SEED, "seed", self.seed,
                f"seeds must be >= 0 and at most 2**32 - 1 = {MAX_SEED} (what every seeding path accepts)")
        require(self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:")
                                                            and self.device[5:].isdigit()),
                "device", self.device, "choose auto, cpu, cuda or cuda:N")


def nets_for(budget: BudgetConfig, space: str) -> tuple[NetConfig, NetConfig]:
    """(search net, final net) of a budget for one space (papers size each space differently)."""
    return budget.net_by_space.get(space, budget.net), budget.final_net_by_space.get(space, budget.final_net)


def from_dictconfig(cfg: Any) -> RunConfig:
    """Validate a Hydra/OmegaConf config against RunConfig and return plain dataclasses."""
    from omegaconf import OmegaConf, SCMode
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        # Hydra composes a method's (truth source's, space's) params against its own dataclass (evaluators/
        # hydra_config.py), which would drop a key added with `+`; core code takes every given key as a plain dict,
        # validated by that dataclass where it is used (an unknown key is named there)
        params = {group: OmegaConf.to_container(merged[group].params, resolve=True,
                                                structured_config_mode=SCMode.DICT)
                  for group in ("method", "truth", "space")}
        run = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        if isinstance(e.__cause__, ConfigError):  # a range check in a __post_init__, wrapped by OmegaConf
            raise e.__cause__ from None
        raise ConfigError(f"invalid configuration: {_omegaconf_message(e)}") from None
    assert isinstance(run, RunConfig)
    run.method.params, run.truth.params, run.space.params = params["method"], params["truth"], params["space"]
    return run


def params_to_dataclass(cls: type, params: dict[str, Any], what: str) -> Any:
    """Build a method's or a space's hyperparameter dataclass from user values: unknown keys are named with the
    valid ones, values are type-checked against the fields (OmegaConf: "abc" for an int fails, enum names are
    accepted), and the dataclass' __post_init__ checks ranges, all before any data is loaded."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(f"unknown {what} parameter(s) {unknown}. Valid: {sorted(names)}.")
    try:
        values = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), params))
    except OmegaConfBaseException as e:
        cause = e.__cause__ if isinstance(e.__cause__, ConfigError) else None
        if cause is not None:  # a range check in __post_init__, wrapped by OmegaConf
            raise cause from None
        raise ConfigError(f"invalid {what} parameter: {_omegaconf_message(e)}") from None
    require_finite(f"{what.split()[0]}.params", values)  # what: "method 'spos'" -> method.params.<field>
    return values


def _omegaconf_message(e: Exception) -> str:
    """OmegaConf's message without its multi-line object_type/full_key trailer."""
    first = str(e).strip().splitlines()[0]
    key = getattr(e, "full_key", None)
    return f"{key}: {first}" if key else first


def to_plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
