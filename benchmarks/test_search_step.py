"""Each method's search step against its reference on the same arch (benchmarks/step_ratios.py), in pytest-benchmark
groups: `python -m pytest benchmarks/test_search_step.py --benchmark-enable` prints, per group, the search step and
its reference side by side with their ratio. The default test run executes every case once, untimed, so the
benchmark keeps working; `python benchmarks/step_ratios.py` measures the ratios alternately in one run (the README's
table)."""
from __future__ import annotations

import pytest
from step_ratios import ALL_CANDIDATES, HYPERNETS, SINGLE_PATH, cases_for, kinds_of

from methods.base import get_method
from oneshot_bench.errors import ConfigError
from search_spaces import get_space

SPACES = ("nb201", "darts_cell", "mbnet_chain")
OVERRIDES = ["budget=smoke", "device=cpu"]


def _supported(method: str, space: str) -> bool:
    try:
        get_method(method).check_supports(get_space(space))
    except ConfigError:
        return False
    return True


CASES = [(m, s, k) for s in SPACES for m in (*SINGLE_PATH, *ALL_CANDIDATES, *HYPERNETS) if _supported(m, s)
         for k in kinds_of(m)]


def _case(method: str, space: str, kind: str):
    return next(c for c in cases_for(method, space, OVERRIDES) if c.kind == kind)


@pytest.mark.parametrize("side", ["search", "reference"])
@pytest.mark.parametrize(("method", "space", "kind"), CASES, ids=[f"{m}-{s}-{k}" for m, s, k in CASES])
def test_step(benchmark, method, space, kind, side):
    case = _case(method, space, kind)
    benchmark.group = f"{method} {space}: {kind} vs {case.reference_kind}"
    benchmark(getattr(case, side))


def test_paired_ratio_alternates_and_takes_the_median_of_pair_ratios(monkeypatch):
    """A fake clock: the search step costs 3 units, the reference 2, except one disturbed search call (30); the
    ratio is the median of the per-pair ratios (1.5, not the disturbed mean), and the sides alternate in order."""
    import step_ratios

    clock, calls = [0.0], []

    def side(name, costs):
        def run():
            calls.append(name)
            clock[0] += costs.pop(0) if costs else 3 if name == "search" else 2
        return run

    monkeypatch.setattr(step_ratios.time, "perf_counter", lambda: clock[0])
    case = step_ratios.StepCase("m", "s", "single-path weight step", "ref", side("search", [3, 30]),
                                side("reference", []), images=64, sync=lambda: None)
    ratio = step_ratios.paired_ratio(case, repeats=5, warmup=0)
    assert ratio.ratio == 1.5 and ratio.search_s == 3 and ratio.reference_s == 2
    assert calls[:4] == ["search", "reference", "reference", "search"]
    assert ratio.row()["verdict"] == "ABOVE" and ratio.row()["search images/s"] == 64 / 3


def test_cases_run_under_the_runs_precision():
    """--precision bf16 times both sides under the search's autocast: the reference's logits are bf16 there."""
    import torch

    case = next(cases_for("spos", "nb201", [*OVERRIDES, "precision=bf16"]))
    seen: list[torch.dtype] = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, _inputs, out: seen.append(out.dtype) if isinstance(module, torch.nn.Linear) else None)
    try:
        case.search()
        case.reference()
    finally:
        handle.remove()
    assert seen == [torch.bfloat16, torch.bfloat16]
