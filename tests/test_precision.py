"""precision=bf16: every method's smoke run works under bf16 autocast, the search's loss on a fixed batch stays
within a bf16 tolerance of fp32's, what the evaluator owns (ground truth, final training) stays fp32, and the
precision is part of the run's identity and of its label in reports."""
from __future__ import annotations

import math

import pytest
import torch

from evaluators.runner import plan_run, prepare, run_benchmark, train
from methods import METHODS

# each method on the first space that supports it
FIRST_SPACE = {m: next(s for s in ("nb201", "mbnet_chain", "darts_cell", "nb101") if METHODS.get(m).supports_name(s))
               for m in METHODS.names()}
TRAINING = [m for m in METHODS.names() if METHODS.get(m).trains]


@pytest.mark.parametrize("method", METHODS.names())
def test_bf16_smoke_run(smoke_config, method):
    space = FIRST_SPACE[method]
    fp32 = plan_run(smoke_config(f"method={method}", f"space={space}"))
    record = run_benchmark(smoke_config(f"method={method}", f"space={space}", "precision=bf16"), progress=False)
    assert record.config["precision"] == "bf16" and fp32.identity["precision"] == "fp32"
    assert record.run_id != fp32.run_id  # precision is part of the identity
    s = record.summary
    assert math.isfinite(s.kendall_tau) and 0.0 <= s.final_test_acc <= 100.0
    assert all(math.isfinite(v) for row in record.history for v in row.values() if isinstance(v, float))


def first_step_loss(smoke_config, method: str, precision: str) -> float:
    """The training loss of one search step on one fixed batch, from the same seeded initial state."""
    plan = plan_run(smoke_config(f"method={method}", f"space={FIRST_SPACE[method]}", f"precision={precision}",
                                 "budget.search_epochs=1", "budget.max_train_images=64", "budget.batch_size=64",
                                 "budget.ranking_every=0"))
    run = prepare(plan)
    train(run, progress=False)
    return next(v for k, v in run.history[0].items() if k in ("train_loss", "loss"))


@pytest.mark.parametrize("method", TRAINING)
def test_bf16_loss_is_within_tolerance_of_fp32_on_a_fixed_batch(smoke_config, method):
    fp32, bf16 = first_step_loss(smoke_config, method, "fp32"), first_step_loss(smoke_config, method, "bf16")
    assert bf16 != fp32  # autocast did change the arithmetic
    assert bf16 == pytest.approx(fp32, rel=0.03, abs=0.03)  # bf16 keeps ~3 significant digits


def test_search_autocast_runs_convolutions_in_bf16_and_keeps_fp32_where_asked():
    from oneshot_bench.device import full_precision, search_autocast

    conv, x, cpu = torch.nn.Conv2d(3, 4, 3), torch.randn(2, 3, 8, 8), torch.device("cpu")
    with search_autocast(cpu, "bf16"):
        assert conv(x).dtype == torch.bfloat16
        with full_precision(cpu):
            assert conv(x).dtype == torch.float32
    with search_autocast(cpu, "fp32"):
        assert conv(x).dtype == torch.float32
    assert conv.weight.dtype == torch.float32  # master weights stay fp32


def test_ground_truth_training_is_fp32_under_a_bf16_search(smoke_config, monkeypatch):
    """Trained truth is shared by every run: a bf16 run asking for it mid-search must not train it in bf16."""
    import evaluators.truth.trained as trained

    seen: list[torch.dtype] = []
    original = trained.train_standalone

    def spy(model, *args, **kwargs):
        handle = model.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
        try:
            return original(model, *args, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(trained, "train_standalone", spy)
    run_benchmark(smoke_config("method=random", "space=darts_cell", "precision=bf16", "budget.ranking_sample=4"),
                  progress=False)
    assert seen and set(seen) == {torch.float32}


def test_reports_label_a_bf16_run_and_paper_rows_name_the_departure():
    from reports.paper_tables import unmatched_settings

    assert unmatched_settings({"protocol": {"selection": "top1"}}, {"selection": "top1", "precision": "bf16"},
                              "cpu") == ["precision=bf16 (paper: fp32)"]
    assert unmatched_settings({"protocol": {"selection": "top1"}}, {"selection": "top1", "precision": "fp32"},
                              "cpu") == []
