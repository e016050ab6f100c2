"""The report, show, diff, export and import commands, run as real subprocesses."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

import greentrack
from greentrack.views.runs import FIELD_NAMES


def make_run(name: str, steps: int = 6, tags: dict | None = None, step_s: float = 0.03) -> str:
    s = greentrack.Session(name, region="FR", backend="mock", tags=tags or {}, flush_interval_s=0.2, strict=True)
    with s:
        with s.phase("train"):
            for _ in range(steps):
                time.sleep(step_s)
                s.step(samples=8, tokens=1024)
        with s.phase("eval"):
            time.sleep(0.1)
    return s.id


def one_error_line(p) -> str:
    """The process failed with exit 2 and said so in exactly one line, without a traceback."""
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greentrack: error: "), p.stderr
    return lines[0]


@pytest.fixture
def two_runs(db_path, run_cache):
    """Two measured runs, built once and copied into each test's database."""
    return run_cache("cli-two-runs", lambda: (make_run("ft-fp32", tags={"precision": "fp32"}, step_s=0.05),
                                              make_run("ft-bf16", tags={"precision": "bf16"})))


def test_report_formats(cli, two_runs, tmp_path):
    a, b = two_runs
    p = cli("report", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [r["id"] for r in doc["runs"]] == [b, a]
    p = cli("report", "--format", "csv", "--tag", "precision=fp32")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert list(rows[0]) == FIELD_NAMES and [r["id"] for r in rows] == [a]
    p = cli("report", "--format", "markdown", "--name", "ft-*", "-n", "1")
    assert p.stdout.count("\n| ") == 2 and b in p.stdout and a not in p.stdout
    p = cli("report")
    assert "ft-bf16" in p.stdout and "Mock GPU" in p.stdout
    out = tmp_path / "out" / "runs.json"
    p = cli("report", "--format", "json", "--output", str(out))
    assert p.returncode == 0 and p.stdout == "" and "wrote" in p.stderr
    assert len(json.loads(out.read_text())["runs"]) == 2
    p = cli("report", "--status", "failed")
    assert p.returncode == 0 and p.stdout.strip() == "no runs match these filters"


def test_report_on_an_empty_database(cli, db_path):
    p = cli("report")
    assert p.returncode == 0 and "no runs yet" in p.stdout
    p = cli("report", "--format", "json")
    assert json.loads(p.stdout)["runs"] == []
    p = cli("report", "--format", "csv")
    assert p.stdout.strip() == ",".join(FIELD_NAMES)
    assert "database is empty" in one_error_line(cli("report", "--format", "html"))
    assert "no greentrack database at" in one_error_line(cli("show"))
    assert not db_path.exists()  # reading never creates a database
    from greentrack.store.sqlite import Store

    Store(db_path).close()  # now a database with no runs
    assert "the database holds no runs yet" in one_error_line(cli("show"))
    assert "holds no runs yet" in one_error_line(cli("diff", "last", "-2"))
    assert cli("export").returncode == 0


@pytest.mark.parametrize("args, says", [
    (["report", "--tag", "precision"], "bad tag 'precision'"),
    (["report", "--since", "last tuesday"], "bad date"),
    (["report", "--since", "1d", "--until", "2d"], "is not after"),
    (["report", "--status", "finised"], "did you mean: finished"),
    (["report", "--format", "jsn"], "did you mean: json"),
    (["report", "--last", "0"], "--last must be at least 1"),
])
def test_malformed_filters_are_one_line(cli, args, says):
    assert says in one_error_line(cli(*args))


def test_unwritable_output_is_one_line(cli, two_runs, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "cannot write" in one_error_line(cli("report", "--format", "csv", "-o", str(blocker / "x.csv")))
    assert "cannot write" in one_error_line(cli("report", "--format", "html", "-o", str(blocker / "x.html")))


def test_show_and_unknown_ids(cli, two_runs):
    a, b = two_runs
    p = cli("show", a[:6], "--width", "40")
    assert p.returncode == 0, p.stderr
    assert f"[{a}]" in p.stdout and "counter" in p.stdout and "phases" in p.stdout and "power over time" in p.stdout
    p = cli("show", "-2", "--format", "json")
    assert json.loads(p.stdout)["id"] == a
    p = cli("show", "ft-bf16", "--ascii")
    assert "▁" not in p.stdout and "[train" in p.stdout
    assert f"did you mean: {a}" in one_error_line(cli("show", a[:-1] + ("0" if a[-1] != "0" else "1")))
    assert "did you mean: ft-bf16" in one_error_line(cli("show", "ft-bf61"))


def test_diff(cli, two_runs):
    a, b = two_runs
    p = cli("diff", "ft-fp32", "ft-bf16", "--price-per-kwh", "0.3")
    assert p.returncode == 0, p.stderr
    for label in ("duration", "energy / step", "energy / sample", "energy / token", "cost", "phase train energy"):
        assert label in p.stdout
    assert "B used" in p.stdout and "energy per token than A" in p.stdout
    d = json.loads(cli("diff", a, b, "--format", "json").stdout)
    rows = {r["metric"]: r for r in d["rows"]}
    assert rows["energy"]["b"] - rows["energy"]["a"] == pytest.approx(rows["energy"]["change"])
    assert "cost" not in rows  # no price given
    assert "no run 'nope'" in one_error_line(cli("diff", a, "nope"))
    assert "GREENTRACK_PRICE_PER_KWH" in one_error_line(cli("diff", a, b, env={"GREENTRACK_PRICE_PER_KWH": "cheap"}))


def test_export_import_round_trip(cli, two_runs, tmp_path):
    a, b = two_runs
    out = tmp_path / "export.json"
    p = cli("export", "--series", "-o", str(out))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "greentrack.export" and len(doc["runs"]) == 2
    assert doc["runs"][0]["series"]["gpu0"]["power_w"]
    other = str(tmp_path / "other.db")
    p = cli("import", "greentrack", str(out), "--db", other)
    assert p.returncode == 0 and "imported 2 runs" in p.stdout
    p = cli("import", "greentrack", str(out), "--db", other)
    assert "imported 0 runs" in p.stdout and "2 already there" in p.stdout
    orig = json.loads(cli("show", a, "--format", "json", "--width", "20").stdout)
    copy = json.loads(cli("show", a, "--format", "json", "--width", "20", "--db", other).stdout)
    for k in ("energy_j", "co2e_kg", "tags", "phases", "steps", "tokens", "intensity_source"):
        assert copy[k] == orig[k], k
    assert copy["power"]["devices"]["gpu0"] == orig["power"]["devices"]["gpu0"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": []}')
    assert "not a greentrack export" in one_error_line(cli("import", "greentrack", str(bad)))


def _codecarbon_csv(tmp_path):
    """An emissions.csv written by CodeCarbon's own file output, in its default append mode."""
    from codecarbon.output_methods.emissions_data import EmissionsData
    from codecarbon.output_methods.file import FileOutput

    def row(run_id, project, duration, kwh, kg, ts):
        return EmissionsData(
            timestamp=ts, project_name=project, run_id=run_id, experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
            duration=duration, emissions=kg, emissions_rate=kg / duration, cpu_power=42.5, gpu_power=280.0,
            ram_power=10.0, cpu_energy=kwh * 0.1, gpu_energy=kwh * 0.85, ram_energy=kwh * 0.05, energy_consumed=kwh,
            water_consumed=0.0, country_name="France", country_iso_code="FRA", region="", cloud_provider="",
            cloud_region="", os="Linux", python_version="3.11", codecarbon_version="3.3.2", cpu_count=16,
            cpu_model="AMD EPYC", gpu_count=1, gpu_model="1 x NVIDIA H200", longitude=2.3, latitude=48.8,
            ram_total_size=128, tracking_mode="machine", pue=1.0)

    out = FileOutput("emissions.csv", str(tmp_path), on_csv_write="append")
    out.out(row("run-1", "bert-ft", 600.0, 0.05, 0.05 * 0.056, "2026-11-01T10:10:00"), None)
    out.out(row("run-1", "bert-ft", 1200.0, 0.1, 0.1 * 0.056, "2026-11-01T10:20:00"), None)  # same run, later
    out.out(row("run-2", "resnet", 3600.0, 0.4, 0.4 * 0.056, "2026-11-02T09:00:00"), None)
    return tmp_path / "emissions.csv"


def test_import_codecarbon(cli, tmp_path):
    path = _codecarbon_csv(tmp_path)
    p = cli("import", "codecarbon", str(path))
    assert p.returncode == 0, p.stderr
    assert "imported 2 runs" in p.stdout
    assert "imported 0 runs" in cli("import", "codecarbon", str(path)).stdout
    runs = {r["name"]: r for r in json.loads(cli("report", "--format", "json").stdout)["runs"]}
    bert = runs["bert-ft"]
    assert bert["energy_kwh"] == pytest.approx(0.1) and bert["duration_s"] == 1200.0
    assert bert["co2e_kg"] == pytest.approx(0.0056) and bert["intensity_g_per_kwh"] == pytest.approx(56.0)
    assert bert["region"] == "FRA" and bert["backend"] == "codecarbon" and bert["tags"]["source"] == "codecarbon"
    assert bert["ended_at"].startswith("2026-11-01T") and runs["resnet"]["energy_kwh"] == pytest.approx(0.4)
    shown = json.loads(cli("show", "resnet", "--format", "json").stdout)
    assert {d["key"]: d["method"] for d in shown["devices"]} == {"cpu": "codecarbon", "gpu": "codecarbon",
                                                                 "ram": "codecarbon"}
    assert sum(d["energy_j"] for d in shown["devices"]) == pytest.approx(0.4 * 3.6e6)
    bad = tmp_path / "not-cc.csv"
    bad.write_text("a,b\n1,2\n")
    assert "missing columns" in one_error_line(cli("import", "codecarbon", str(bad)))
    assert "cannot read" in one_error_line(cli("import", "codecarbon", str(tmp_path / "missing.csv")))
