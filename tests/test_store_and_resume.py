import json

import pytest

from evaluators.runner import run_benchmark
from evaluators.store import ResultsStore
from methods import METHODS
from methods.spos import SPOS
from oneshot_bench.atomic import write_json


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "record.json"
    write_json(path, {"ok": 1})

    class Unprintable:
        def __str__(self):
            raise RuntimeError("fails half-way through serialization")

    with pytest.raises(RuntimeError):
        write_json(path, {"a": list(range(1000)), "z": Unprintable()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no stray temp files


def test_interrupted_run_resumes_from_its_checkpoint(smoke_config, monkeypatch):
    cfg = smoke_config("method=spos", "space=mbnet_chain", "budget.search_epochs=3")
    calls = []
    original = SPOS.train_epoch

    def crash_at_epoch_2(self, epoch):
        calls.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(SPOS, "train_epoch", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(cfg, progress=False)
    store = ResultsStore(cfg.execution.results_dir)
    (run_dir,) = list(store.runs_dir.iterdir())
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "record.json").exists()

    monkeypatch.setattr(SPOS, "train_epoch", lambda self, epoch: (calls.append(epoch), original(self, epoch))[1])
    record = run_benchmark(cfg, progress=False)
    assert calls == [0, 1, 2, 2]  # epochs 0 and 1 were not trained again
    assert [h["epoch"] for h in record.history] == [0, 1, 2]
    assert (run_dir / "record.json").is_file() and not (run_dir / "checkpoint.pt").exists()

    # a finished run is not recomputed unless forced
    calls.clear()
    assert run_benchmark(cfg, progress=False).run_id == record.run_id
    assert calls == []


def test_record_has_provenance(smoke_config):
    record = run_benchmark(smoke_config("method=spos", "space=mbnet_chain"), progress=False)
    assert record.hashes.truth["sha256"] == (
        "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297")
    assert len(record.hashes.data_sha256) == 64
    assert record.versions["torch"].startswith("2.14.1")
    assert set(record.cost.phases) == {"supernet_train", "ranking", "derive", "final"}
    for v in record.cost.phases.values():
        assert v.gpu_days == pytest.approx(v.device_seconds / 86400)
    assert len(record.ranking.archs) == len(record.ranking.proxy) == len(record.ranking.truth) == 12


def test_a_multithreaded_hypernet_run_repeats_exactly(smoke_config):
    """The same config run twice on 2 CPU threads gives the same losses, scores and found arch, with torch's
    deterministic kernels requested (the default) and recorded in the record."""
    import torch

    from evaluators.runner import run_benchmark

    before = torch.get_num_threads()
    try:
        cfg = smoke_config("method=ghn", "space=darts_cell", "execution.threads=2", "budget.search_epochs=2",
                           "execution.force=true")
        records = [run_benchmark(cfg, progress=False) for _ in range(2)]
    finally:
        torch.set_num_threads(before)
    first, second = records
    assert first.execution == {"threads": 2, "deterministic": True}
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in second.history]
    assert first.ranking.proxy == second.ranking.proxy
    assert first.found.arch == second.found.arch


@pytest.mark.parametrize("method", [m for m in METHODS.names() if METHODS.get(m).trains])
def test_every_methods_checkpoint_resumes_through_the_restricted_loader(smoke_config, method, monkeypatch):
    """Each method's state (tensors, RNG states, optimizer and controller states, pools, latency tables) is plain
    enough for torch.load(weights_only=True), and a run resumed after epoch 0 equals an uninterrupted one."""
    space = next(s for s in ("mbnet_chain", "nb201", "nb101") if METHODS.get(method).supports_name(s))
    overrides = (f"method={method}", f"space={space}", "budget.search_epochs=2")
    cls, original = METHODS.get(method), METHODS.get(method).train_epoch

    def dies(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(cls, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(smoke_config(*overrides), progress=False)
    monkeypatch.setattr(cls, "train_epoch", original)
    resumed = run_benchmark(smoke_config(*overrides), progress=False)
    fresh = run_benchmark(smoke_config(*overrides, "execution.force=true"), progress=False)
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    assert resumed.ranking.proxy == fresh.ranking.proxy and resumed.found.arch == fresh.found.arch


@pytest.mark.parametrize("method", [m for m in METHODS.names() if not METHODS.get(m).trains])
def test_a_method_without_training_resumes_its_scoring(smoke_config, method, monkeypatch):
    """random and zc have no epochs to checkpoint: a run killed while scoring the sample keeps the scores it had,
    scores only the rest on resume, and ends with the uninterrupted run's numbers."""
    space = next(s for s in ("mbnet_chain", "nb201", "nb101") if METHODS.get(method).supports_name(s))
    overrides = (f"method={method}", f"space={space}")
    cls, original, scored = METHODS.get(method), METHODS.get(method).score, []

    def dies(self, archs):
        if len(scored) == 3:
            raise KeyboardInterrupt  # killed while scoring the 4th sample arch
        scored.extend(archs)
        return original(self, archs)

    monkeypatch.setattr(cls, "score", dies)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(smoke_config(*overrides), progress=False)
    done, scored[:] = list(scored), []
    monkeypatch.setattr(cls, "score", lambda self, archs: (scored.extend(archs), original(self, archs))[1])
    resumed = run_benchmark(smoke_config(*overrides), progress=False)
    assert len(done) == 3 and not set(done) & set(scored)  # the 3 scored archs were not scored again
    fresh = run_benchmark(smoke_config(*overrides, "execution.force=true"), progress=False)
    assert resumed.ranking.proxy == fresh.ranking.proxy and resumed.found.arch == fresh.found.arch
