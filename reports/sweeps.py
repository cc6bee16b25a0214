"""The report's view of hyperparameter sweeps: each study's trial table, and its Pareto front (multi-objective) or
its best-so-far curve (one objective), from the summaries that sweep workers write to `results/sweeps/<study>.json`
(evaluators/sweep.py). A malformed summary is skipped with a warning naming its file, like a malformed record.

What the best trial means is said across seeds (evaluators.verdict): a trial is one run on one seed, so "best" is
the highest value the sampler found, "one seed: no verdict across training runs". Where the study searched `seed`
too, the trials of one configuration are its seeds: the best configuration (by mean) is compared with the
runner-up over their common seeds, and called better only when that holds (3 seeds at least)."""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from evaluators.sweep import SWEEPS_DIR, params_text
from evaluators.verdict import MIN_SEEDS, ONE_SEED, SeedValue, adjust_family, paired_over_seeds
from oneshot_bench.atomic import read_json

from . import formatting as fmt
from .figures import Figure, to_data_uri

log = logging.getLogger("oneshot_bench")


@dataclass
class TrialRow:
    number: int
    state: str
    values: list[str]  # one per objective, formatted ("" without values)
    params: str
    note: str  # Pareto-optimal / best, retry of n, surplus
    run_id: str


@dataclass
class StudyView:
    id: str
    title: str
    setting: str
    objectives: list[str]  # "kendall_tau (maximize)"
    counts: str  # "20 COMPLETE of 20 requested; 1 FAIL; 1 PRUNED"
    verdict: str  # what the best trial (or the front) supports across seeds
    rows: list[TrialRow]
    figure: Optional[Figure]


def load_summaries(results_dir: str | Path) -> list[dict[str, Any]]:
    summaries = []
    for path in sorted(Path(results_dir).glob(f"{SWEEPS_DIR}/*.json")):
        try:
            data = read_json(path)  # bounded: a hostile summary is skipped like a malformed one
            check_summary(data)
            summaries.append(data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            log.warning("skipping sweep summary %s: %s", path, e)
    return summaries


def check_summary(data: Any) -> None:
    """ValueError unless `data` has the shape evaluators/sweep.py writes (the report reads nothing else)."""
    if not isinstance(data, dict) or not isinstance(data.get("study_name"), str):
        raise ValueError("not a sweep summary (no study_name)")
    objectives = data.get("objectives")
    if not isinstance(objectives, list) or not objectives or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) and o.get("direction") in ("maximize", "minimize")
            for o in objectives):
        raise ValueError("`objectives` must be a list of {name, direction}")
    if not isinstance(data.get("trials"), list):
        raise ValueError("`trials` must be a list")
    for t in data["trials"]:
        if not isinstance(t, dict) or not isinstance(t.get("number"), int) or not isinstance(t.get("state"), str) \
                or not isinstance(t.get("params"), dict):
            raise ValueError(f"malformed trial {t!r:.80}")
        values = t.get("values")
        if values is not None and (not isinstance(values, list) or len(values) != len(objectives)
                                   or not all(isinstance(v, (int, float)) for v in values)):
            raise ValueError(f"trial {t['number']} has values {values!r:.80} for {len(objectives)} objectives")


def study_view(summary: dict[str, Any]) -> StudyView:
    objectives = [o["name"] for o in summary["objectives"]]
    directions = {o["name"]: o["direction"] for o in summary["objectives"]}
    trials = sorted(summary["trials"], key=lambda t: t["number"])
    single = len(objectives) == 1
    rows = []
    for t in trials:
        notes = []
        if t.get("pareto_optimal"):
            notes.append(("best" if single else "Pareto-optimal") + f" ({ONE_SEED})")
        if t.get("retry_of") is not None:
            notes.append(f"retry of trial {t['retry_of']}")
        if t.get("surplus"):
            notes.append("surplus (quota already met)")
        rows.append(TrialRow(
            number=t["number"], state=t["state"], values=[fmt.significant(v) for v in t["values"]] if t.get("values")
            else [""] * len(objectives),
            params=params_text(dict(sorted(t["params"].items()))),
            note=", ".join(notes), run_id=t.get("run_id") or ""))
    states = pd.Series([t["state"] for t in trials], dtype=object).value_counts()
    counts = [f"{states.get('COMPLETE', 0)} COMPLETE of {summary.get('n_trials', '?')} requested"]
    counts += [f"{n} {state}" for state, n in states.items() if state != "COMPLETE"]
    setting = summary.get("setting", {})
    sid = "sweep-" + re.sub(r"[^a-z0-9]+", "-", summary["study_name"].lower()).strip("-")
    complete = [t for t in trials if t["state"] == "COMPLETE" and t.get("values")
                and all(math.isfinite(v) for v in t["values"])]
    figure = None
    if complete:
        figure = (best_so_far(complete, objectives[0], directions[objectives[0]], sid) if single
                  else pareto_front(complete, objectives, directions, sid))
    return StudyView(
        id=sid, title=f"Sweep {summary['study_name']}",
        setting=", ".join(f"{k}={v}" for k, v in setting.items()) + f"; storage {summary.get('storage', '?')}",
        objectives=[f"{name} ({directions[name]})" for name in objectives], counts="; ".join(counts),
        verdict=best_statement(summary, complete, objectives, directions), rows=rows, figure=figure)


def _config(trial: dict[str, Any]) -> tuple:
    """A trial's configuration: its values without the seed (a study that searches `seed` repeats configurations)."""
    return tuple(sorted((k, str(v)) for k, v in trial["params"].items() if k != "seed"))


def best_statement(summary: dict[str, Any], complete: list[dict[str, Any]], objectives: list[str],
                   directions: dict[str, str]) -> str:
    """What the study's best trial supports: across seeds where configurations have several, else one seed's."""
    if not complete:
        return ""
    if len(objectives) > 1:
        return (f"Each Pareto-optimal trial is one run on one seed ({ONE_SEED}): the front shows what the sampler "
                f"found, not an ordering of configurations.")
    name, sign = objectives[0], (1.0 if directions[objectives[0]] == "maximize" else -1.0)
    default_seed = summary.get("setting", {}).get("seed", 0)
    configs: dict[tuple, dict[int, float]] = {}
    for t in complete:
        configs.setdefault(_config(t), {})[int(t["params"].get("seed", default_seed))] = float(t["values"][0])
    ranked = sorted(configs.items(), key=lambda item: -sign * sum(item[1].values()) / len(item[1]))
    (best, best_seeds), rest = ranked[0], ranked[1:]
    best_text = params_text(dict(best)) or "its values"
    if len(best_seeds) < MIN_SEEDS:
        why = ONE_SEED if len(best_seeds) == 1 else (f"{len(best_seeds)} seeds, a verdict needs at least "
                                                     f"{MIN_SEEDS}")
        return (f"The best configuration ({best_text}) rests on {len(best_seeds)} run(s): {why}. It is the best "
                f"{name} the sampler found, not a configuration shown to be better than the others.")
    if not rest:
        return f"Only one configuration ({best_text}) completed: nothing to compare it with."
    runner, runner_seeds = rest[0]
    verdict = paired_over_seeds([SeedValue(s, sign * v) for s, v in best_seeds.items()],
                                [SeedValue(s, sign * v) for s, v in runner_seeds.items()], metric=name)
    adjust_family([verdict])
    held = "holds" if verdict.winner == "a" else "does not hold"
    return (f"Best configuration by mean {name} over {len(best_seeds)} seeds: {best_text}. Against the runner-up "
            f"({params_text(dict(runner)) or 'its values'}), its advantage {held} across seeds: "
            f"{verdict.interval_text(4)} (positive: better, {'higher' if sign > 0 else 'lower'} {name}; "
            f"{verdict.status_text()}).")


def pareto_front(trials: list[dict[str, Any]], objectives: list[str], directions: dict[str, str],
                 sid: str) -> Figure:
    """The first two objectives of every COMPLETE trial; the Pareto-optimal ones (over all objectives, as Optuna
    computed them) joined as a staircase."""
    x_name, y_name = objectives[:2]
    frame = pd.DataFrame({x_name: [t["values"][0] for t in trials], y_name: [t["values"][1] for t in trials],
                          "trial": [t["number"] for t in trials],
                          "Pareto-optimal": ["yes" if t.get("pareto_optimal") else "no" for t in trials]})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    sns.scatterplot(data=frame, x=x_name, y=y_name, hue="Pareto-optimal", hue_order=["yes", "no"],
                    palette={"yes": "#c0392b", "no": "#95a5a6"}, s=70, ax=ax)
    front = frame[frame["Pareto-optimal"] == "yes"].sort_values(x_name)
    if len(front) > 1:
        # the edge of the region the front dominates: going right along x, the step comes first where x is
        # maximized (the next point's y already holds) and last where x is minimized
        where = "pre" if directions[x_name] == "maximize" else "post"
        ax.step(front[x_name], front[y_name], where=where, color="#c0392b", linewidth=1.2, alpha=0.7)
    for (x, y), same in frame.groupby([x_name, y_name])["trial"]:  # trials that repeat a run share one point
        ax.annotate(", ".join(str(n) for n in sorted(same)), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize=7, color="#555555")
    arrow = {"maximize": "higher is better", "minimize": "lower is better"}
    ax.set_xlabel(f"{x_name} ({arrow[directions[x_name]]})")
    ax.set_ylabel(f"{y_name} ({arrow[directions[y_name]]})")
    ax.legend(title="Pareto-optimal", fontsize=8, title_fontsize=9, loc="best")
    more = f" The study has {len(objectives)} objectives; this plane shows the first two." \
        if len(objectives) > 2 else ""
    return Figure(id=f"{sid}-pareto", title="Pareto front",
                  caption=f"Every COMPLETE trial (numbered; trials that repeated a run share its point); red: not "
                          f"dominated by any other trial, joined along the edge of the region they dominate.{more}",
                  data_uri=to_data_uri(fig))


def best_so_far(trials: list[dict[str, Any]], name: str, direction: str, sid: str) -> Figure:
    frame = pd.DataFrame({"trial": [t["number"] for t in trials], name: [t["values"][0] for t in trials]})
    frame = frame.sort_values("trial")
    best = frame[name].cummax() if direction == "maximize" else frame[name].cummin()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    sns.scatterplot(data=frame, x="trial", y=name, color="#7f8c8d", s=50, ax=ax, label="trial")
    ax.step(frame["trial"], best, where="post", color="#2c3e50", label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"{name} ({direction})")
    ax.legend(fontsize=8, loc="best")
    return Figure(id=f"{sid}-history", title="Optimization history",
                  caption=f"{name} of every COMPLETE trial, and the best so far.", data_uri=to_data_uri(fig))


def build_studies(results_dir: str | Path) -> list[StudyView]:
    return [study_view(s) for s in load_summaries(results_dir)]
