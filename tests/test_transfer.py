"""Transfers to the ImageNet mobile setting (evaluators/transfer.py): DARTS' ImageNet network, the class-folder
pipeline end to end on a tiny generated ImageNet-format folder (a search run, then its found cell transferred,
trained a few steps and evaluated with top-1/top-5), resuming, the report's GHN Table 3, and every bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

sys.path.insert(0, str(REPO))
import run  # noqa: E402 - the entry point, for in-process command lines
from evaluators import transfer as transfer_module  # noqa: E402
from evaluators.transfer import (  # noqa: E402
    COUNTER_SCALE,
    DARTS_V2_MADDS,
    load_transfer_records,
    looks_like_run_id,
    madds_of,
    widest_under,
)
from oneshot_bench.config import NetConfig  # noqa: E402
from oneshot_bench.training import topk_correct  # noqa: E402
from search_spaces.darts_cell import DARTS_V2, DartsCellSpace  # noqa: E402

TINY = ["transfer.channels=8", "transfer.cells_per_stage=1", "transfer.resolution=32", "transfer.epochs=2",
        "transfer.batch_size=4", "transfer.workers=0", "device=cpu"]


def make_image_folder(root: Path, classes: int = 6, train: int = 3, val: int = 2) -> Path:
    """An ImageNet-format folder: train/<class>/*.JPEG and val/<class>/*.JPEG, small random RGB images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (36 + 4 * c, 44, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.JPEG", format="JPEG")
    return root


@pytest.fixture
def cli(tmp_path, capsys):
    def invoke(*args: str) -> tuple[int, str, str]:
        code = run.cli([f"execution.results_dir={tmp_path / 'results'}", f"hydra.run.dir={tmp_path / 'hydra'}",
                        "execution.threads=1", *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke


@pytest.fixture
def images(tmp_path) -> Path:
    return make_image_folder(tmp_path / "imagenet")


def clear_error(result, *needles: str) -> str:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---- the network of the mobile setting ----------------------------------------------------------------------------

def test_darts_imagenet_network_has_darts_parameter_count_and_fits_the_mobile_limit():
    """DARTS-V2 in DARTS' NetworkImageNet at C=48, 14 cells, 1000 classes: the official code prints
    `param size = 4.718752MB`; the mobile setting allows 600M multiply-adds at 224 px (DARTS counts 574M for it,
    the calibration of COUNTER_SCALE). The default width rule (the widest even C under the limit, in DARTS' units)
    gives DARTS' own C=48, and C=50 would pass the limit."""
    space = DartsCellSpace()
    arch = space.decode(DARTS_V2)
    net = NetConfig(channels=48, cells_per_stage=4, num_classes=1000, in_channels=3)
    model = space.build_imagenet(arch, net)
    assert sum(p.numel() for p in model.parameters()) == 4_718_752
    assert len(model.cells) == 14 and [c.reduction for c in model.cells].count(True) == 2
    assert madds_of(space, arch, net, 224) == DARTS_V2_MADDS  # of convolutions and linear layers
    width, madds = widest_under(space, arch, NetConfig(channels=8, cells_per_stage=4, num_classes=1000,
                                                       in_channels=3), 224, 600e6)
    assert (width, madds) == (48, DARTS_V2_MADDS)
    wider = madds_of(space, arch, NetConfig(channels=50, cells_per_stage=4, num_classes=1000, in_channels=3), 224)
    assert wider / COUNTER_SCALE > 600e6
    model.enable_auxiliary()
    model.train()
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000) and model.aux_logits.shape == (2, 1000)


def test_topk_correct_counts_labels_among_the_highest_logits():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0.0, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0]])
    y = torch.tensor([0, 1, 5])  # ranked 1st, 5th and 6th of 6
    assert topk_correct(logits, y, (1, 5)).tolist() == [1, 2]


# ---- end to end -------------------------------------------------------------------------------------------------

def search_run(cli) -> str:
    """A finished GHN Top-Best search on darts_cell (plumbing-check size); returns its run id."""
    code, out, err = cli("method=ghn", "space=darts_cell", "data=digits", "budget=smoke", "truth=nb301",
                         "selection=top_best", "selection.candidates=4", "selection.k=2", "device=cpu")
    assert code == 0, err
    return out.split("record")[-1].split("│")[1].strip().rstrip("…")


def test_transfer_of_a_searched_cell_trains_evaluates_and_fills_ghn_table_3(cli, images, tmp_path):
    results = tmp_path / "results"
    partial = search_run(cli)
    run_id = next(p.name for p in (results / "runs").iterdir() if p.name.startswith(partial))
    code, out, err = cli("+transfer=imagenet_mobile", f"transfer.source={run_id}", f"data.root={images}", *TINY)
    assert code == 0, err
    assert "NOT THE PAPER'S PROTOCOL" in out and "top-5 accuracy" in out
    (record,) = load_transfer_records(results)
    searched = json.loads((results / "runs" / run_id / "record.json").read_text())
    assert record.source["run_id"] == run_id and record.source["method"] == "ghn"
    assert record.arch == searched["found"]["arch"]  # the search's found cell is what was transferred
    assert record.source["search_device_seconds"] == searched["cost"]["search_device_seconds"]
    assert record.data["classes"] == 6 and record.data["val_images_used"] == 12 and len(record.history) == 2
    assert 0 <= record.top1 <= record.top5 <= 100 and record.top1 * 12 / 100 == pytest.approx(round(record.top1 * 0.12))
    assert record.network["channels"] == 8 and record.network["cells"] == 5
    assert any("plumbing check" in d for d in record.departures) and "epochs=2 (paper: 250)" in record.departures
    # the same command again returns the record (nothing retrains)
    assert cli("+transfer=imagenet_mobile", f"transfer.source={run_id}", f"data.root={images}", *TINY)[0] == 0
    assert len(load_transfer_records(results)) == 1

    from reports.__main__ import main as report_main

    assert report_main(["--results", str(results), "--out", str(tmp_path / "report")]) == 0
    from reports.build import build_tables
    from reports.records import load_records, runs_frame

    searches = load_records(results)
    tables = {t.id: t for t in build_tables(runs_frame(searches), records=searches,
                                            transfers=load_transfer_records(results))}
    rows = tables["ghn_imagenet"].rows
    # a Top-Best search over 4 candidates is not the row's protocol (1,000; scaled budgets: 100): the row is not run
    assert not [r for r in rows if r.origin == "measured"]
    ghn = next(r for r in rows if r.label.startswith("ours: method=ghn"))
    assert ghn.origin == "not run" and "selection.candidates=1000" in ghn.command
    darts = next(r for r in rows if r.label.startswith("ours: method=darts"))
    assert darts.origin == "not run" and "+transfer=imagenet_mobile" in darts.command
    assert "budget=paper_darts" in darts.command
    ghn_paper = next(r for r in rows if r.label == "GHN Top-Best, 1K")
    assert [c.text for c in ghn_paper.cells] == ["0.84", "—", "6.1", "—", "73.0", "91.3"]
    # with the search's settings allowed as a scaled protocol, the row is filled and says how it departs
    from reports.paper_tables import load_specs
    from reports.transfers import build_transfer_table

    spec = load_specs()
    table = next(t for t in spec["tables"] if t["id"] == "ghn_imagenet")
    row = next(r for r in table["rows"] if r["method"] == "ghn")
    row["scaled"] = {"smoke": {"candidates": 4, "k": 2}}
    rows = build_transfer_table(spec, table, load_transfer_records(results), {r.run_id: r for r in searches}).rows
    measured = next(r for r in rows if r.origin == "measured")
    assert measured.run_ids == [record.transfer_id]
    assert measured.settings.startswith("settings not matched: candidates=4 (paper: 1000), k=2 (paper: 10)")
    assert "plumbing check" in measured.settings and "budget=smoke" in measured.budget
    assert [c.text for c in measured.cells][2:] == [
        f"{record.network['params'] / 1e6:.2f}", f"{record.network['madds_darts_units'] / 1e6:.1f}",
        f"{record.top1:.2f} (SE {record.top1_se:.2f})", f"{record.top5:.2f}"]


def test_an_interrupted_transfer_resumes_to_the_same_result(cli, images, tmp_path, monkeypatch):
    arch = f"transfer.source='{DARTS_V2}'"
    code, _, err = cli("+transfer=imagenet_mobile", arch, f"data.root={images}", "space=darts_cell", *TINY,
                       "execution.results_dir=" + str(tmp_path / "whole"))
    assert code == 0, err
    (whole,) = load_transfer_records(tmp_path / "whole")

    real = transfer_module.train_epoch

    def interrupted(plan, net, optimizer, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # killed during the second epoch
        return real(plan, net, optimizer, epoch)

    monkeypatch.setattr(transfer_module, "train_epoch", interrupted)
    assert cli("+transfer=imagenet_mobile", arch, f"data.root={images}", "space=darts_cell", *TINY)[0] == 130
    assert not load_transfer_records(tmp_path / "results")
    monkeypatch.setattr(transfer_module, "train_epoch", real)
    code, _, err = cli("+transfer=imagenet_mobile", arch, f"data.root={images}", "space=darts_cell", *TINY)
    assert code == 0, err
    (resumed,) = load_transfer_records(tmp_path / "results")
    assert resumed.transfer_id == whole.transfer_id
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    assert (resumed.top1, resumed.top5) == (whole.top1, whole.top5)


# ---- bad inputs: one clear error (exit 2) before any work ----------------------------------------------------------

def test_bad_transfer_inputs_get_one_clear_error(cli, images, tmp_path, monkeypatch):
    monkeypatch.delenv("ONESHOT_IMAGENET_ROOT", raising=False)
    arch = f"transfer.source='{DARTS_V2}'"
    base = ["+transfer=imagenet_mobile", "space=darts_cell", *TINY]
    clear_error(cli(*base, arch), "data.root", "ONESHOT_IMAGENET_ROOT")
    clear_error(cli(*base, arch, f"data.root={tmp_path / 'nowhere'}"), "is not a folder")
    clear_error(cli(*base, f"data.root={images}"), "transfer.source is not set")
    clear_error(cli(*base, f"data.root={images}", "transfer.source=not-a-run"), "transfer.source='not-a-run'",
                "neither a finished run")
    clear_error(cli(*base, f"data.root={images}", "space=nb201", "transfer.source='|none~0|+|none~0|none~1|+|none~0|"
                    "none~1|none~2|'"), "space 'nb201' has no ImageNet network")
    clear_error(cli(*base, arch, f"data.root={images}", "transfer.channels=200", "transfer.resolution=224",
                    "transfer.cells_per_stage=4"), "transfer.channels=200", "over transfer.madds_limit=600M")
    clear_error(cli(*base, arch, f"data.root={images}", "transfer.epochs=0"), "transfer.epochs=0")
    clear_error(cli("mode=transfer", arch), "+transfer=imagenet_mobile")
    clear_error(cli(*base, arch, "data=cifar10", f"data.root={images}"), "data=cifar10 is not allowed")
    clear_error(cli("method=spos", "data=imagenet", f"data.root={images}"), "data=imagenet is for transfers")

    broken = make_image_folder(tmp_path / "no_val")
    for f in (broken / "val").rglob("*"):
        if f.is_file():
            f.unlink()
    clear_error(cli(*base, arch, f"data.root={broken}"), "holds no images")
    (tmp_path / "mismatch" / "train" / "a").mkdir(parents=True)
    (tmp_path / "mismatch" / "val" / "b").mkdir(parents=True)
    clear_error(cli(*base, arch, f"data.root={tmp_path / 'mismatch'}"), "holds no images")
    mismatch = make_image_folder(tmp_path / "classes")
    (mismatch / "val" / "n00000000").rename(mismatch / "val" / "extra")
    clear_error(cli(*base, arch, f"data.root={mismatch}"), "different class folders")
    assert not (tmp_path / "results" / "transfers").exists() or not any(
        (tmp_path / "results" / "transfers").glob("*/record.json"))


def test_an_arch_string_is_never_taken_for_a_run_folder():
    spaced = DARTS_V2.replace("|", " | ").replace(",", " , ")  # decode accepts it; 281 characters
    assert not looks_like_run_id(spaced) and not looks_like_run_id(DARTS_V2)
    assert looks_like_run_id("darts_cell-ghn-cifar10-paper-s0-1b98cab8e7")


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_is_named_even_from_a_worker(cli, images, workers):
    bad = images / "train" / "n00000002" / "img1.JPEG"
    bad.write_bytes(b"not a jpeg")
    line = clear_error(cli("+transfer=imagenet_mobile", "space=darts_cell", f"transfer.source='{DARTS_V2}'",
                           f"data.root={images}", *TINY, f"transfer.workers={workers}"), str(bad))
    assert "not a readable image" in line


def test_the_reproduce_command_refuses_the_transfer_table():
    from reports.reproduce import main

    assert main(["ghn_imagenet"]) == 2
