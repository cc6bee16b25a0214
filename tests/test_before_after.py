"""`python -m reports.before_after`: the same runs made by two versions of the code, paired run by run on their
shared sample, with a verdict only where the paired interval excludes 0."""
from __future__ import annotations

import numpy as np

from evaluators.ranking import ranking_metrics
from evaluators.record import ExtraProxy, RunRecord
from evaluators.verdict import ONE_SEED
from reports.before_after import main
from tests.test_reports import make_record, write_records


def ranked(record: RunRecord, proxy: list[float], git_commit: str) -> RunRecord:
    """The record with this ranking of its sample, as made by this commit."""
    for key, value in ranking_metrics(proxy, record.ranking.truth, resamples=200, seed=0).items():
        setattr(record.ranking, key, value)
    record.ranking.proxy = [float(p) for p in proxy]
    record.git_commit = git_commit
    return record


def stores(tmp_path, after_quality: str, seeds=(0, 1), flips=()):
    """Before: spos seeds 0 and 1 ranking their 40 archs with noise. After: the same runs ranking perfectly
    ("better") or backwards ("worse"; the other way round on the seeds in `flips`), and one run (greedynas) that
    only the after side made."""
    before, after = [], []
    for seed in seeds:
        b = make_record("spos", seed, n=40, data="cifar10", budget="cpu")
        noisy = list(np.asarray(b.ranking.truth) + np.random.default_rng(seed).normal(0, 4, 40))
        before.append(ranked(b, noisy, "1111111aaaa"))
        a = make_record("spos", seed, n=40, data="cifar10", budget="cpu", final_acc=93.5)
        sign = (1.0 if after_quality == "better" else -1.0) * (-1.0 if seed in flips else 1.0)
        after.append(ranked(a, [sign * t for t in a.ranking.truth], "2222222bbbb"))
    after.append(make_record("greedynas", 0, n=40, data="cifar10", budget="cpu"))
    write_records(tmp_path / "before", before)
    write_records(tmp_path / "after", after)
    return str(tmp_path / "before"), str(tmp_path / "after")


def test_pairs_runs_and_says_better_only_where_the_paired_interval_excludes_zero(tmp_path, capsys):
    before, after = stores(tmp_path, "better")
    assert main(["--before", before, "--after", after, "--out", str(tmp_path / "table.md")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "table.md").read_text()
    assert "Before: commit(s) 1111111. After: commit(s) 2222222." in text
    rows = [line for line in text.splitlines()
            if line.startswith("| mbnet_chain / cifar10 / budget=cpu / truth=nas_bench_macro | spos |")]
    assert len(rows) == 3  # seeds 0 and 1, then their summary
    for seed_row in rows[:2]:
        cells = [c.strip() for c in seed_row.split("|")[1:-1]]
        assert cells[3] == "top1 F=8"  # the selection protocol that produced the final accuracy
        assert cells[5].startswith("1.000")  # the after side ranks perfectly
        assert cells[6].endswith("(better)") and cells[6].startswith("**+")
        assert "→ 93.50" in cells[7] and cells[8].startswith("no test (looked up")
    assert "better in 2, worse in 0 of 2" in rows[2]
    assert "greedynas" in text.split("Runs without a partner")[1]


def summary_cells(text: str, method: str = "spos") -> list[str]:
    line = next(line for line in text.split("| verdict across seeds |")[1].splitlines()
                if f"| {method} |" in line)
    return [c.strip() for c in line.split("|")[1:-1]]


def test_the_summary_line_gives_a_verdict_only_across_three_or_more_seeds(tmp_path, capsys):
    """Two seeds better on each: per-seed detail says so, but no verdict on the change; three consistent seeds:
    better across seeds; three whose sign flips on one seed: unresolved, with the seeds it would need."""
    before, after = stores(tmp_path / "two", "better")
    main(["--before", before, "--after", after])
    cells = summary_cells(capsys.readouterr().out)
    assert cells[7] == "better in 2, worse in 0 of 2"
    assert cells[6].startswith("no verdict: 2 seeds in common, a verdict needs at least 3")
    before, after = stores(tmp_path / "three", "better", seeds=(0, 1, 2))
    main(["--before", before, "--after", after])
    cells = summary_cells(capsys.readouterr().out)
    assert cells[6] == "better" and cells[5].endswith("over 3 seeds") and cells[5].startswith("+")
    before, after = stores(tmp_path / "flip", "better", seeds=(0, 1, 2), flips=(1,))
    main(["--before", before, "--after", after])
    text = capsys.readouterr().out
    cells = summary_cells(text)
    assert cells[7] == "better in 2, worse in 1 of 3"  # the old per-seed rule calls a winner on every seed
    assert cells[6].startswith("unresolved; ") and "seeds per method" in cells[6]
    assert "adjusted together over the 1 line(s) with at least 3 seeds" in text


def test_a_backwards_ranking_after_the_change_is_worse(tmp_path, capsys):
    before, after = stores(tmp_path, "worse")
    assert main(["--before", before, "--after", after]) == 0
    assert "better in 0, worse in 2 of 2" in capsys.readouterr().out


def test_an_unchanged_ranking_has_no_verdict(tmp_path, capsys):
    records = [make_record("spos", 0, n=40, data="cifar10", budget="cpu")]
    write_records(tmp_path / "before", records)
    write_records(tmp_path / "after", records)
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]) == 0
    out = capsys.readouterr().out
    assert "+0.000 [+0.000, +0.000]" in out and "better in 0, worse in 0 of 1" in out


def test_runs_that_ranked_different_samples_are_refused(tmp_path, capsys):
    for field in ("archs", "truth"):
        b = make_record("spos", 0, n=40, data="cifar10", budget="cpu")
        a = make_record("spos", 0, n=40, data="cifar10", budget="cpu")
        setattr(a.ranking, field, [f"other{i}" for i in range(40)] if field == "archs"
                else [t + 0.5 for t in a.ranking.truth])
        write_records(tmp_path / field / "before", [b])
        write_records(tmp_path / field / "after", [a])
        assert main(["--before", str(tmp_path / field / "before"), "--after", str(tmp_path / field / "after")]) == 2
        err = capsys.readouterr().err
        assert "spos seed 0" in err and "ranking samples differ in their " + ("archs" if field == "archs"
                                                                             else "truth values") in err


def test_settings_stay_apart_and_a_dirty_side_says_so(tmp_path, capsys):
    """Two datasets of one method and seed are two pairs, each under its setting, never averaged together."""
    before = [make_record("spos", 0, n=12, data=d, budget="cpu") for d in ("cifar10", "digits")]
    after = [make_record("spos", 0, n=12, data=d, budget="cpu") for d in ("cifar10", "digits")]
    for r in after:
        r.git_commit = "3333333cccc+dirty"
    write_records(tmp_path / "before", before)
    write_records(tmp_path / "after", after)
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]) == 0
    text = capsys.readouterr().out
    assert "After: commit(s) 3333333+dirty." in text
    summary = text.split("| verdict across seeds |")[1].splitlines()
    assert sum(line.startswith("| mbnet_chain / cifar10 /") for line in summary) == 1
    assert sum(line.startswith("| mbnet_chain / digits /") for line in summary) == 1
    assert "(n=2)" not in text.split("| verdict across seeds |")[1]


def test_only_reference_runs_is_said_plainly(tmp_path, capsys):
    write_records(tmp_path / "before", [make_record("zc", 0, n=12)])
    write_records(tmp_path / "after", [make_record("spos", 0, n=12)])
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]) == 2
    assert "the before store holds no method runs (zc reference runs are not compared)" in capsys.readouterr().err


def test_missing_store_and_no_pairs_are_one_clear_error(tmp_path, capsys):
    assert main(["--before", str(tmp_path / "nowhere"), "--after", str(tmp_path)]) == 2
    assert "--before" in capsys.readouterr().err
    write_records(tmp_path / "before", [make_record("spos", 0, n=12)])
    write_records(tmp_path / "after", [make_record("spos", 1, n=12)])
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]) == 2
    assert "no run shares its seed with a run of the other side" in capsys.readouterr().err
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after"),
                 "--out", str(tmp_path / "missing" / "t.md")]) == 2
    assert "--out" in capsys.readouterr().err


def test_retrained_found_archs_get_mcnemar_per_seed_and_cmh_across_seeds(tmp_path, capsys):
    """Found archs trained on the same 200 test images: the after side gets all right, the before side half. One
    seed: McNemar, labelled per seed, and no verdict across seeds; three seeds: Cochran-Mantel-Haenszel over them."""
    for seeds in ((0,), (0, 1, 2)):
        for side, right in (("before", 100), ("after", 200)):
            records = []
            for seed in seeds:
                r = make_record("spos", seed, n=12, data="cifar10", budget="cpu")
                bits = np.zeros(200, dtype=bool)
                bits[:right] = True
                r.found.finalists[0].correct = np.packbits(bits).tobytes().hex()
                r.found.finalists[0].n_images = 200
                records.append(r)
            write_records(tmp_path / str(len(seeds)) / side, records)
        store = tmp_path / str(len(seeds))
        assert main(["--before", str(store / "before"), "--after", str(store / "after")]) == 0
        text = capsys.readouterr().out
        assert "| more accurate on this seed (McNemar p = " in text
        cells = summary_cells(text)
        if len(seeds) == 1:
            assert cells[9] == f"no verdict: {ONE_SEED}"
        else:
            assert cells[9].startswith("more accurate: Cochran-Mantel-Haenszel over seeds 0, 1, 2")


def test_free_references_are_shown_per_sample_beside_the_taus(tmp_path, capsys):
    """Each setting and seed gets its references' taus, read from the shared sample; runs without references say
    that no tau can be read against one."""
    write_records(tmp_path / "bare" / "before", [make_record("spos", 0, n=12, budget="cpu")])
    write_records(tmp_path / "bare" / "after", [make_record("spos", 0, n=12, budget="cpu")])
    assert main(["--before", str(tmp_path / "bare" / "before"), "--after", str(tmp_path / "bare" / "after")]) == 0
    assert "No free reference was recorded on these samples" in capsys.readouterr().out
    sides: dict[str, list[RunRecord]] = {"before": [], "after": []}
    for seed in (0, 1):
        for side in sides:
            r = make_record("spos", seed, n=40, data="cifar10", budget="cpu")
            truth = r.ranking.truth
            backwards = [-t for t in truth] if seed else list(truth)  # params ranks perfectly on seed 0 only
            r.ranking.references["params"] = ExtraProxy(
                **ranking_metrics(backwards, truth, resamples=200, seed=0), proxy=backwards)
            sides[side].append(r)
    for side, records in sides.items():
        write_records(tmp_path / side, records)
    assert main(["--before", str(tmp_path / "before"), "--after", str(tmp_path / "after")]) == 0
    table = capsys.readouterr().out.split("Free references on each sample")[1]
    rows = [line for line in table.splitlines() if line.startswith("| mbnet_chain / cifar10 /")]
    assert "params Kendall [95% CI]" in table and len(rows) == 2
    assert rows[0].split("|")[2].strip() == "0" and rows[0].split("|")[3].strip().startswith("1.000 [")
    assert rows[1].split("|")[3].strip().startswith("-1.000 [")
