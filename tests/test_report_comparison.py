"""The report reads every number against its references and its seeds: reference rows labelled "reference: no
training", mean ± std across seeds beside per-seed intervals, methods marked below the best reference, orderings
only where a paired test supports them, anytime curves, and plumbing checks labelled as such."""
from __future__ import annotations

from html import unescape

import numpy as np
import pytest

from evaluators.ranking import ranking_metrics
from evaluators.record import AnytimePoint, ExtraProxy, RunRecord
from reports.build import build_report
from reports.comparison import best_reference_text, compare
from reports.evidence import supported_orderings
from reports.paper_tables import build_tables
from reports.records import load_records, runs_frame
from tests.test_reports import make_record, rescored, table_rows, write_records

# the fixtures' records carry no BN mode: legacy records of supernet methods, labelled with the one protocol there was
SPOS, ONESHOT = "spos (BN: recalibrate_all)", "oneshot (BN: recalibrate_all)"


def with_references(record: RunRecord, quality: float = 0.2, seed: int = 0) -> RunRecord:
    """Give a record the free references every run now carries: params (a strong ranking, noise `quality` times
    the truth's spread) and flops (a weak one)."""
    truth = np.asarray(record.ranking.truth)
    rng = np.random.default_rng(seed)
    for name, noise in (("params", quality), ("flops", 3.0)):
        proxy = list(truth + rng.normal(0, noise * truth.std(), len(truth)))
        record.ranking.references[name] = ExtraProxy(**ranking_metrics(proxy, truth, resamples=200, seed=0),
                                                     proxy=[float(p) for p in proxy])
    return record


def reversed_ranking(record: RunRecord) -> RunRecord:
    """A method that ranks the sample backwards (its interval lies well below any decent reference)."""
    proxy = [-t for t in record.ranking.truth]
    metrics = ranking_metrics(proxy, record.ranking.truth, resamples=200, seed=0)
    for key, value in metrics.items():
        setattr(record.ranking, key, value)
    record.ranking.proxy = proxy
    return record


@pytest.fixture
def seeds_results(tmp_path):
    records = []
    for seed in (0, 1, 2):
        spos = with_references(make_record("spos", seed, n=40, data="cifar10", budget="cpu"), seed=seed)
        oneshot = make_record("oneshot", seed, n=40, data="cifar10", budget="cpu")
        # the same shared sample per seed, as the runner guarantees; its rankings are made on that sample
        oneshot.ranking.archs, oneshot.ranking.truth = spos.ranking.archs, spos.ranking.truth
        records += [spos, with_references(reversed_ranking(oneshot), seed=seed)]
    write_records(tmp_path / "results", records)
    return tmp_path / "results", records


def test_seeds_are_grouped_with_mean_std_beside_each_seeds_interval(seeds_results):
    _, records = seeds_results
    comparison = compare(records)
    spos = next(r for r in comparison.rows if r.label == SPOS)
    taus = [r.ranking.kendall_tau for r in records if r.method == "spos"]
    assert spos.seeds == "0, 1, 2" and spos.kendall == f"{np.mean(taus):.3f} ± {np.std(taus, ddof=1):.3f} (n=3)"
    assert len(spos.per_seed) == 3 and spos.per_seed[0].startswith("s0: ") and "[" in spos.per_seed[0]


def test_reference_rows_are_labelled_and_a_method_below_the_best_reference_is_marked(seeds_results):
    _, records = seeds_results
    comparison = compare(records)
    references = [r for r in comparison.rows if r.kind == "reference"]
    assert {r.label for r in references} == {"reference: no training: params", "reference: no training: flops"}
    assert all(r.search_seconds == "none (no training)" for r in references)
    oneshot = next(r for r in comparison.rows if r.label == ONESHOT)
    assert oneshot.below_reference == "τ interval below the best reference on seed(s) 0, 1, 2"
    assert all(e.label.endswith("params") for e in comparison.best_reference.values())


def test_the_report_says_a_ranks_better_than_b_only_across_seeds(seeds_results):
    _, records = seeds_results
    orderings = supported_orderings(compare(records).entries, resamples=300)
    # params ranks well and oneshot backwards on every one of the 3 seeds: that holds across training runs
    assert any(o.startswith(f"reference: no training: params ranks better than {ONESHOT} across training seeds")
               for o in orderings)
    assert any(o.startswith(f"{SPOS} ranks better than {ONESHOT} across training seeds") for o in orderings)
    assert all("over 3 seeds" in o for o in orderings)
    # references are not compared with each other, and nothing is claimed the wrong way round
    assert not any(o.startswith("reference: no training: params ranks better than reference") for o in orderings)
    assert not any(o.startswith(f"{ONESHOT} ranks better") for o in orderings)
    # two identical rankings cannot be told apart, and one seed never orders anything
    twin = make_record("spos", 0, n=40, data="cifar10", budget="cpu")
    assert supported_orderings(compare([twin, make_record("spos", 0, n=40, data="cifar10", budget="cpu",
                                                          params={"topk": 3})]).entries) == []


def test_html_shows_the_summary_marks_and_reference_rows(seeds_results, tmp_path):
    results, records = seeds_results
    html = build_report(results, tmp_path / "out").read_text()
    rows = table_rows(html)
    summary = [cells for attrs, cells in rows if attrs.get("data-kind") in ("method", "reference")]
    labels = [cells[0][1] for cells in summary]
    assert labels[0] == f"{ONESHOT}τ interval below the best reference on seed(s) 0, 1, 2"  # a block span
    spos_below = [r.seed for r in records if r.method == "spos" and r.ranking.kendall_tau_ci_high
                  < max(x.kendall_tau for x in r.ranking.references.values())]
    assert labels[1] == SPOS + (f"τ interval below the best reference on seed(s) {', '.join(map(str, spos_below))}"
                                  if spos_below else "")
    assert "reference: no training: params" in labels and 'data-below-reference="true"' in html
    assert "Best reference per seed: seed 0: params" in html
    assert "plumbing check" not in html  # cifar10 / cpu is a measurement
    # the paper tables carry the references too (here NB201 Table 5 is not this setting: mbnet_chain)
    tables = build_tables(runs_frame(load_records(results)), records=load_records(results))
    assert all(not any(r.origin == "reference" for r in t.rows) for t in tables)


def test_paper_tables_get_reference_rows_for_their_setting(tmp_path):
    records = [with_references(make_record(m, s, space="nb201", data="cifar10", budget="cpu"), seed=s)
               for m in ("spos", "ghn") for s in (0, 1)]
    for r in records:
        r.config["truth"] = {"name": "nb201"}
    write_records(tmp_path / "results", records)
    loaded = load_records(tmp_path / "results")
    table = next(t for t in build_tables(runs_frame(loaded), records=loaded) if t.id == "nb201_weight_sharing")
    refs = [r for r in table.rows if r.origin == "reference"]
    assert [r.label for r in refs] == ["reference: no training: flops", "reference: no training: params"]
    kendall = table.columns.index("Kendall tau (ours only)")
    params_taus = [r.ranking.references["params"].kendall_tau for r in records if r.method == "spos"]
    assert refs[1].cells[kendall].text.startswith(f"{np.mean(params_taus):.2f} ± ")
    assert refs[1].cells[0].text == "—" and "seeds 0, 1" in refs[1].budget


def test_plumbing_checks_are_labelled_in_the_report(tmp_path):
    write_records(tmp_path / "results", [make_record("spos", 0)])  # data=digits, budget=smoke
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "plumbing check, not a measurement" in html and 'data-plumbing="true"' in html
    # the reasons, read from the budget's values: every size at or below budget=smoke's
    assert ("data=digits (8x8 digit images), resolution=8 (at or below budget=smoke's 8), max_train_images=256 (at "
            "or below budget=smoke's 256), search_epochs=2 (at or below budget=smoke's 2), ranking_sample=12 (at or "
            "below budget=smoke's 12)") in unescape(html)


def test_anytime_curves_are_plotted_and_the_time_to_beat_the_best_reference_is_tabulated(tmp_path):
    records = []
    for method, taus in (("spos", [0.0, 0.5, 0.95]), ("oneshot", [-0.2, -0.1, 0.0])):
        r = with_references(make_record(method, 0, n=40, data="cifar10", budget="cpu"), quality=0.3)
        r.ranking.anytime = [AnytimePoint(epoch=e, train_seconds=10.0 * e, n=40, kendall_tau=t,
                                          kendall_tau_ci_low=t - 0.1, kendall_tau_ci_high=t + 0.1)
                             for e, t in zip((1, 2, 3), taus, strict=True)]
        records.append(r)
    records[1].ranking.archs, records[1].ranking.truth = records[0].ranking.archs, records[0].ranking.truth
    rescored(records[1])  # (its taus are of the truth it now has)
    write_records(tmp_path / "results", records)
    comparison = compare(records)
    reach = {r.label: r.reaches_reference for r in comparison.rows if r.kind == "method"}
    assert reach[SPOS].startswith("s0: 30.0 s (τ ") and reach[ONESHOT].startswith("s0: never (τ ")
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "Anytime ranking: Kendall tau against training time" in html


def test_surrogate_truth_is_stated_in_the_setting(tmp_path):
    record = make_record("ghn", 0, space="darts_cell", data="cifar10", budget="table4")
    record.hashes.truth.update(name="nb301", surrogate=True,
                               metric="NAS-Bench-301 surrogate-PREDICTED CIFAR-10 validation accuracy")
    write_records(tmp_path / "results", [record])
    html = build_report(tmp_path / "results", tmp_path / "out").read_text()
    assert "surrogate model's predictions, not trained accuracies" in unescape(html)


def test_a_table_over_several_space_settings_names_each_reference_by_its_setting(tmp_path):
    # the nodes ablation runs each node count as its own space: its references must not read as one row twice
    records = []
    for nodes in (2, 3, None):
        for s in (0, 1):
            r = with_references(make_record("ghn", s, space="darts_cell", data="cifar10", budget="table4",
                                            params={"nodes": nodes}), seed=s)
            r.config["truth"] = {"name": "trained"}
            r.config["space"] = {"name": "darts_cell", "params": {"nodes": nodes} if nodes else {}}
            records.append(r)
    write_records(tmp_path / "results", records)
    loaded = load_records(tmp_path / "results")
    table = next(t for t in build_tables(runs_frame(loaded), records=loaded) if t.id == "ghn_ablation_nodes")
    labels = [r.label for r in table.rows if r.origin == "reference"]
    assert len(labels) == len(set(labels)) == 6
    assert "reference: no training: params (darts_cell[nodes=2])" in labels
    assert "reference: no training: flops (darts_cell)" in labels
    # a table of one of those settings (GHN Table 1: darts_cell's default 4 nodes) keeps only its own references
    table1 = next(t for t in build_tables(runs_frame(loaded), records=loaded) if t.id == "ghn_table1")
    assert sorted(r.label for r in table1.rows if r.origin == "reference") == [
        "reference: no training: flops", "reference: no training: params"]


def test_a_best_reference_below_chance_is_said_to_be_and_is_not_a_bar_to_reach(tmp_path):
    # against a 2-epoch truth, params and FLOPs rank backwards: "reaching" them is no achievement
    record = make_record("ghn", 0, n=40, data="cifar10", budget="table4")
    truth = np.asarray(record.ranking.truth)
    for name, sign in (("params", -1.0), ("flops", -0.5)):
        proxy = [float(p) for p in sign * truth + np.random.default_rng(1).normal(0, truth.std(), len(truth))]
        record.ranking.references[name] = ExtraProxy(**ranking_metrics(proxy, list(truth), resamples=200, seed=0),
                                                     proxy=proxy)
    record.ranking.anytime = [AnytimePoint(epoch=1, train_seconds=10.0, n=40, kendall_tau=0.1,
                                           kendall_tau_ci_low=0.0, kendall_tau_ci_high=0.2)]
    comparison = compare([record])
    assert comparison.best_reference[0].metrics.kendall_tau < 0
    assert best_reference_text(comparison).endswith("(no reference ranks better than chance on the whole sample)")
    reach = next(r.reaches_reference for r in comparison.rows if r.kind == "method")
    assert reach.startswith("s0: — (the best reference, ") and "ranks at or below chance" in reach


def test_the_report_opens_on_a_headline_per_setting(seeds_results, tmp_path):
    """Before the contents: the methods by mean tau (mean ± std, n seeds), the best free reference on the same
    samples, the orderings that hold across seeds, and one sentence on what the evidence supports."""
    results, records = seeds_results
    html = unescape(build_report(results, tmp_path / "out").read_text())
    headline = html[html.index('<section id="headline">'):html.index('<nav id="contents">')]
    spos = np.mean([r.ranking.kendall_tau for r in records if r.method == "spos"])
    rows = [cells for attrs, cells in table_rows(headline) if attrs.get("data-headline") == "method"]
    assert [cells[1][1] for cells in rows] == [SPOS, ONESHOT]  # by mean tau
    assert rows[0][2][1].startswith(f"{spos:.3f} ± ") and rows[0][2][1].endswith("(n=3)")
    assert "best free reference (no training)" in headline and "params: " in headline
    assert "Across 3 training seeds, the free reference params ranks better than" in headline
    assert f"reference params over {ONESHOT} (+" in headline and f"{SPOS} over {ONESHOT} (+" in headline


def test_verdicts_cli_prints_orderings_and_the_seeds_unresolved_pairs_need(seeds_results, tmp_path, capsys):
    from reports.verdicts import main

    results, _ = seeds_results
    assert main(["--results", str(results), "--out", str(tmp_path / "v.md")]) == 0
    text = capsys.readouterr().out
    assert text == (tmp_path / "v.md").read_text()
    assert f"- {SPOS} over {ONESHOT}: +" in text and "over 3 seeds, p = " in text
    assert "| pair (higher mean first) |" in text or "Orderings that hold" in text
    assert main(["--results", str(tmp_path / "nowhere")]) == 2
    assert "holds no results store" in capsys.readouterr().err
