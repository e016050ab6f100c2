"""The self-contained HTML report: content, no external resources, lazy matplotlib, a real browser."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import greentrack
from greentrack.api import html_report as render_html
from greentrack.api import query_runs

ROOT = Path(__file__).resolve().parent.parent


def make_run(name: str, tags: dict | None = None, steps: int = 8) -> str:
    with greentrack.session(name, region="FR", backend="mock", tags=tags or {}, flush_interval_s=0.2) as s:
        with s.phase("train"):
            for _ in range(steps):
                time.sleep(0.03)
                s.step(samples=8, tokens=512)
        with s.phase("eval"):
            time.sleep(0.1)
    return s.id


class Inventory(HTMLParser):
    """Counts tags and collects every URL the page would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for k, v in attrs:
            if k in ("src", "href", "xlink:href") and v and not v.startswith("#"):
                self.urls.append(v)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def runs(db_path, run_cache):
    """Two measured runs, built once and copied into each test's database."""
    return run_cache("html-runs", lambda: [make_run("ft-fp32", {"precision": "fp32"}),
                                           make_run("ft-bf16", {"precision": "bf16"})])


def test_report_holds_table_charts_and_phases(runs, db_path):
    html = render_html(query_runs(last=10), detail=5)
    inv = Inventory()
    inv.feed(html)
    text = " ".join(inv.text)
    assert inv.urls == []  # self-contained: nothing to fetch
    assert inv.tags.get("script", 0) == 0 and inv.tags.get("link", 0) == 0
    assert inv.tags["svg"] == 4  # a power chart and a phase chart per run
    for rid in runs:
        assert f"id='run-{rid}'" in html and f"href='#run-{rid}'" in html
    assert "power per device" in text and "energy per phase" in text
    assert "counter" in text and "France" in text and "total of 2 runs" in text
    assert html.count("<section class=run") == 2


def test_detail_limits_the_charts(runs):
    html = render_html(query_runs(last=10), detail=1)
    assert html.count("<section class=run") == 1 and "1 more run in the table only" in html


def test_without_matplotlib_the_report_has_tables(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    html = render_html(query_runs(last=10))
    assert "<svg" not in html and "pip install 'greentrack[html]'" in html
    assert html.count("<section class=run") == 2


def test_heavy_imports_stay_lazy():
    code = ("import sys, greentrack.views.runs, greentrack.views.html, greentrack.views.show, greentrack.views.diff, "
            "greentrack.store.transfer\n"
            "heavy = [m for m in ('matplotlib', 'pandas', 'numpy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_cli_writes_under_reports_by_default(cli, runs, tmp_path):
    p = cli("report", "--format", "html", cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    files = list((tmp_path / "reports").glob("greentrack-report-*.html"))
    assert len(files) == 1 and p.stdout.strip() == f"wrote {files[0].relative_to(tmp_path)} (2 runs)"
    assert files[0].read_text().startswith("<!doctype html>")


def test_scenario_comparison_section(cli, runs, tmp_path):
    if importlib.util.find_spec("greentrack.carbon.compare") is None:
        pytest.skip("greentrack.carbon.compare is not there")
    out = tmp_path / "r.html"
    p = cli("report", "--format", "html", "--scenario", "aws:us-east-1", "--scenario", "onprem:FR", "-o", str(out))
    assert p.returncode == 0, p.stderr
    html = out.read_text()
    assert "Scenarios for ft-bf16" in html and "greentrack-compare" in html and "onprem:FR" in html
    p = cli("report", "--format", "html", "--scenario", "no-such-cloud", "-o", str(out))
    assert p.returncode == 2 and p.stderr.startswith("greentrack: error:")


def test_renders_in_headless_chromium(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import html_screenshot as hs
    finally:
        sys.path.pop(0)
    if hs.find_chromium() is None:
        pytest.skip("chromium is not installed")
    pytest.importorskip("PIL")
    db = tmp_path / "shot.db"
    make_2gpu_run(UNICODE_NAME, monkeypatch, db=db)
    page = tmp_path / "page.html"
    page.write_text(render_html(query_runs(db=db), db=db))
    png = hs.screenshot(page, tmp_path / "page.png", width=1280, height=1200)
    size, colours = hs.colour_count(png)
    assert size == (1280, 1200)
    assert colours > 50  # text, table shading and a chart; a blank or error page has a handful
    from PIL import Image

    with Image.open(png) as im:  # the title's green is drawn near the top left
        top = im.convert("RGB").crop((0, 0, 500, 120))
        assert any(g > r + 40 and g > b + 20 for _n, (r, g, b) in top.getcolors(1 << 16))


# what a new user saw at 1280 px: a 2-GPU run, a non-Latin name, long tags ------------------------------
UNICODE_NAME = "微调-llama · Ωmega"


def make_2gpu_run(name: str, monkeypatch, db=None) -> str:
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")
    with greentrack.session(name, region="FR", backend="mock", db=db, flush_interval_s=0.2,
                            tags={"precision": "bf16", "technique": "full-fine-tune-with-a-long-tag-value",
                                  "dataset": "the-pile-deduplicated-shard-0001", "owner": "research-team"}) as s:
        with s.phase("warmup"):
            time.sleep(0.2)
        with s.phase("train"):
            for _ in range(8):
                time.sleep(0.03)
                s.step()
        with s.phase("eval"):
            time.sleep(0.2)
    monkeypatch.delenv("GREENTRACK_MOCK_GPUS")
    return s.id


def test_two_gpu_lines_are_distinct_and_the_legend_clears_the_phase_names(monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from greentrack.store import open_store
    from greentrack.store.series import read_series_np
    from greentrack.views.charts import matplotlib_figure, power_figure, text_fonts

    rid = make_2gpu_run("two-gpus", monkeypatch)
    store = open_store(None, create=False)
    run, series = store.get_run(rid), read_series_np(store, rid)
    assert sorted(series) == ["gpu0", "gpu1"]
    with text_fonts([run["name"]]):
        fig = power_figure(matplotlib_figure(), run, series)
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        lines = [ln for ln in ax.get_lines() if ln.get_label() in ("gpu0", "gpu1")]
        assert len(lines) == 2
        a, b = lines
        assert a.get_color() != b.get_color() and a.get_linestyle() != b.get_linestyle()
        assert a.get_linewidth() > b.get_linewidth() and b.get_zorder() > a.get_zorder()  # the wide one underneath
        legend = ax.get_legend().get_window_extent(renderer)
        labels = [t.get_window_extent(renderer) for t in ax.texts if t.get_gid() == "phase-label"]
        assert len(labels) == 3
        assert not any(legend.overlaps(lb) for lb in labels)
        assert legend.x0 >= ax.get_window_extent(renderer).x1  # outside the plot: it hides no line either


def test_non_latin_names_draw_without_warnings(monkeypatch, cli, tmp_path):
    pytest.importorskip("matplotlib")
    import warnings

    make_2gpu_run(UNICODE_NAME, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html = render_html(query_runs(last=10))
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]
    assert UNICODE_NAME in html
    out = tmp_path / "r.html"
    p = cli("report", "-o", str(out))
    assert p.returncode == 0 and p.stderr == "" and p.stdout == f"wrote {out} (1 run)\n", p.stderr


def test_runs_table_fits_at_1280_and_1400_px(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import html_screenshot as hs
    finally:
        sys.path.pop(0)
    if hs.find_chromium() is None:
        pytest.skip("chromium is not installed")
    db = tmp_path / "wide.db"
    make_2gpu_run(UNICODE_NAME, monkeypatch, db=db)
    make_2gpu_run("llama-7b-full-fine-tune-on-the-long-named-dataset-v2-" + "x" * 80, monkeypatch, db=db)
    page = tmp_path / "page.html"
    page.write_text(render_html(query_runs(db=db), db=db))
    for width in (1280, 1400):
        lay = hs.layout(page, width=width)
        vw = lay["viewport"]
        assert lay["page"] <= vw, (width, lay)  # no horizontal scrolling of the page
        for _left, right, scroll_w, client_w in lay["wide"] + lay["table"]:
            assert right <= vw + 1 and scroll_w <= client_w + 1, (width, lay)  # the table does not overflow
        for _left, right, scroll_w, client_w in lay["tags"] + lay["names"]:
            assert right <= vw + 1 and scroll_w <= client_w + 1, (width, lay)  # nothing clipped
