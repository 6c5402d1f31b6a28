"""The HTML report in a real browser: headless Chromium opens the page, every figure loads, every table renders,
and a screenshot is taken. Skipped, saying so, where Chromium is absent (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from helpers import REPO
from odenets.reporting.figures import save
from odenets.reporting.index import RunIndex
from odenets.reporting.report import write_report
from odenets.reporting.tables import render

sys.path.insert(0, str(REPO / "scripts"))
from screenshot import chromium, inspect_page  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(chromium() is None, reason="Chromium not installed: "
                                                   "apt-get install chromium runs this test")]


def test_the_report_page_loads_every_figure_and_table_in_chromium(tmp_path):
    figures = tmp_path / "figures"
    for name in ("first", "second"):
        fig = Figure(figsize=(3, 2))
        fig.subplots().plot([0, 1], [1, 0])
        save(fig, figures, name, about="commit 0123456")
    tables = [render(n, RunIndex(tmp_path / "no-runs", budget="cpu"), memory=False)
              for n in ("heunnet_results", "horesnet_orderings")]
    _, page = write_report(tmp_path / "report", tables, figures, "cpu")
    shot = tmp_path / "shot.png"
    seen = inspect_page(page, shot, height=900)
    assert seen["images"] == 2 and seen["broken"] == 0
    assert seen["tables"] >= 2 + 2 and seen["rows"] > 20  # two verdict tables, two result tables
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:4] == b"\x89PNG"


def test_a_missing_image_is_seen_as_broken(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><body><img src='nowhere.png'><table><tr><td>x</td></tr></table></body></html>")
    assert inspect_page(Path(page)) == {"images": 1, "broken": 1, "tables": 1, "rows": 1}
