"""One benchmark run: the same phases, arch sample, metrics and cost accounting for every method.

    plan = plan_run(cfg)                 # everything that needs no data: space, method, truth, device, identity
    run = prepare(plan)                  # data, networks, ground truth bound, method set up (resumed if possible)
    train(run)                           # search epochs, a checkpoint after each ("supernet_train" phase), and
                                         # with budget.ranking_every an anytime ranking every K epochs ("anytime")
    evaluation = evaluate(run)           # score the shared sample ("ranking"), its free references (params,
                                         # FLOPs), derive, final accuracy ("final")
    record = build_record(run, evaluation, artifacts)

Each phase is timed in device-seconds. Ground-truth work for the ranking sample is timed separately and never
charged to a method. `run_benchmark` runs the whole sequence and stores the record, or returns the run's finished
record when the same code made it (its fingerprint, evaluators/fingerprint.py; `execution.reuse=stale`: any).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch
from tqdm.auto import tqdm

from methods.base import Method, SearchContext, get_method
from oneshot_bench.atomic import read_json, write_json
from oneshot_bench.config import BnMode, NetConfig, Protocol, Reuse, RunConfig, nets_for
from oneshot_bench.data import DataBundle, data_sha256, load_data
from oneshot_bench.device import configure_torch, resolve_device, search_autocast
from oneshot_bench.errors import ConfigError
from oneshot_bench.exits import ranking_value
from oneshot_bench.measure import count_flops, count_params
from oneshot_bench.training import seeded, train_standalone
from search_spaces.base import STANDALONE, SUPERNET, Arch, SearchSpace, get_space

from .anytime import AnytimeScorer
from .cost import CostMeter
from .environment import git_commit, versions
from .fingerprint import code_fingerprint, difference
from .paired import accuracy_standard_error
from .ranking import ranking_metrics
from .record import RECORD_VERSION, AnytimePoint, Code, ExtraProxy, Finalist, Found, Hashes, Ranking, RunRecord, Summary
from .sample import benchmark_sample
from .state import check_reference_sizes, parse_checkpoint, parse_progress
from .store import ResultsStore, config_hash, move_aside, run_id_for
from .truth import GroundTruth, TruthContext, resolve_truth

log = logging.getLogger("oneshot_bench")


# ---- plan: everything that needs no data -------------------------------------------------------------------------

@dataclass
class RunPlan:
    cfg: RunConfig
    space: SearchSpace
    method: Method
    truth: GroundTruth
    device: torch.device
    store: ResultsStore
    identity: dict[str, Any]  # what the run measures: everything but `execution`, with the data's sha256
    run_id: str
    config_hash: str  # full sha256 of the identity (checkpoints and progress files carry it)

    @cached_property
    def code(self) -> Code:
        """The fingerprint of the code this run executes (evaluators/fingerprint.py). Not in the identity: records,
        checkpoints and progress files carry it beside their ids."""
        return code_fingerprint(self.method, self.space, self.truth)


def identity_of(cfg: RunConfig, space: SearchSpace, method: Method, truth: GroundTruth, device: torch.device,
                data_sha: str) -> dict[str, Any]:
    """A run's identity: the whole configuration except `execution`, `sweep` and `transfer`, with the method's
    hyperparameters, the space's non-default parameters and the truth source resolved (defaults filled in, so the
    run id changes when a default does; the truth's file sha256 included), the device reduced to its type (cuda:0 and
    cuda:1 measure the same thing), and the data named by its sha256 instead of where it lives (the same files under
    another path are the same run; changed files are not)."""
    config = asdict(cfg)
    del config["execution"], config["sweep"], config["transfer"]
    for key in ("ranking_every", "anytime_sample", "anytime_share"):  # training is bit-identical (anytime.py)
        del config["budget"][key]
    # the scoring protocol only where it applies, and only what differs from the legacy one (ScoringConfig.identity):
    # every record written before scoring modes keeps its id, and methods that score otherwise keep theirs
    del config["scoring"]
    if method.bn_modes_apply and cfg.scoring.identity():
        config["scoring"] = cfg.scoring.identity()
    config["method"]["params"] = method.hparams_dict()
    config["space"]["params"] = space.identity_params()
    config["truth"] = truth.identity()
    config["device"] = device.type
    config["data"] = {k: v for k, v in config["data"].items() if k not in DATA_LOCATION} | {"sha256": data_sha}
    return json.loads(json.dumps(config, default=str))  # plain JSON values (choices as their names)


DATA_LOCATION = ("root", "root_env", "download")  # where the data lives, replaced by its sha256 in the identity


def plan_run(cfg: RunConfig) -> RunPlan:
    """Validate the method on the space, its hyperparameters, the truth source (its file verified), the sample size
    and the device, and fingerprint the data files; nothing is decoded or trained."""
    space = get_space(cfg.space.name, cfg.space.params)
    method = get_method(cfg.method.name, cfg.method.params)
    method.check_supports(space)
    if method.bn_modes_apply:  # the scoring mode resolved once (unset: the space's default), so the identity, the
        #                        method and the record agree; other methods ignore it
        cfg = replace(cfg, scoring=cfg.scoring.resolved(space.scoring_bn_mode, space.name))
        recalibrating = [str(m) for m in [cfg.scoring.bn_mode, *cfg.scoring.also_bn_modes]
                         if m in (BnMode.recalibrate_all, BnMode.recalibrate_choice)]
        if recalibrating and cfg.budget.bn_recalibration_batches == 0:
            raise ConfigError(f"budget.bn_recalibration_batches=0 leaves nothing to re-estimate BN statistics on, "
                              f"but scoring mode(s) {recalibrating} (space {space.name}'s default where "
                              f"scoring.bn_mode is unset) recalibrate; set budget.bn_recalibration_batches >= 1, or "
                              f"scoring.bn_mode=running to keep the trained statistics.")
    truth = resolve_truth(space, cfg.truth.name, cfg.truth.params, verify=cfg.truth.verify)
    pool = truth.arch_pool()
    available = len(pool) if pool is not None else space.size()
    if available is not None and cfg.budget.ranking_sample > available:
        source = f"truth {truth.name!r} covers" if pool is not None else f"space {space.name} has"
        raise ConfigError(f"budget.ranking_sample={cfg.budget.ranking_sample} is not allowed: {source} only "
                          f"{available} archs; lower it.")
    check_selection(cfg, space, truth, method, available)
    device = resolve_device(cfg.device)
    identity = identity_of(cfg, space, method, truth, device, data_sha256(cfg.data))
    return RunPlan(cfg, space, method, truth, device, ResultsStore(cfg.execution.results_dir), identity,
                   run_id_for(identity), config_hash(identity))


def check_selection(cfg: RunConfig, space: SearchSpace, truth: GroundTruth, method: Method,
                    available: Optional[int]) -> None:
    """A protocol's settings must mean something for this method, truth and space: final_seeds only where the
    protocol trains over seeds (top_best; it is part of the run id, so an ignored value would name a run after a
    setting it never had), k at most the archs the method ranks (`available`: the truth's pool or the space, None
    for unbounded), a looked-up accuracy already has its benchmark's own training (no regularisers, no seeds to
    add), and a regulariser needs nets that support it."""
    sel = cfg.selection
    if sel.final_seeds != 1 and sel.name != Protocol.top_best:
        raise ConfigError(f"selection.final_seeds={sel.final_seeds} is not used by selection={sel.name} (only "
                          f"top_best trains its kept arch over several seeds); use selection=top_best, or drop "
                          f"selection.final_seeds.")
    if sel.name in (Protocol.topk, Protocol.top_best):
        ranked = method.ranking_size(sel.candidates or cfg.budget.candidates, cfg.budget)
        why, more = f"set by {method.ranking_size_source}", f", or raise {method.ranking_size_source}"
        if available is not None and available < ranked:
            ranked, more = available, ""
            why = (f"truth {truth.name!r} covers" if truth.arch_pool() is not None
                   else f"space {space.name} has") + f" only {available} archs"
        if sel.k > ranked:
            raise ConfigError(f"selection.k={sel.k} is more than the {ranked} candidates method {method.name!r} "
                              f"ranks here ({why}), so selection={sel.name} cannot take its top {sel.k}; lower "
                              f"selection.k to at most {ranked}{more}.")
    if truth.kind == "tabular" and (sel.extras.active or sel.final_seeds > 1 or sel.final_channels or sel.final_cells):
        raise ConfigError(f"selection.cutout/drop_path/auxiliary_weight/final_seeds/final_channels/final_cells change "
                          f"the final training, but "
                          f"truth {truth.name!r} looks accuracies up (the benchmark's own training, averaged over its "
                          f"seeds); drop them, or use truth=trained.")
    for option, value in (("drop_path", sel.drop_path), ("auxiliary_head", sel.auxiliary_weight)):
        if value > 0 and option not in space.final_training:
            key = "drop_path" if option == "drop_path" else "auxiliary_weight"
            raise ConfigError(f"selection.{key}={value} is not allowed: space {space.name!r} builds networks without "
                              f"{option.replace('_', ' ')} (spaces with it: declared in `final_training`); set it "
                              f"to 0.")


def checkpoint_bytes(plan: RunPlan) -> int:
    """Room a run's checkpoints need: its largest network's weights plus optimizer moments, twice (the new file is
    written before the old one is replaced), plus a margin; measured on the meta device (nothing allocated). A
    network too large for this machine's memory is refused first, naming the width to lower (check_fits_memory)."""
    budget, space = plan.cfg.budget, plan.space.name
    net = nets_for(budget, space)[0]
    with torch.device("meta"):
        model = (plan.space.build_supernet(net) if SUPERNET in plan.space.capabilities
                 and SUPERNET in plan.method.required_capabilities
                 else plan.space.build_standalone(plan.space.sample(random.Random(0)), net))
    params = count_params(model)
    key = f"budget.net_by_space.{space}" if space in budget.net_by_space else "budget.net"
    check_fits_memory(params, key, net, f"the {space} search network", plan.device)
    if plan.truth.kind != "tabular":  # a trained truth and the final training build the final network
        final = plan.cfg.selection.final_net(nets_for(budget, space)[1])
        with torch.device("meta"):
            final_params = count_params(plan.space.build_standalone(plan.space.sample(random.Random(0)), final))
        key = ("selection.final" if plan.cfg.selection.final_channels else
               f"budget.final_net_by_space.{space}" if space in budget.final_net_by_space else "budget.final_net")
        check_fits_memory(final_params, key, final, f"the {space} final network", plan.device)
    return 2 * 3 * 4 * params + 16 * 2**20


def check_fits_memory(params: int, key: str, net: NetConfig, what: str, device: torch.device) -> None:
    """A ConfigError, before any work, when a network's weights, gradients and optimizer moments alone (3 float32
    copies of its parameters) exceed the memory of this machine (and of its GPU on cuda): torch would otherwise try
    to allocate it, or the disk check would ask for an absurd amount of free space."""
    import os

    need = 3 * 4 * params
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    where = "this machine's"
    if device.type == "cuda":
        gpu = torch.cuda.get_device_properties(device).total_memory
        memory, where = min(memory, gpu), where if memory <= gpu else "the GPU's"
    if need > memory:
        width = f"{key}_channels" if key == "selection.final" else f"{key}.channels"
        raise ConfigError(f"{width}={net.channels} ({net.cells_per_stage} cell(s) per stage) makes {what} {params:,} "
                          f"parameters: {need / 2**30:,.1f} GiB for its weights, gradients and optimizer moments "
                          f"alone, more than {where} {memory / 2**30:,.1f} GiB of memory; lower {width} (the shipped "
                          f"budgets use 8 to 128).")


# ---- prepare: data, networks, truth, method ----------------------------------------------------------------------

@dataclass
class PreparedRun:
    plan: RunPlan
    data: DataBundle
    net: NetConfig  # search network, input channels and classes filled from the data
    final_net: NetConfig
    meter: CostMeter
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    # per-arch work after training: ranking scores (arch string -> score and extra proxies), saved as it happens
    ranking: dict[str, dict[str, Any]] = field(default_factory=dict)
    anytime: list[dict[str, Any]] = field(default_factory=list)  # AnytimePoint fields, checkpointed
    truth_seconds: float = 0.0  # ground-truth work for the sample (reference work, never charged to the method)
    _sample: Optional[tuple[list[Arch], list[float]]] = None
    _saved_at: float = 0.0  # when the progress file was last written (perf_counter), and how long that took
    _save_seconds: float = 0.0

    def sample_and_truth(self) -> tuple[list[Arch], list[float]]:
        """The shared ranking sample of this run's (space, truth, seed) and its true accuracies (computed once)."""
        if self._sample is None:
            plan, budget = self.plan, self.plan.cfg.budget
            sample = benchmark_sample(plan.space, plan.cfg.seed, budget.ranking_sample, pool=plan.truth.arch_pool(),
                                      truth=plan.truth.name)
            start = time.perf_counter()
            self._sample = sample, plan.truth.accuracies(sample)
            self.truth_seconds += time.perf_counter() - start
        return self._sample

    def save_progress_unless_recent(self) -> None:
        """save_progress, skipped while less than PROGRESS_WRITE_SPACING times the last write's duration has
        passed: the whole file is rewritten and fsynced each time, so with thousands of scored archs writes would
        otherwise dominate scoring (and grow with the square of the sample). A killed run re-scores at most the archs
        of that short span; with small files every arch is kept, as before."""
        if time.perf_counter() - self._saved_at >= PROGRESS_WRITE_SPACING * self._save_seconds:
            self.save_progress()

    def save_progress(self) -> None:
        start = time.perf_counter()
        self._write_progress()
        self._saved_at = time.perf_counter()
        self._save_seconds = self._saved_at - start

    def _write_progress(self) -> None:
        plan = self.plan
        encode = plan.space.encode
        plan.store.save_progress(plan.run_id, {
            "run_id": plan.run_id, "config_hash": plan.config_hash, "code": asdict(plan.code),
            "seconds": dict(self.meter.seconds), "ranking": self.ranking,
            "cache": {purpose: {encode(a): v for a, v in table.items()}
                      for purpose, table in plan.method.score_cache.items()}})


def load_inputs(cfg: RunConfig, space: SearchSpace, truth: GroundTruth, device: torch.device,
                store: ResultsStore) -> tuple[DataBundle, NetConfig, NetConfig]:
    """Data, (search net, final net), and the truth bound to them: identical for every method, and for mode=truth."""
    configure_torch(cfg.execution.threads, cfg.seed, cfg.deterministic)
    budget = cfg.budget
    data = load_data(cfg.data, resolution=budget.resolution, seed=cfg.seed, max_train_images=budget.max_train_images,
                     max_val_images=budget.max_val_images).to(device)
    fill = dict(num_classes=data.num_classes, in_channels=data.in_channels)
    search_net, final_net = nets_for(budget, space.name)
    net, final_net = replace(search_net, **fill), replace(final_net, **fill)
    cache = Path(cfg.execution.cache_dir or store.cache_dir) / "truth"
    truth.bind(TruthContext(data=data, net=final_net, train=budget.standalone, final=budget.final, device=device,
                            seed=cfg.seed, cache_dir=cache))
    return data, net, final_net


def final_network(truth: GroundTruth, final_net: NetConfig, data: DataBundle) -> tuple[NetConfig, int, str]:
    """(network, image side, in words) that the found arch's accuracy refers to, where its size is counted and
    resource constraints apply: the benchmark's own network for a tabular truth, else the budget's final network
    on the run's data (what the truth retrains)."""
    benchmark = truth.network()
    if benchmark is not None:
        net, side = benchmark
        return net, side, f"the network of the {truth.name} benchmark ({side} px)"
    return final_net, data.resolution, f"the budget's final network on the run's data ({data.resolution} px)"


def prepare(plan: RunPlan) -> PreparedRun:
    cfg, store = plan.cfg, plan.store
    data, net, final_net = load_inputs(cfg, plan.space, plan.truth, plan.device, store)
    final_net, final_side, _ = final_network(plan.truth, final_net, data)
    run = PreparedRun(plan, data, net, final_net, CostMeter(plan.device))
    plan.method.setup(SearchContext(space=plan.space, data=data, budget=cfg.budget, device=plan.device, seed=cfg.seed,
                                    net=net, final_net=final_net, final_resolution=final_side,
                                    arch_pool=plan.truth.arch_pool(), scoring=cfg.scoring))
    plan.method.on_progress = run.save_progress
    if not cfg.execution.resume or cfg.execution.force:
        return run
    checkpoint = store.load_checkpoint(plan.run_id, plan.config_hash, code=plan.code,
                                       parse=lambda state: parse_checkpoint(state, cfg.budget.search_epochs))
    if checkpoint is not None:
        try:
            plan.method.load_state_dict(checkpoint.method)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            # a layout the method does not know (another version's, a hand-edited one): one error, not a traceback
            problem = f"no {e.args[0]!r} in it" if isinstance(e, KeyError) and e.args else \
                (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise store.refused_checkpoint(plan.run_id, f"holds a {plan.method.name} state this version cannot "
                                                        f"resume ({problem})") from None
        run.meter.seconds, run.history = dict(checkpoint.seconds), list(checkpoint.history)
        run.anytime = checkpoint.anytime_rows()
        run.start_epoch = checkpoint.epoch + 1
        torch.set_rng_state(checkpoint.torch_rng)
        log.info("resuming run %s after epoch %d", plan.run_id, checkpoint.epoch)
    progress = store.load_progress(plan.run_id, plan.config_hash, code=plan.code,
                                   parse=lambda data: parse_progress(data, plan.space.decode))
    training_done = run.start_epoch >= cfg.budget.search_epochs or not plan.method.trains
    if progress is not None and training_done:  # scores and per-arch caches of the evaluation so far
        decode = plan.space.decode
        run.meter.seconds = dict(progress.seconds)
        run.ranking = progress.ranking_rows()
        plan.method.score_cache = {purpose: {decode(a): float(v) for a, v in table.items()}
                                   for purpose, table in progress.cache.items()}
        log.info("resuming run %s with %d ranked archs and %d cached scores", plan.run_id, len(run.ranking),
                 sum(map(len, plan.method.score_cache.values())))
    return run


# ---- train ---------------------------------------------------------------------------------------------------------

def train(run: PreparedRun, progress: Optional[bool] = None) -> None:
    """Search epochs (none for a method that does not train: random, zero-cost proxies), each followed by an
    anytime ranking when one is due and affordable, then a checkpoint."""
    plan, budget = run.plan, run.plan.cfg.budget
    method = plan.method
    if not method.trains:
        return
    anytime = AnytimeScorer(method, run.meter, budget.ranking_every, budget.search_epochs, run.sample_and_truth,
                            sample_size=min(budget.anytime_sample or budget.ranking_sample, budget.ranking_sample),
                            resamples=budget.bootstrap_resamples,
                            seed=plan.cfg.seed, points=run.anytime, share=budget.anytime_share)
    for epoch in tqdm(range(run.start_epoch, budget.search_epochs), desc=f"{method.name} search",
                      disable=progress is False or None, initial=run.start_epoch, total=budget.search_epochs):
        with run.meter.phase("supernet_train"), search_autocast(plan.device, plan.cfg.precision):
            run.history.append({"epoch": epoch, **method.train_epoch(epoch)})
        with search_autocast(plan.device, plan.cfg.precision):
            anytime.after_epoch(epoch)
        plan.store.save_checkpoint(plan.run_id, plan.config_hash, {
            "method": method.state_dict(), "seconds": dict(run.meter.seconds), "history": run.history,
            "epoch": epoch, "torch_rng": torch.get_rng_state(), "anytime": run.anytime, "code": asdict(plan.code)})


# ---- evaluate ------------------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    sample: list[Arch]
    scores: list[float]
    true_acc: list[float]
    truth_seconds: float
    metrics: dict[str, float]
    extra: dict[str, ExtraProxy]
    references: dict[str, ExtraProxy]
    best: Arch  # the selected arch (top1: the method's best; top_best: the one kept after short training)
    finals: list[dict[str, Any]]  # one per final training or lookup: arch, proxy score, truth's result
    baseline: Optional[dict[str, Any]] = None  # multi-exit spaces: the hand-designed baseline's final result


# progress writes are spaced by at least this many times their own duration (at most ~10% of scoring time)
PROGRESS_WRITE_SPACING = 10.0


def score_sample(run: PreparedRun, sample: list[Arch], progress: Optional[bool] = None) -> None:
    """The method's proxy score of every sample arch, one at a time, kept in the progress file as they are known
    (a killed run re-scores at most those of the last few write-times: PreparedRun.save_progress_unless_recent).
    Scores do not depend on the order (fixed batches, per-arch seeds), so a resumed run's scores are the
    uninterrupted run's. Benchmark work: the `ranking` phase, never
    charged to the search."""
    method, encode = run.plan.method, run.plan.space.encode
    for arch in tqdm(sample, desc=f"{method.name} scoring", leave=False, disable=progress is False or None):
        key = encode(arch)
        if key in run.ranking:
            continue
        with run.meter.phase("ranking"), search_autocast(run.plan.device, run.plan.cfg.precision):
            score = float(method.score([arch])[0])
            extra = {name: float(values[0]) for name, values in method.extra_scores.items()}
            if method.bn_modes_apply and run.plan.cfg.scoring.also_bn_modes:  # same weights, other BN modes
                extra |= method.scores_under_modes(arch, run.plan.cfg.scoring.also_bn_modes)
        run.ranking[key] = {"score": score, "extra": extra}
        run.save_progress_unless_recent()
    run.save_progress()


def short_training(run: PreparedRun, arch: Arch) -> float:
    """Top-Best's short training of one arch on the run's data: its validation accuracy (anytime AUC in a
    multi-exit space) after
    `selection.short_epochs` epochs (budget.standalone otherwise), seeded per arch."""
    plan, budget, sel = run.plan, run.plan.cfg.budget, run.plan.cfg.selection
    train = replace(budget.standalone, epochs=sel.short_epochs or budget.standalone.epochs)
    seed = plan.method.arch_seed(arch, "selection")
    # the final network's shape (what it selects for), on the run's images: a tabular truth's network is its
    # benchmark's (CIFAR-10: 3 channels, 10 classes), which the run's data need not be
    shape = replace(sel.final_net(run.final_net), in_channels=run.data.in_channels, num_classes=run.data.num_classes)
    net = seeded(lambda: plan.space.build_standalone(arch, shape), seed)
    result = train_standalone(net, run.data, train, plan.device, seed, desc="top-best: short training",
                              eval_splits=("val",))
    return ranking_value(plan.space, arch, shape, run.data.resolution, result, "val")


def select(run: PreparedRun) -> tuple[Arch, list[dict[str, Any]]]:
    """The selection protocol: the method ranks its candidates (`derive` phase), Top-Best short-trains its top k
    (`selection` phase, search cost, each training kept in the progress file), and every selected arch is trained
    or looked up under the final budget (`final` phase)."""
    plan, sel, budget = run.plan, run.plan.cfg.selection, run.plan.cfg.budget
    method, truth = plan.method, plan.truth
    with run.meter.phase("derive"), search_autocast(plan.device, plan.cfg.precision):
        ranking = method.ranked(sel.candidates or budget.candidates)
    proxy = dict(ranking)
    short: dict[Arch, float] = {}
    if sel.name == Protocol.top1:
        chosen = [ranking[0][0]]
    elif sel.name == Protocol.topk:
        chosen = [arch for arch, _ in ranking[:sel.k]]
    else:
        with run.meter.phase("selection"), search_autocast(plan.device, plan.cfg.precision):
            trained = method.cached("selection", lambda arch: short_training(run, arch))
            short = {arch: trained(arch) for arch, _ in ranking[:sel.k]}
        chosen = [max(short, key=short.__getitem__)]  # ties: the method's better-ranked arch
    seeds = sel.final_seeds if sel.name == Protocol.top_best else 1
    finals = []
    with run.meter.phase("final"):
        for arch in chosen:
            for i in range(seeds):
                result = truth.final_accuracy(arch, seed_index=i, extras=sel.extras, net=sel.final_net(run.final_net))
                finals.append({"arch": arch, "seed_index": i, "proxy_score": proxy.get(arch),
                               "short_val_acc": short.get(arch), **result})
    # a retrain served from the cache (another method found the same arch) still costs its original training time
    run.meter.seconds["final"] = max(run.meter.seconds["final"], sum(f.get("seconds", 0.0) for f in finals))
    return chosen[0], finals


def free_references(run: PreparedRun, sample: list[Arch], true_acc: list[float]) -> dict[str, ExtraProxy]:
    """The sample ranked by parameter count and by FLOPs of each arch's search-size network at the run's image
    side: rankings that need no training, the least a method's ranking must beat. Counted on the meta device (no
    memory, no data) once per (space, network, image side, sample) and cached beside the truth cache, since every
    method of a comparison shares them; reference work, never charged to the method."""
    plan, cfg = run.plan, run.plan.cfg
    archs = [plan.space.encode(a) for a in sample]
    spec = [plan.space.name, plan.space.identity_params(), asdict(run.net), run.data.resolution, archs]
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = Path(cfg.execution.cache_dir or plan.store.cache_dir) / "references" / f"{key}.json"
    def count(arch: Arch) -> tuple[float, float]:
        with torch.device("meta"):
            model = plan.space.build_standalone(arch, run.net)
        return float(count_params(model)), float(count_flops(model, run.net.in_channels, run.data.resolution))

    sizes: Optional[dict[str, list[float]]] = None
    if path.is_file():
        try:
            sizes = check_reference_sizes(read_json(path), len(sample))
            # well-formed is not right: a few archs recounted (first, middle, last) catch a file of other values,
            # shuffled or shifted, at the cost of three meta-device builds
            for i in sorted({0, len(sample) // 2, len(sample) - 1}):
                if count(sample[i]) != (sizes["params"][i], sizes["flops"][i]):
                    raise ValueError(f"its sizes of arch {archs[i]} are not that arch's")
        except (OSError, ValueError) as e:  # a cache: set aside and recounted below (evaluators/store.py's policy)
            log.warning("references cache file %s cannot be used (%s); kept as %s and the sizes are counted again",
                        path, e.strerror if isinstance(e, OSError) and e.strerror else e, move_aside(path).name)
            sizes = None
    if sizes is None:
        counted = [count(arch) for arch in sample]
        sizes = {"params": [p for p, _ in counted], "flops": [f for _, f in counted]}
        write_json(path, sizes)
    return {name: ExtraProxy(**ranking_metrics(values, true_acc, resamples=cfg.budget.bootstrap_resamples,
                                               seed=cfg.seed), proxy=[float(v) for v in values])
            for name, values in sizes.items() if name in ("params", "flops")}


def evaluate(run: PreparedRun, progress: Optional[bool] = None) -> Evaluation:
    plan, budget, seed = run.plan, run.plan.cfg.budget, run.plan.cfg.seed
    encode = plan.space.encode
    sample, true_acc = run.sample_and_truth()
    score_sample(run, sample, progress)
    scores = [run.ranking[encode(a)]["score"] for a in sample]
    extra_names = sorted({name for entry in run.ranking.values() for name in entry["extra"]})
    references = free_references(run, sample, true_acc) if STANDALONE in plan.space.capabilities else {}
    metrics = ranking_metrics(scores, true_acc, resamples=budget.bootstrap_resamples, seed=seed)
    extra = {}
    for name in extra_names:
        values = [run.ranking[encode(a)]["extra"][name] for a in sample]
        extra[name] = ExtraProxy(**ranking_metrics(values, true_acc, resamples=budget.bootstrap_resamples, seed=seed),
                                 proxy=values)
    run.save_progress()
    best, finals = select(run)
    return Evaluation(sample, scores, true_acc, run.truth_seconds, metrics, extra, references, best, finals,
                      baseline_result(run))


def baseline_result(run: PreparedRun) -> Optional[dict[str, Any]]:
    """A multi-exit space's hand-designed baseline, trained with the final protocol, network and seed of the found
    arch's first final training: the curve a found arch must beat. Reference work, outside every charged phase;
    the truth's cache shares it between the methods of a comparison."""
    plan, sel = run.plan, run.plan.cfg.selection
    if not plan.space.multi_exit:
        return None
    arch = plan.space.baseline_arch()
    result = plan.truth.final_accuracy(arch, seed_index=0, extras=sel.extras, net=sel.final_net(run.final_net))
    return {"arch": arch, **result}


# ---- build the record ----------------------------------------------------------------------------------------------

def worst_decile(truth: GroundTruth) -> Optional[float]:
    """10% quantile of the true accuracy over everything the truth covers (tabular truths only)."""
    table = truth.all_accuracies()
    return float(pd.Series(list(table.values())).quantile(0.1)) if table else None


def spread(values: list[float]) -> float:
    """Sample standard deviation, NaN for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else math.nan


def build_record(run: PreparedRun, ev: Evaluation, artifacts: list[str]) -> RunRecord:
    plan, cfg, data, encode = run.plan, run.plan.cfg, run.data, run.plan.space.encode
    net, side, sized_at = final_network(plan.truth, cfg.selection.final_net(run.final_net), data)
    sizes: dict[Arch, tuple[int, int]] = {}
    for arch in [ev.best, *(f["arch"] for f in ev.finals), *([ev.baseline["arch"]] if ev.baseline else [])]:
        if arch not in sizes:
            with torch.device("meta"):  # counted on the meta device: a benchmark network need not fit in memory
                model = plan.space.build_standalone(arch, net)
            sizes[arch] = (count_params(model), count_flops(model, net.in_channels, side))
    finalists = [Finalist(arch=encode(f["arch"]), params=sizes[f["arch"]][0], flops=sizes[f["arch"]][1],
                          test_acc=f["test_acc"], source=f["source"], n_images=f["n_images"],
                          seed_index=f["seed_index"], proxy_score=f["proxy_score"],
                          short_val_acc=f["short_val_acc"], val_acc=f.get("val_acc"), seconds=f.get("seconds"),
                          correct=f.get("correct"), anytime=f.get("anytime")) for f in ev.finals]
    baseline = None
    if ev.baseline is not None:
        b = ev.baseline
        baseline = {"arch": encode(b["arch"]), "params": sizes[b["arch"]][0], "flops": sizes[b["arch"]][1],
                    "test_acc": b["test_acc"], "seconds": b.get("seconds"), "anytime": b.get("anytime")}
    accs, params = [f.test_acc for f in finalists], [f.params for f in finalists]
    mean_acc, n_images = statistics.fmean(accs), finalists[0].n_images
    std = spread(accs)
    se = std / math.sqrt(len(accs)) if len(accs) > 1 else accuracy_standard_error(mean_acc, n_images)
    anytime = [AnytimePoint(**p) for p in run.anytime]
    if anytime:  # the curve ends with the run's own ranking after all its training, on the curve's archs
        n = anytime[-1].n
        last = ranking_metrics(ev.scores[:n], ev.true_acc[:n], resamples=cfg.budget.bootstrap_resamples,
                               seed=cfg.seed)
        anytime.append(AnytimePoint(epoch=cfg.budget.search_epochs,
                                    train_seconds=run.meter.seconds.get("supernet_train", 0.0), n=n,
                                    kendall_tau=last["kendall_tau"], kendall_tau_ci_low=last["kendall_tau_ci_low"],
                                    kendall_tau_ci_high=last["kendall_tau_ci_high"]))
    ranking = Ranking(**ev.metrics, archs=[encode(a) for a in ev.sample], proxy=ev.scores, truth=ev.true_acc,
                      extra_proxies=ev.extra, references=ev.references, anytime=anytime,
                      bn_mode=str(cfg.scoring.bn_mode) if plan.method.bn_modes_apply else None)
    selection = {"name": str(cfg.selection.name), **{k: v for k, v in asdict(cfg.selection).items() if k != "name"}}
    found = Found(arch=encode(ev.best), params=round(statistics.fmean(params)), flops=sizes[ev.best][1],
                  net=asdict(net), resolution=side, final_test_acc=mean_acc, final_source=finalists[0].source,
                  final_val_acc=ev.finals[0].get("val_acc"), final_seconds=sum(f.seconds or 0.0 for f in finalists),
                  space_worst_decile_acc=worst_decile(plan.truth), sized_at=sized_at, selection=selection,
                  finalists=finalists, final_test_acc_std=std, final_test_acc_se=se, params_std=spread(params),
                  final_n_images=n_images, anytime_baseline=baseline)
    cost = run.meter.summary()
    return RunRecord(
        record_version=RECORD_VERSION, run_id=plan.run_id, finished_at=datetime.now(timezone.utc).isoformat(),
        config=plan.identity, method=plan.method.name, space=plan.space.name, data=str(data.name),
        budget=cfg.budget.name, seed=cfg.seed, versions=versions(), git_commit=git_commit(),
        execution={"threads": torch.get_num_threads(), "deterministic": cfg.deterministic},
        hashes=Hashes(data_sha256=data.sha256, truth=plan.truth.describe()), cost=cost,
        truth_seconds=ev.truth_seconds, history=run.history, ranking=ranking, found=found, artifacts=artifacts,
        summary=Summary.of(ranking, found, cost), code=plan.code)


# ---- the whole run -------------------------------------------------------------------------------------------------

def run_benchmark(cfg: RunConfig, *, progress: Optional[bool] = None) -> RunRecord:
    plan = plan_run(cfg)
    store, run_id = plan.store, plan.run_id
    store.check_writable(run_id, checkpoint_bytes(plan))  # before any data is read or any epoch trained
    store.check_cache(cfg.execution.cache_dir)
    with store.lock(run_id):  # an identical run in another process waits here, then finds the record below
        for leftover in store.clean_tmp(run_id):
            log.info("removed %s, left half-written by a killed run", leftover)
        if not cfg.execution.force:
            record = store.finished_record(run_id)
            if record is not None and reuse_finished(plan, record):
                return record
        run = prepare(plan)
        train(run, progress)
        evaluation = evaluate(run, progress)
        artifacts = plan.method.artifacts()
        record = build_record(run, evaluation, sorted(f"{name}.json" for name in artifacts))
        path = store.save_record(run_id, record, artifacts)  # a record of other code there is kept beside it
    log.info("wrote %s", path)
    return record


def reuse_finished(plan: RunPlan, record: RunRecord) -> bool:
    """Whether the run's finished record is returned instead of computing: one made by this code always; one made by
    other code, or a legacy one without a fingerprint, only with execution.reuse=stale. Either way a record of other
    code is named in a warning, with its commit and the files that changed."""
    other = difference(record.code, record.git_commit, plan.code)
    if other is None:
        log.info("run %s already finished; returning its record (execution.force=true recomputes)", plan.run_id)
        return True
    if plan.cfg.execution.reuse == Reuse.stale:
        log.warning("run %s already finished, but %s; returning that record, as execution.reuse=stale asks "
                    "(execution.reuse=current recomputes it)", plan.run_id, other)
        return True
    log.warning("run %s has a finished record, but %s; recomputing it (the old record is kept as "
                "record.%s.json; execution.reuse=stale would return it)", plan.run_id, other,
                plan.store.aside_tag(record))
    return False


def precompute_truth(cfg: RunConfig) -> dict[str, Any]:
    """mode=truth: fill the ground-truth cache for this shard of the shared arch sample, so that the methods' runs
    find it ready (n workers with truth_shard=i/n split it). A no-op for tabular truths."""
    index, count = cfg.execution.shard()
    space = get_space(cfg.space.name, cfg.space.params)
    truth = resolve_truth(space, cfg.truth.name, cfg.truth.params, verify=cfg.truth.verify)
    device = resolve_device(cfg.device)
    load_inputs(cfg, space, truth, device, ResultsStore(cfg.execution.results_dir))
    sample = benchmark_sample(space, cfg.seed, cfg.budget.ranking_sample, pool=truth.arch_pool(),
                              truth=truth.name)[index::count]
    start = time.perf_counter()
    accs = truth.accuracies(sample)
    return {"space": space.name, "truth": truth.describe(), "archs": len(sample),
            "seconds": time.perf_counter() - start, "mean_test_acc": sum(accs) / max(len(accs), 1)}
