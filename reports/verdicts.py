"""`python -m reports.verdicts --results DIR [--out verdicts.md]`: what a results store supports, as Markdown.

Per setting, the report's headline sentence, every ordering that holds across training seeds with its interval,
and every unresolved pair with the seeds a difference of its size would need (reports.evidence); nothing is
retrained. For notes, reviews and diffs between two versions of the verdict rule.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from evaluators.verdict import MAX_SEEDS

from .build import build_settings
from .evidence import PER_SEED_LABEL
from .markdown_cli import bad_paths, emit, refuse
from .records import load_records, points_frame, runs_frame


def render(results_dir: str | Path) -> str:
    records = load_records(results_dir)
    if not records:
        return f"No finished records under {results_dir}.\n"
    lines = []
    for s in build_settings(runs_frame(records), points_frame(records), records):
        e, h = s.evidence, s.headline
        lines += [f"## {s.title}", "", h.sentence, ""]
        if h.reference:
            lines += [f"Best free reference on the same samples: {h.reference.text}.", ""]
        lines += ["Methods by mean Kendall tau: " + "; ".join(f"{m.label} {m.kendall}" for m in h.methods) + ".", ""]
        if e.family:
            lines += [f"Family: {e.family}.", ""]
        if e.claims:
            lines += ["Orderings that hold across seeds (mean tau difference [95% t-interval], adjusted p):", ""]
            lines += [f"- {p.a} over {p.b}: {p.verdict.interval_text()}, p = {p.verdict.p_adjusted:.3g}"
                      for p in e.claims]
            lines.append("")
        if e.untested_reason:
            lines += [e.untested_reason, ""]
        if e.unresolved or e.untested:
            alphas = sorted({p.verdict.seeds_needed.alpha for p in (*e.unresolved, *e.untested)
                             if p.verdict.seeds_needed is not None})
            lines += [f"Unresolved pairs. Seeds needed: seeds per method for a paired t-test at 80% power and alpha "
                      f"{', '.join(f'{a:.2g}' for a in alphas) or '—'} (the level this family's correction asks of its "
                      f"next ordering), from the observed mean difference and between-seed sd: an estimate from few "
                      f"seeds.", "",
                      "| pair (higher mean first) | mean tau difference [95% CI, before the correction] | "
                      "adjusted p (the verdict) | seeds needed |",
                      "| --- | --- | --- | --- |"]
            for p in (*e.unresolved, *e.untested):
                needed = p.verdict.seeds_needed
                seeds = ("—" if needed is None else f"{needed.n}" if needed.n is not None
                         else f"> {MAX_SEEDS} (not resolvable at this budget)")
                p_text = f"{p.verdict.p_adjusted:.3g}" if p.verdict.tested else "not tested"
                lines.append(f"| {p.a} / {p.b} | {p.verdict.interval_text()} | {p_text} | {seeds} |")
            lines.append("")
        lines += [f"{len(e.per_seed)} per-seed interval(s) exclude 0: {PER_SEED_LABEL}, "
                  f"not counted as verdicts.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.verdicts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="a results store (run.py's execution.results_dir)")
    parser.add_argument("--out", help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    problem = bad_paths({"--results": args.results}, args.out)
    return refuse(problem) if problem else emit(render(args.results), args.out)


if __name__ == "__main__":
    from oneshot_bench.interrupts import run_command

    sys.exit(run_command(main))
