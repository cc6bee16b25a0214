"""One benchmark run: the same phases, arch sample, metrics and cost accounting for every method.

    plan = plan_run(cfg)                 # everything that needs no data: space, method, truth, device, identity
    run = prepare(plan)                  # data, networks, ground truth bound, method set up (resumed if possible)
    train(run)                           # search epochs, a checkpoint after each ("supernet_train" phase)
    evaluation = evaluate(run)           # score the shared sample ("ranking"), derive, final accuracy ("final")
    record = build_record(run, evaluation, artifacts)

Each phase is timed in device-seconds. Ground-truth work for the ranking sample is timed separately and never
charged to a method. `run_benchmark` runs the whole sequence and stores the record.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch
from tqdm.auto import tqdm

from methods.base import Method, SearchContext, get_method
from oneshot_bench.config import NetConfig, RunConfig, nets_for
from oneshot_bench.data import DataBundle, load_data
from oneshot_bench.device import configure_torch, resolve_device
from oneshot_bench.errors import ConfigError
from oneshot_bench.measure import count_flops, count_params
from search_spaces.base import Arch, SearchSpace, get_space

from .cost import CostMeter
from .environment import git_commit, versions
from .ranking import ranking_metrics
from .record import RECORD_VERSION, ExtraProxy, Found, Hashes, Ranking, RunRecord, Summary
from .sample import benchmark_sample
from .store import ResultsStore, run_id_for
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
    identity: dict[str, Any]  # the resolved configuration without the execution group
    run_id: str


def identity_of(cfg: RunConfig, method: Method, truth: GroundTruth, device: torch.device) -> dict[str, Any]:
    """A run's identity: the whole configuration except `execution`, with the method's hyperparameters and the
    truth source resolved (defaults filled in, so the run id changes when a default does) and the device reduced to
    its type (cuda:0 and cuda:1 measure the same thing)."""
    config = asdict(cfg)
    del config["execution"]
    config["method"]["params"] = method.hparams_dict()
    config["truth"] = truth.identity()
    config["device"] = device.type
    return json.loads(json.dumps(config, default=str))  # plain JSON values (choices as their names)


def plan_run(cfg: RunConfig) -> RunPlan:
    """Validate the method on the space, its hyperparameters, the truth source and the device; no data is read."""
    space = get_space(cfg.space.name, cfg.space.params)
    method = get_method(cfg.method.name, cfg.method.params)
    method.check_supports(space)
    truth = resolve_truth(space, cfg.truth.name, cfg.truth.params)
    if truth.arch_pool() is not None and not method.draws_candidates:
        raise ConfigError(f"truth {truth.name!r} covers only {len(truth.arch_pool())} archs of space {space.name!r}, "
                          f"and method {method.name!r} derives archs outside any given set (evolution, argmax or a "
                          f"controller), so its final accuracy could not be looked up; use truth=trained.")
    device = resolve_device(cfg.device)
    identity = identity_of(cfg, method, truth, device)
    return RunPlan(cfg, space, method, truth, device, ResultsStore(cfg.execution.results_dir), identity,
                   run_id_for(identity))


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


def prepare(plan: RunPlan) -> PreparedRun:
    cfg = plan.cfg
    data, net, final_net = load_inputs(cfg, plan.space, plan.truth, plan.device, plan.store)
    run = PreparedRun(plan, data, net, final_net, CostMeter(plan.device))
    plan.method.setup(SearchContext(space=plan.space, data=data, budget=cfg.budget, device=plan.device, seed=cfg.seed,
                                    net=net, final_net=final_net, arch_pool=plan.truth.arch_pool()))
    checkpoint = (plan.store.load_checkpoint(plan.run_id) if cfg.execution.resume and not cfg.execution.force
                  else None)
    if checkpoint is not None:
        plan.method.load_state_dict(checkpoint["method"])
        run.meter.seconds, run.history = checkpoint["seconds"], checkpoint["history"]
        run.start_epoch = checkpoint["epoch"] + 1
        torch.set_rng_state(checkpoint["torch_rng"])
        log.info("resuming run %s after epoch %d", plan.run_id, checkpoint["epoch"])
    return run


# ---- train ---------------------------------------------------------------------------------------------------------

def train(run: PreparedRun, progress: Optional[bool] = None) -> None:
    plan, budget = run.plan, run.plan.cfg.budget
    method = plan.method
    for epoch in tqdm(range(run.start_epoch, budget.search_epochs), desc=f"{method.name} search",
                      disable=progress is False or None, initial=run.start_epoch, total=budget.search_epochs):
        with run.meter.phase("supernet_train"):
            run.history.append({"epoch": epoch, **method.train_epoch(epoch)})
        plan.store.save_checkpoint(plan.run_id, {
            "method": method.state_dict(), "seconds": dict(run.meter.seconds), "history": run.history,
            "epoch": epoch, "torch_rng": torch.get_rng_state()})


# ---- evaluate ------------------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    sample: list[Arch]
    scores: list[float]
    true_acc: list[float]
    truth_seconds: float
    metrics: dict[str, float]
    extra: dict[str, ExtraProxy]
    best: Arch
    final: dict[str, Any]


def evaluate(run: PreparedRun) -> Evaluation:
    plan, budget, seed = run.plan, run.plan.cfg.budget, run.plan.cfg.seed
    method, truth = plan.method, plan.truth
    sample = benchmark_sample(plan.space, seed, budget.ranking_sample, pool=truth.arch_pool(), truth=truth.name)
    with run.meter.phase("ranking"):
        scores = [float(s) for s in method.score(sample)]
    truth_start = time.perf_counter()
    true_acc = truth.accuracies(sample)
    truth_seconds = time.perf_counter() - truth_start  # reference work, not charged to the method
    metrics = ranking_metrics(scores, true_acc, resamples=budget.bootstrap_resamples, seed=seed)
    extra = {name: ExtraProxy(**ranking_metrics(values, true_acc, resamples=budget.bootstrap_resamples, seed=seed),
                              proxy=[float(v) for v in values])
             for name, values in method.extra_scores.items()}
    with run.meter.phase("derive"):
        best = method.derive()
    with run.meter.phase("final"):
        final = truth.final_accuracy(best)
    # a retrain served from the cache (another method found the same arch) still costs its original training time
    run.meter.seconds["final"] = max(run.meter.seconds["final"], final.get("seconds", 0.0))
    return Evaluation(sample, scores, true_acc, truth_seconds, metrics, extra, best, final)


# ---- build the record ----------------------------------------------------------------------------------------------

def worst_decile(truth: GroundTruth) -> Optional[float]:
    """10% quantile of the true accuracy over everything the truth covers (tabular truths only)."""
    table = truth.all_accuracies()
    return float(pd.Series(list(table.values())).quantile(0.1)) if table else None


def build_record(run: PreparedRun, ev: Evaluation, artifacts: list[str]) -> RunRecord:
    plan, cfg, data = run.plan, run.plan.cfg, run.data
    best_net = plan.space.build_standalone(ev.best, run.final_net).to(plan.device)
    ranking = Ranking(**ev.metrics, archs=[plan.space.encode(a) for a in ev.sample], proxy=ev.scores,
                      truth=ev.true_acc, extra_proxies=ev.extra)
    found = Found(arch=plan.space.encode(ev.best), params=count_params(best_net),
                  flops=count_flops(best_net, data.in_channels, data.resolution), net=asdict(run.final_net),
                  resolution=data.resolution, space_worst_decile_acc=worst_decile(plan.truth),
                  **{f"final_{k}": v for k, v in ev.final.items()})
    cost = run.meter.summary()
    return RunRecord(
        record_version=RECORD_VERSION, run_id=plan.run_id, finished_at=datetime.now(timezone.utc).isoformat(),
        config=plan.identity, method=plan.method.name, space=plan.space.name, data=str(data.name),
        budget=cfg.budget.name, seed=cfg.seed, versions=versions(), git_commit=git_commit(),
        execution={"threads": torch.get_num_threads(), "deterministic": cfg.deterministic},
        hashes=Hashes(data_sha256=data.sha256, truth=plan.truth.describe()), cost=cost,
        truth_seconds=ev.truth_seconds, history=run.history, ranking=ranking, found=found, artifacts=artifacts,
        summary=Summary.of(ranking, found, cost))


# ---- the whole run -------------------------------------------------------------------------------------------------

def run_benchmark(cfg: RunConfig, *, progress: Optional[bool] = None) -> RunRecord:
    plan = plan_run(cfg)
    if plan.store.has_record(plan.run_id) and not cfg.execution.force:
        log.info("run %s already finished; returning its record (force=true recomputes)", plan.run_id)
        return plan.store.load_record(plan.run_id)
    run = prepare(plan)
    train(run, progress)
    evaluation = evaluate(run)
    artifacts = plan.method.artifacts()
    for name, content in artifacts.items():
        plan.store.write_artifact(plan.run_id, name, content)
    record = build_record(run, evaluation, sorted(f"{name}.json" for name in artifacts))
    path = plan.store.save_record(plan.run_id, record)
    log.info("wrote %s", path)
    return record


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise ConfigError(f"execution.truth_shard={text!r} is not of the form i/n with 0 <= i < n (e.g. "
                          f"execution.truth_shard=1/2).")
    return index, count


def precompute_truth(cfg: RunConfig) -> dict[str, Any]:
    """mode=truth: fill the ground-truth cache for this shard of the shared arch sample, so that the methods' runs
    find it ready (n workers with truth_shard=i/n split it). A no-op for tabular truths."""
    index, count = parse_shard(cfg.execution.truth_shard)
    space = get_space(cfg.space.name, cfg.space.params)
    truth = resolve_truth(space, cfg.truth.name, cfg.truth.params)
    device = resolve_device(cfg.device)
    load_inputs(cfg, space, truth, device, ResultsStore(cfg.execution.results_dir))
    sample = benchmark_sample(space, cfg.seed, cfg.budget.ranking_sample, pool=truth.arch_pool(),
                              truth=truth.name)[index::count]
    start = time.perf_counter()
    accs = truth.accuracies(sample)
    return {"space": space.name, "truth": truth.describe(), "archs": len(sample),
            "seconds": time.perf_counter() - start, "mean_test_acc": sum(accs) / max(len(accs), 1)}
