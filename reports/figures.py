"""Seaborn figures of one setting, each rendered to a base64 PNG data URI so the HTML report is one self-contained
file (no image files beside it that could go missing)."""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless: reports are built on CI machines and servers without a display
matplotlib.rcParams["text.parse_math"] = False  # labels are data (a '$' in a hyperparameter is not math text)

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

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


def _palette(methods: list[str]) -> dict[str, tuple]:
    # one colour per method, stable across the figures of a setting
    return dict(zip(methods, sns.color_palette("tab10", n_colors=max(len(methods), 1)), strict=False))


def proxy_vs_truth(points: pd.DataFrame, slug: str) -> Figure:
    """Per method: each architecture of the shared sample, proxy score against ground truth (one colour per seed)."""
    methods = sorted(points["variant"].unique())
    data = points.assign(seed=points["seed"].astype(str))
    grid = sns.relplot(data=data, x="truth", y="proxy", col="variant", col_order=methods, hue="seed",
                       col_wrap=min(3, len(methods)), height=3.0, aspect=1.1, s=28,
                       facet_kws={"sharey": False, "sharex": True})
    grid.set_axis_labels("ground-truth accuracy (%)", "proxy score")
    grid.set_titles("{col_name}")
    return Figure(id=f"{slug}-scatter", title="Proxy score vs ground truth",
                  caption="Each point is one architecture of the shared ranking sample (identical for every method); "
                          "a perfect proxy is monotone increasing.",
                  data_uri=to_data_uri(grid.figure))


def cost_vs_accuracy(runs: pd.DataFrame, slug: str) -> Figure:
    """Search cost (device-seconds, log scale) against final accuracy of the found architecture, per run."""
    methods = sorted(runs["variant"].unique())
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    sns.scatterplot(data=runs, x="search_seconds", y="final_test_acc", hue="variant", hue_order=methods,
                    palette=_palette(methods), s=70, ax=ax)
    costs = runs["search_seconds"][runs["search_seconds"] > 0]
    if len(costs) and costs.max() / costs.min() >= 10:  # a log axis only where it has a labelled decade
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a wide log range overlap each other
        ax.set_xlabel("search cost (device-seconds, log scale)")
    else:
        ax.set_xlabel("search cost (device-seconds)")
    ax.set_ylabel("final test accuracy (%)")
    ax.legend(title="method", fontsize=8, title_fontsize=9, loc="best")
    return Figure(id=f"{slug}-cost", title="Search cost vs final accuracy",
                  caption="Search cost excludes the final evaluation; up and to the left is better.",
                  data_uri=to_data_uri(fig))


def kendall_with_ci(runs: pd.DataFrame, slug: str) -> Figure:
    """Kendall tau of every run with its 95% bootstrap interval."""
    runs = runs.sort_values(["method", "variant", "seed"]).reset_index(drop=True)
    labels = [f"{m} (seed {s})" for m, s in zip(runs["variant"], runs["seed"], strict=True)]
    colors = _palette(sorted(runs["variant"].unique()))
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(runs) + 1.2))
    for i, r in runs.iterrows():
        lo, hi = r["kendall_tau_ci_low"], r["kendall_tau_ci_high"]
        if pd.notna(lo) and pd.notna(hi):
            ax.plot([lo, hi], [i, i], color=colors[r["variant"]], linewidth=2)
        ax.plot([r["kendall_tau"]], [i], "o", color=colors[r["variant"]], markersize=7)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_yticks(range(len(runs)), labels)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Kendall tau (proxy vs ground truth), 95% bootstrap CI")
    ax.invert_yaxis()
    return Figure(id=f"{slug}-kendall", title="Ranking correlation with confidence intervals",
                  caption="Intervals wider than the gap between two methods mean the sample cannot tell them apart.",
                  data_uri=to_data_uri(fig))


def setting_figures(runs: pd.DataFrame, points: pd.DataFrame, slug: str) -> list[Figure]:
    with sns.axes_style("whitegrid"):
        return [proxy_vs_truth(points, slug), cost_vs_accuracy(runs, slug), kendall_with_ci(runs, slug)]
