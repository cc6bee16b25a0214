"""No per-step host syncs in training loops (issue: ready for a GPU).

On the CPU, every Python-level read of a tensor value inside `train_epoch` (`.item()`, `.tolist()`, `.numpy()`,
`.cpu()`, `float()`, `int()`, `bool()`, `__index__`) made by this project's code is counted, by the function that
made it. An epoch of 2 steps and one of 4 steps must make the same number of reads everywhere except in the
functions a method declares in `host_reads_per_step` (its control flow needs those values: ENAS' controller, the
GreedyNAS k-of-m filter, ProxylessNAS' gates), and each declared function is named in the method's module docstring.
Where CUDA exists, `torch.cuda.set_sync_debug_mode` counts real device syncs the same way.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from methods.base import METHODS, get_method

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("methods", "oneshot_bench", "search_spaces", "evaluators")
READS = ("item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__")
TRAINING = [name for name in METHODS.names() if METHODS.get(name).trains]
SPACE_FOR = {"proxylessnas": "mbnet_chain"}  # a space each method runs on (nb201 otherwise)
# a method's every kind of step once per weight step, from the first epoch, so each kind's per-step reads show
EXTRA = {"proxylessnas": ("method.params.arch_update_every=1", "method.params.warmup_fraction=0"),
         "greedynas": ("method.params.num_paths=2", "method.params.num_kept=1", "method.params.warmup_iters=0"),
         "enas": ("method.params.controller_aggregate=1",)}


@contextmanager
def counted_host_reads() -> Iterator[Counter]:
    """Count tensor reads made directly by the project's code, by (file, qualified function name)."""
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(original):
        def read(self, *args, **kwargs):
            code = sys._getframe(1).f_code
            path = Path(code.co_filename)
            if path.is_relative_to(REPO) and path.relative_to(REPO).parts[0] in PROJECT:
                counts[(path.relative_to(REPO).as_posix(), code.co_qualname)] += 1
            return original(self, *args, **kwargs)
        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(original))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def epoch_reads(smoke_config, method: str, steps: int) -> Counter:
    """Host reads of one training epoch of `steps` weight steps (after a first epoch, so warm-ups and lazily
    built tables are behind it)."""
    from evaluators.runner import plan_run, prepare

    batch = 16
    plan = plan_run(smoke_config(f"method={method}", f"space={SPACE_FOR.get(method, 'nb201')}",
                                 f"budget.batch_size={batch}", f"budget.max_train_images={steps * batch}",
                                 "budget.search_epochs=4", *EXTRA.get(method, ())))
    prepare(plan)
    plan.method.train_epoch(0)
    with counted_host_reads() as counts:
        plan.method.train_epoch(1)
    return counts


@pytest.mark.parametrize("method", TRAINING)
def test_training_reads_the_host_per_step_only_where_the_method_says_why(smoke_config, method):
    few, many = epoch_reads(smoke_config, method, 2), epoch_reads(smoke_config, method, 4)
    declared = get_method(method).host_reads_per_step
    growing = {site: (few[site], many[site]) for site in few | many  # a read in a comprehension counts as its
               if not declared.keys() & set(site[1].split(".")) and many[site] != few[site]}  # function's
    assert not growing, f"{method}: host reads that grow with the steps (2 vs 4 steps): {growing}"
    doc = sys.modules[type(get_method(method)).__module__].__doc__ or ""
    assert all(name in doc for name in declared), f"{method}'s module docstring must list {sorted(declared)}"


def test_the_counter_sees_a_per_step_read(smoke_config, monkeypatch):
    """The test above can fail: a loss read per step (what the loops did before) is counted per step."""
    from methods.supernet import SupernetMethod

    original = SupernetMethod.weight_step

    def reading(self, path, x, y):
        loss = original(self, path, x, y)
        loss.item()
        return loss

    monkeypatch.setattr(SupernetMethod, "weight_step", reading)
    few, many = epoch_reads(smoke_config, "spos", 2), epoch_reads(smoke_config, "spos", 4)
    growing = [s for s in few | many if many[s] != few[s]]
    assert growing == [], growing  # the test's own per-step read is not the project's
    monkeypatch.setattr(SupernetMethod, "weight_step", lambda self, path, x, y: _read_in_project(original, self,
                                                                                                 path, x, y))
    few, many = epoch_reads(smoke_config, "spos", 2), epoch_reads(smoke_config, "spos", 4)
    site = ("oneshot_bench/training.py", "check_finite")
    assert many[site] == 2 * few[site] == 4


def _read_in_project(original, self, path, x, y):
    from oneshot_bench.training import check_finite

    loss = original(self, path, x, y)
    check_finite(loss, "test")  # a read made by the project's code, once per step
    return loss


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.set_sync_debug_mode)")
@pytest.mark.parametrize("method", [m for m in TRAINING if not get_method(m).host_reads_per_step])
def test_cuda_training_epoch_syncs_do_not_grow_with_steps(smoke_config, method):
    import warnings

    from evaluators.runner import plan_run, prepare

    def syncs(steps: int) -> int:
        plan = plan_run(smoke_config(f"method={method}", f"space={SPACE_FOR.get(method, 'nb201')}", "device=cuda",
                                     "budget.batch_size=16", f"budget.max_train_images={steps * 16}",
                                     "budget.search_epochs=4"))
        prepare(plan)
        plan.method.train_epoch(0)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                plan.method.train_epoch(1)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)

    assert syncs(2) == syncs(4)


def test_host_to_is_the_tensor_itself_on_cpu():
    from oneshot_bench.device import host_to

    t = torch.arange(5)
    assert host_to(t, torch.device("cpu")) is t


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_host_to_cuda_queues_the_copy_without_a_sync():
    import warnings

    from oneshot_bench.device import host_to

    t = torch.randint(0, 9, (128,))
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            moved = host_to(t, torch.device("cuda"))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert not [w for w in caught if "synchronizing" in str(w.message)]
    assert torch.equal(moved.cpu(), t)
