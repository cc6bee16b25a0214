"""The HTML report in a real headless browser: it loads, every figure renders, no link is broken.

Needs Chromium from the OS packages (Debian/Ubuntu: `apt-get install -y chromium`, or set $CHROMIUM); skipped with
that instruction when there is none.
"""
from __future__ import annotations

import pytest
from test_reports import make_record, write_records

from reports.browser_check import check_report, find_chromium, screenshot
from reports.build import build_report

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary: apt-get install -y chromium "
                                                          "(or set $CHROMIUM) to run the browser checks")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    records = [make_record(m, s) for m in ("spos", "random") for s in (0, 1)]
    records.append(make_record("random", 0, space="darts_cell", data="cifar10", budget="table1"))
    write_records(tmp / "results", records)
    return build_report(tmp / "results", tmp / "out")


def test_report_loads_and_every_figure_renders(report):
    result = check_report(report, CHROMIUM)
    assert result.ok, result.problems
    assert result.title == "oneshot-bench report"
    imgs = [f for f in result.figures if f["kind"] == "img"]
    assert len(imgs) == 6  # three figures for each of the two settings
    assert all(f["complete"] and f["width"] > 100 and f["height"] > 100 for f in imgs)
    assert "https://arxiv.org/abs/1810.05749" in result.external_links


def test_the_check_catches_broken_figures_and_links(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("""<!DOCTYPE html><html><head><title>bad</title></head><body>
      <a href="#nowhere">dangling anchor</a> <a href="missing.html">missing file</a>
      <figure id="f1"><img src="data:image/png;base64,iVBORw0KGgo=" alt="truncated png"></figure>
      <figure id="f2"><img src="gone.png" alt="missing file"></figure>
      </body></html>""")
    result = check_report(page, CHROMIUM)
    text = "\n".join(result.problems)
    assert not result.ok
    assert "nowhere" in text and "missing.html" in text and "gone.png" in text
    assert "'f1' (img) did not render" in text and "'f2' (img) did not render" in text


def test_screenshot_of_the_report(report, tmp_path):
    png = screenshot(report, tmp_path / "report.png", CHROMIUM, height=1600)
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 20_000
