"""Seaborn figures of one setting, each rendered to a base64 PNG data URI so the HTML report is one self-contained
file (no image files beside it that could go missing)."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Optional

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on CI machines and servers without a display
matplotlib.rcParams["text.parse_math"] = False  # labels are data (a '$' in a hyperparameter is not math text)

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from .comparison import Comparison, prefix_tau  # noqa: E402

DPI = 110


@dataclass
class Figure:
    id: str
    title: str
    caption: str
    data_uri: str


def to_data_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def log_seconds_axis(ax: plt.Axes) -> None:
    """A log x axis labelled in plain numbers at 1, 2 and 5 per decade: math text is off (labels are data), so
    matplotlib's default log labels would print as raw TeX, and a range under two decades would get one label."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def spread_labels(values: list[float], gap: float) -> list[float]:
    """Label heights for sorted-or-not values, each at least `gap` from its neighbours and as close as possible to
    its own value (labels of references with near-equal taus would print over each other)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    wanted = [values[i] for i in order]
    placed = list(wanted)
    for i in range(1, len(placed)):
        placed[i] = max(placed[i], placed[i - 1] + gap)
    clusters, start = [], 0  # runs of labels pushed against each other: each is centred on its own values
    for i in range(1, len(placed) + 1):
        if i == len(placed) or placed[i] - placed[i - 1] > gap * 1.0001:
            clusters.append(range(start, i))
            start = i
    for cluster in clusters:
        shift = sum(placed[i] - wanted[i] for i in cluster) / len(cluster)
        for i in cluster:
            placed[i] -= shift
    for i in range(1, len(placed)):  # a centred cluster may reach the one below it
        placed[i] = max(placed[i], placed[i - 1] + gap)
    heights = [0.0] * len(values)
    for rank, i in enumerate(order):
        heights[i] = placed[rank]
    return heights


def seed_text(seed: object) -> str:
    """A seed as a legend or tick label: long ones shortened (a label wider than the figure is a matplotlib
    error, not a wide legend)."""
    text = str(seed)
    return text if len(text) <= 12 else f"{text[:6]}… ({len(text)} digits)"


def finite_rows(frame: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """The rows whose `columns` are numbers of a drawable size (under 1e100): an infinite or huge value would
    stretch an axis past what matplotlib can lay out."""
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)
    return frame[values.apply(lambda col: col.abs() < 1e100).all(axis=1)]


def _palette(methods: list[str]) -> dict[str, tuple]:
    # one colour per method, stable across the figures of a setting
    return dict(zip(methods, sns.color_palette("tab10", n_colors=max(len(methods), 1)), strict=False))


def proxy_vs_truth(points: pd.DataFrame, slug: str) -> Figure:
    """Per method: each architecture of the shared sample, proxy score against ground truth (one colour per seed)."""
    methods = sorted(points["variant"].unique())
    data = finite_rows(points, "truth", "proxy").assign(seed=points["seed"].map(seed_text))
    grid = sns.relplot(data=data, x="truth", y="proxy", col="variant", col_order=methods, hue="seed",
                       col_wrap=min(3, len(methods)), height=3.0, aspect=1.1, s=28,
                       facet_kws={"sharey": False, "sharex": True})
    grid.set_axis_labels("ground truth (%: accuracy, or a multi-exit arch's anytime AUC)", "proxy score")
    grid.set_titles("{col_name}")
    return Figure(id=f"{slug}-scatter", title="Proxy score vs ground truth",
                  caption="Each point is one architecture of the shared ranking sample (identical for every method); "
                          "a perfect proxy is monotone increasing.",
                  data_uri=to_data_uri(grid.figure))


def cost_vs_accuracy(runs: pd.DataFrame, slug: str) -> Figure:
    """Search cost (device-seconds, log scale) against final accuracy of the found architecture, per run."""
    methods = sorted(runs["variant"].unique())
    runs = finite_rows(runs, "search_seconds", "final_test_acc")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sns.scatterplot(data=runs, x="search_seconds", y="final_test_acc", hue="variant", hue_order=methods,
                    palette=_palette(methods), s=70, ax=ax)
    costs = runs["search_seconds"][runs["search_seconds"] > 0]
    if len(costs) and costs.max() / costs.min() >= 10:  # a log axis only where it spans a decade
        log_seconds_axis(ax)
        ax.set_xlabel("search cost (device-seconds, log scale)")
    else:
        ax.set_xlabel("search cost (device-seconds)")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(title="method", fontsize=8, title_fontsize=9, loc="best")
    return Figure(id=f"{slug}-cost", title="Search cost vs final accuracy",
                  caption="Search cost excludes the final evaluation; up and to the left is better.",
                  data_uri=to_data_uri(fig))


def kendall_beside_references(comparison: Comparison, slug: str) -> Figure:
    """Every ranking's Kendall tau with its 95% interval, methods by seed, then the references (grey)."""
    entries = sorted(comparison.entries, key=lambda e: (e.kind != "method", e.label, e.seed))
    colors = _palette(sorted({e.label for e in entries if e.kind == "method"}))
    fig, ax = plt.subplots(figsize=(7.2, 0.36 * len(entries) + 1.4))
    for i, e in enumerate(entries):
        color = colors.get(e.label, (0.45, 0.45, 0.45))
        lo, hi = e.metrics.kendall_tau_ci_low, e.metrics.kendall_tau_ci_high
        if pd.notna(lo) and pd.notna(hi):
            ax.plot([lo, hi], [i, i], color=color, linewidth=2)
        ax.plot([e.metrics.kendall_tau], [i], "D" if e.kind == "reference" else "o", color=color, markersize=6)
    for best in comparison.best_reference.values():
        ax.axvline(best.metrics.kendall_tau, color="grey", linewidth=0.8, linestyle=":")
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(entries)), [f"{e.label} (seed {seed_text(e.seed)})" for e in entries], fontsize=8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Kendall tau (ranking vs ground truth), 95% bootstrap CI")
    ax.invert_yaxis()
    return Figure(id=f"{slug}-kendall", title="Ranking correlation beside the references",
                  caption="Circles: methods; grey diamonds: references that need no training (parameter count, "
                          "FLOPs, zero-cost proxies) on the same sample. Dotted lines: the best reference of each "
                          "seed. A method whose interval ends left of its seed's dotted line ranks worse than "
                          "counting parameters; intervals that overlap cannot be told apart.",
                  data_uri=to_data_uri(fig))


def anytime_curves(comparison: Comparison, slug: str) -> Optional[Figure]:
    """Kendall tau against training device-seconds for every run with an anytime curve, with the references (mean
    over seeds) as horizontal lines; None when no run of the setting has a curve."""
    rows = [{"variant": e.label, "seed": e.seed, "seconds": p.train_seconds, "tau": p.kendall_tau}
            for e in comparison.entries if e.record is not None for p in e.record.ranking.anytime]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    methods = sorted(data["variant"].unique())
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    sns.lineplot(data=data, x="seconds", y="tau", hue="variant", hue_order=methods, units="seed", estimator=None,
                 marker="o", palette=_palette(methods), ax=ax)
    sizes = [e.record.ranking.anytime[0].n for e in comparison.entries if e.record is not None
             and e.record.ranking.anytime]
    n = max(set(sizes), key=sizes.count)  # the curves' archs: the first n of each seed's sample
    references: dict[str, list[float]] = {}
    for e in comparison.references:
        references.setdefault(e.label.split(": ")[-1], []).append(prefix_tau(e, n))
    best = max(references, key=lambda n: sum(references[n]) / len(references[n])) if references else None
    names = sorted(references)
    means = [sum(references[name]) / len(references[name]) for name in names]
    for name, tau in zip(names, means, strict=True):
        ax.axhline(tau, color="black" if name == best else "grey", linewidth=1.2 if name == best else 0.7,
                   linestyle="--" if name == best else ":")
    low, high = ax.get_ylim()
    for name, tau, height in zip(names, means, spread_labels(means, gap=(high - low) * 0.045), strict=True):
        ax.annotate(f"{name} {tau:.2f}", xy=(1.0, tau), xycoords=("axes fraction", "data"), xytext=(1.01, height),
                    textcoords=("axes fraction", "data"), fontsize=7, va="center",
                    color="black" if name == best else "grey")
    ax.set_ylim(low, high)
    if data["seconds"].max() / max(data["seconds"][data["seconds"] > 0].min(), 1e-9) >= 10:
        log_seconds_axis(ax)
        ax.set_xlabel("training device-seconds (log scale)")
    else:
        ax.set_xlabel("training device-seconds")
    ax.set_ylabel(f"Kendall tau on the first {n} archs of the shared sample")
    # below the axes: inside, the legend would cover the reference lines and the curves
    ax.legend(title="method (one line per seed)", fontsize=7, title_fontsize=8, loc="upper center",
              bbox_to_anchor=(0.5, -0.16), ncol=min(len(methods), 4), frameon=False)
    return Figure(id=f"{slug}-anytime", title="Anytime ranking: Kendall tau against training time",
                  caption=f"Each line is one run: its ranking of the first {n} archs of the shared sample "
                          f"(budget.anytime_sample) after every budget.ranking_every epochs (scoring time excluded "
                          f"from the axis), ending at its final ranking. Horizontal lines: references that need no "
                          f"training on the same archs (mean over seeds; the dashed black one is the best). A "
                          f"method is worth its training time only where its line rises above the dashed line, "
                          f"and above 0 where the dashed line is below it (every reference ranking at or below "
                          f"chance).",
                  data_uri=to_data_uri(fig))


# What the GHN paper shows for anytime prediction (Sec. 5.2, Figure 3): a plot without printed numbers, so no
# point of it is drawn here; its finding is compared in words.
PAPER_ANYTIME_FINDING = ("GHN paper (Figure 3, CIFAR-10): the GHN-searched anytime network's accuracy-FLOPs curve "
                         "lies above MSDNet's and above ensembles of ResNets and DenseNets over the whole FLOPs range. "
                         "The paper prints no numbers for it and its points cannot be read reliably from the figure, "
                         "so none are drawn; compare qualitatively: a found curve should lie above the baseline's.")


def _step_curve(ax: plt.Axes, anytime: dict, **style) -> None:
    """An anytime curve as the step function its AUC integrates: chance until the first classifier, then each
    classifier's accuracy until the next, up to the budget range's end; a marker at each classifier."""
    xs = [0.0, *anytime["exit_flops"], anytime["max_flops"]]
    ys = [anytime["chance_acc"], *anytime["exit_acc"], anytime["exit_acc"][-1]]
    ax.step(xs, ys, where="post", **style)
    ax.plot(anytime["exit_flops"], anytime["exit_acc"], linestyle="none", marker="o", markersize=3,
            color=style.get("color"))


def anytime_prediction_curves(comparison: Comparison, slug: str) -> Optional[Figure]:
    """Multi-exit spaces: each found arch's test accuracy at every classifier against the cumulative FLOPs there,
    beside the space's hand-designed baseline trained with the same final protocol and seed; None when no run of the
    setting has such a curve."""
    runs = [e for e in comparison.entries if e.kind == "method" and e.record is not None
            and e.record.found.finalists and e.record.found.finalists[0].anytime is not None]
    if not runs:
        return None
    methods = sorted({e.label for e in runs})
    palette = _palette(methods)
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    rows, baselines = [], {}
    for e in sorted(runs, key=lambda e: (e.label, e.seed)):
        found = e.record.found
        curve = found.finalists[0].anytime
        _step_curve(ax, curve, color=palette[e.label], linewidth=1.2, alpha=0.85,
                    label=e.label if e.label not in {r[0] for r in rows} else None)
        rows.append((e.label, e.seed, curve["anytime_auc"], len(curve["exit_acc"])))
        if found.anytime_baseline is not None:
            baselines.setdefault(e.seed, found.anytime_baseline)
    for k, (_seed, base) in enumerate(sorted(baselines.items())):
        _step_curve(ax, base["anytime"], color="black", linestyle="--", linewidth=1.0,
                    label=f"hand-designed baseline {base['arch']}" if k == 0 else None)
    ax.set_xlabel("cumulative FLOPs per image at the classifier (multiply-add = 2)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    aucs = "; ".join(f"{label} seed {seed}: AUC {auc:.2f} ({n} exits)" for label, seed, auc, n in rows)
    base_aucs = "; ".join(f"seed {seed}: AUC {b['anytime']['anytime_auc']:.2f} ({len(b['anytime']['exit_acc'])} "
                          f"exits)" for seed, b in sorted(baselines.items()))
    return Figure(id=f"{slug}-anytime-prediction",
                  title="Anytime prediction: accuracy at each classifier against FLOPs",
                  caption=f"Each coloured line is one run's found arch (one per seed), the dashed black line the "
                          f"hand-designed baseline trained with the same final protocol and seed. A net answers with "
                          f"the last classifier it has reached, chance before the first; the AUC is the mean of that "
                          f"step curve over budgets from 0 to the largest arch's cost (oneshot_bench.exits). Found: "
                          f"{aucs}. Baseline: {base_aucs or 'not recorded'}. {PAPER_ANYTIME_FINDING}",
                  data_uri=to_data_uri(fig))


def setting_figures(runs: pd.DataFrame, points: pd.DataFrame, comparison: Comparison, slug: str) -> list[Figure]:
    with sns.axes_style("whitegrid"):
        figures = [proxy_vs_truth(points, slug), cost_vs_accuracy(runs, slug),
                   kendall_beside_references(comparison, slug)]
        anytime = anytime_curves(comparison, slug)
        prediction = anytime_prediction_curves(comparison, slug)
    return figures + [f for f in (anytime, prediction) if f is not None]
