"""Library side of reports: stable JSON/CSV schema, filters, DataFrames, show, diff, fast series I/O."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import time

import pytest

import greentrack
from greentrack.api import query_runs
from greentrack.cli.common import write_output
from greentrack.errors import GreentrackError, NotFoundError
from greentrack.store import codec
from greentrack.store.sqlite import Store
from greentrack.views.runs import FIELD_NAMES, render, render_csv, render_json, render_markdown, run_record


def make_run(name: str, steps: int = 8, tags: dict | None = None, fail: bool = False, samples: int = 16,
             tokens: int = 2048, step_s: float = 0.03, region: str = "FR") -> str:
    """A real session on the mock GPU: a train phase with steps, then an idle eval phase."""
    s = greentrack.Session(name, region=region, backend="mock", tags=tags or {}, flush_interval_s=0.2, strict=True)
    try:
        with s:
            with s.phase("train"):
                for _ in range(steps):
                    time.sleep(step_s)
                    s.step(samples=samples, tokens=tokens)
            with s.phase("eval"):
                time.sleep(0.1)
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
    return s.id


@pytest.fixture
def three_runs(db_path, run_cache):
    """Three measured runs (one failed), built once and copied into each test's database."""
    def build():
        a = make_run("llama-fp32", tags={"precision": "fp32"}, step_s=0.04)
        b = make_run("llama-bf16", tags={"precision": "bf16"})
        c = make_run("other", fail=True)
        return a, b, c

    return run_cache("report-three-runs", build)


def test_json_report_follows_the_documented_schema(three_runs, db_path):
    rows = query_runs(last=10)
    doc = json.loads(render_json(rows))
    assert doc["schema"] == "greentrack.runs" and doc["version"] == 1
    assert [r["id"] for r in doc["runs"]] == list(reversed(three_runs))  # newest first
    store = Store(db_path)
    for rec in doc["runs"]:
        assert list(rec) == FIELD_NAMES
        raw = store.get_run(rec["id"])
        assert rec["energy_j"] == raw["energy_j"]
        assert rec["energy_kwh"] == pytest.approx(raw["energy_j"] / 3.6e6)
        assert rec["avg_power_w"] == pytest.approx(raw["energy_j"] / raw["duration_s"])
        started = dt.datetime.fromisoformat(rec["started_at"].replace("Z", "+00:00"))
        assert abs(started.timestamp() - raw["started_at"]) < 0.001
        assert rec["region"] == "FRA" and "gCO2e/kWh" in rec["intensity_source"]
        assert rec["devices"] == "Mock GPU"
    by_name = {r["name"]: r for r in doc["runs"]}
    assert by_name["other"]["status"] == "failed" and by_name["other"]["error"].startswith("RuntimeError")
    assert by_name["llama-bf16"]["tags"] == {"precision": "bf16"}
    assert by_name["llama-bf16"]["steps"] == 8 and by_name["llama-bf16"]["tokens"] == 8 * 2048
    assert by_name["llama-bf16"]["j_per_token"] > 0


def test_csv_report_has_the_same_values_as_json(three_runs):
    rows = query_runs(last=10)
    recs = [run_record(r) for r in rows]
    parsed = list(csv.reader(io.StringIO(render_csv(rows))))
    assert parsed[0] == FIELD_NAMES
    assert len(parsed) == 1 + len(recs)
    for line, rec in zip(parsed[1:], recs):
        cells = dict(zip(FIELD_NAMES, line))
        assert float(cells["energy_j"]) == rec["energy_j"]  # repr() keeps every digit
        assert json.loads(cells["tags"]) == rec["tags"]
        assert cells["budget_exceeded"] == "false"
        assert cells["ended_at"] == rec["ended_at"]
        assert (cells["job_id"] == "") == (rec["job_id"] is None)


def test_markdown_escapes_pipes(db_path):
    make_run("a|b", steps=2)
    md = render_markdown(query_runs())
    lines = md.strip().splitlines()
    assert lines[0].startswith("| id | name |") and lines[1].startswith("| --- |")
    assert "a\\|b" in lines[2]
    assert render_markdown([]) == "_no runs_\n"


def test_filters_by_name_tag_status_and_date(three_runs):
    a, b, c = three_runs
    assert [r["id"] for r in query_runs(name="llama-*")] == [b, a]
    assert [r["id"] for r in query_runs(tags={"precision": "fp32"})] == [a]
    assert [r["id"] for r in query_runs(status="failed")] == [c]
    assert query_runs(since=time.time() + 60) == []
    assert len(query_runs(until=time.time() + 60, last=2)) == 2
    with pytest.raises(GreentrackError, match="did you mean: finished"):
        query_runs(status="finshed")
    with pytest.raises(GreentrackError, match="unknown format 'xml'"):
        render([], "xml")


def test_missing_database_reads_as_no_runs(tmp_path):
    assert query_runs(db=tmp_path / "nothing.db") == []
    df = greentrack.runs(db=tmp_path / "nothing.db")
    assert df.empty and "energy_kwh" in df.columns and df.index.name == "id"
    assert not (tmp_path / "nothing.db").exists()


def test_runs_dataframe(three_runs):
    df = greentrack.runs(name="llama-*")
    assert list(df.index) == [three_runs[1], three_runs[0]]
    assert str(df["started_at"].dtype).startswith("datetime64") and str(df["started_at"].dt.tz) == "UTC"
    row = df.loc[three_runs[0]]
    assert row["energy_kwh"] == pytest.approx(row["energy_j"] / 3.6e6)
    assert row["avg_power_w"] == pytest.approx(row["energy_j"] / row["duration_s"])
    assert row["tags"] == {"precision": "fp32"}


def test_load_gives_series_phases_and_devices(three_runs, db_path):
    run = greentrack.load("llama-fp32")
    assert run["id"] == three_runs[0]
    ref = Store(db_path).read_series(run["id"])  # the pure-Python decoder
    s = run["series"]["gpu0"]
    assert list(s["power_w"]) == ref["gpu0"][1]
    assert [t.timestamp() for t in s["time"]] == pytest.approx(ref["gpu0"][0], abs=1e-6)
    assert list(run["phases"]["name"]) == ["train", "eval"]
    assert (run["phases"]["duration_s"] > 0).all()
    assert run["devices"].loc[0, "method"] == "counter"
    with pytest.raises(NotFoundError, match="did you mean: llama-fp32"):
        greentrack.load("llama-fp23")


def test_numpy_decoder_matches_the_codec():
    np = pytest.importorskip("numpy")
    from greentrack.store.series import decode_np

    rng = random.Random(5)
    base = 1_790_000_000.25
    times = [base + 0.1 * i + rng.random() * 0.01 for i in range(5000)]
    powers = [rng.uniform(60, 700) for _ in times]
    blob = codec.encode(times, powers, base)
    t_ref, p_ref = codec.decode(blob, base)
    t, p = decode_np(blob, base)
    assert np.array_equal(p, np.array(p_ref))
    assert np.allclose(t, np.array(t_ref), atol=1e-6, rtol=0)


def test_bin_mean_averages_fills_sparse_bins_and_keeps_gaps():
    np = pytest.importorskip("numpy")
    from greentrack.views.binning import bin_mean

    t = np.arange(1, 101, dtype=float)  # one sample per second, each the mean over the second before it
    p = np.where(t <= 50, 100.0, 300.0)
    _c, mean, lo, hi = bin_mean(t, p, 0.0, 100.0, 4)
    assert list(mean) == [100.0, 100.0, 300.0, 300.0]
    # more bins than samples: every bin takes the sample whose interval covers it
    _c, mean, _lo, _hi = bin_mean(t[:10], p[:10], 0.0, 10.0, 40)
    assert not np.isnan(mean).any() and (mean == 100.0).all()
    # a 50-second hole in a 1 Hz series stays a hole
    tg = np.r_[np.arange(1, 21), np.arange(71, 101)].astype(float)
    _c, mean, _lo, _hi = bin_mean(tg, np.full(len(tg), 200.0), 0.0, 100.0, 10)
    assert np.isnan(mean[3:6]).all() and not np.isnan(mean[[0, 1, 8, 9]]).any()
    assert lo[0] == 100.0 and hi[3] == 300.0


def test_sparkline_scales_and_shows_gaps():
    from greentrack.views.sparkline import sparkline

    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0, None, 7, float("nan")]) == "▁ █ "
    assert sparkline([0, 7], unicode=False) == "_#"
    assert sparkline([5, 5, 5], lo=0, hi=10) == "▅▅▅"
    assert sparkline([]) == ""


def test_show_text_has_devices_power_phases_and_steps(three_runs, db_path):
    from greentrack.api import show_view
    from greentrack.views.show import render_show, show_json

    view = show_view("llama-bf16", db=db_path, width=30)
    text = render_show(view)
    assert "llama-bf16" in text and "counter" in text and "buffer" in text
    assert "region FRA" in text and "France" in text
    assert "budget     none set" in text
    lines = text.splitlines()
    chart = lines[[i for i, ln in enumerate(lines) if ln.startswith("power over time")][0] + 1:]
    spark = [ln for ln in chart if ln.strip().startswith("gpu0 ")][0]
    assert any(ch in spark for ch in "▁▂▃▄▅▆▇█")
    assert "[train" in text and "8 steps: mean" in text and "J/token" in text
    doc = json.loads(show_json(view))
    assert [p["name"] for p in doc["phases"]] == ["train", "eval"]
    assert len(doc["power"]["devices"]["gpu0"]) == 30
    assert doc["devices"][0]["method"] == "counter"


def test_diff_normalises_per_unit_of_work():
    from greentrack.views.diff import diff_runs, render_diff

    def run(rid, energy_j, tokens, dur):
        return {"id": rid, "name": rid, "status": "finished", "energy_j": energy_j, "co2e_kg": energy_j / 3.6e6 * 0.1,
                "duration_s": dur, "steps": 100, "samples": 1000.0, "tokens": tokens, "pue": 1.2, "region": "FRA",
                "tags": {}, "devices": [], "phases": [{"name": "train", "energy_j": energy_j * 0.9}]}

    a, b = run("fp32", 7.2e6, 1e6, 3600.0), run("bf16", 3.6e6, 1.5e6, 1800.0)
    d = diff_runs(a, b, price_per_kwh=0.25)
    rows = {r["metric"]: r for r in d["rows"]}
    assert rows["energy"]["a"] == 2.0 and rows["energy"]["b"] == 1.0 and rows["energy"]["pct"] == -50.0
    assert rows["energy_per_token"]["a"] == 7.2 and rows["energy_per_token"]["b"] == pytest.approx(2.4)
    assert rows["energy_per_token"]["pct"] == pytest.approx(-200 / 3)
    assert rows["cost"]["a"] == pytest.approx(2.0 * 1.2 * 0.25)
    assert rows["phase:train"]["change"] == pytest.approx(-3.24e6)
    assert d["verdict"] == "B used 66.7% less energy per token than A"
    text = render_diff(d)
    assert "energy / token" in text and "-66.7%" in text and "cost at 0.25 USD per kWh" in text


def test_write_output_errors_are_one_line(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(GreentrackError, match="cannot write"):
        write_output("data", blocker / "out.csv")
    with pytest.raises(GreentrackError, match="is a directory"):
        write_output("data", tmp_path)
    write_output("data", tmp_path / "new" / "deeper" / "r.csv")
    assert (tmp_path / "new" / "deeper" / "r.csv").read_text() == "data"


def test_many_phases_are_summed_per_name(db_path):
    from greentrack.api import show_view
    from greentrack.views.show import render_show

    with greentrack.Session("epochs", region="FR", backend="mock", flush_interval_s=0.2) as s:
        for _ in range(7):
            with s.phase("train"):
                time.sleep(0.02)
                s.step()
            with s.phase("eval"):
                time.sleep(0.01)
    run = show_view("epochs", db=db_path, width=40)
    text = render_show(run)
    assert "phases (14, summed per name)" in text
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines() if ln.strip().startswith(("train ", "eval "))}
    assert rows["train"][1] == "7x" and rows["eval"][1] == "7x" and rows["train"][6] == "7"
    from greentrack.units import fmt_energy

    assert rows["train"][3] + " " + rows["train"][4] == fmt_energy(
        sum(p["energy_j"] for p in run["phases"] if p["name"] == "train"))
