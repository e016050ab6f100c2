"""Import never poisons the store: every field checked, one transaction per file, one line naming the field.

In process with click's CliRunner (no real process is needed to read a file), plus property-based
tests with hypothesis: no file makes a later report fail, and no file is ever partly imported.
"""

from __future__ import annotations

import copy
import csv
import datetime as _dt
import io
import json
import math
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import greentrack
from greentrack.errors import GreentrackError
from greentrack.store.sqlite import Store
from greentrack.store.transfer import dumps, export_runs, import_codecarbon, import_export

CC_HEADER = ["timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
             "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
             "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os", "python_version",
             "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "ram_total_size",
             "tracking_mode", "pue"]
CC_ROW = {"timestamp": "2026-11-01T10:20:00", "project_name": "bert-ft", "run_id": "run-1",
          "experiment_id": "5b0fa12a", "duration": "1200.0", "emissions": "0.0056", "emissions_rate": "4.6e-06",
          "cpu_power": "42.5", "gpu_power": "280.0", "ram_power": "10.0", "cpu_energy": "0.01", "gpu_energy": "0.085",
          "ram_energy": "0.005", "energy_consumed": "0.1", "country_name": "France", "country_iso_code": "FRA",
          "region": "", "cloud_provider": "", "cloud_region": "", "os": "Linux", "python_version": "3.11",
          "codecarbon_version": "3.3.2", "cpu_count": "16", "cpu_model": "AMD EPYC", "gpu_count": "1",
          "gpu_model": "1 x NVIDIA H200", "ram_total_size": "128", "tracking_mode": "machine", "pue": "1.0"}


def cli(*args: str):
    from greentrack.cli import load_commands

    return CliRunner().invoke(load_commands(), list(args))


def one_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("greentrack: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def counts(db: Path) -> tuple[int, ...]:
    con = sqlite3.connect(db)
    try:
        return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("runs", "run_tags", "devices", "phases", "series"))
    finally:
        con.close()


@pytest.fixture(scope="module")
def good_doc(tmp_path_factory) -> dict:
    """A real export of three measured runs, with series."""
    db = tmp_path_factory.mktemp("src") / "src.db"
    ids = []
    for name in ("a", "b", "c"):
        s = greentrack.Session(name, backend="mock", db=db, flush_interval_s=0.1, tags={"p": "bf16"}, exact_edges=False)
        with s:
            with s.phase("train"):
                time.sleep(0.3)
                s.step(samples=4)
        ids.append(s.id)
    doc = export_runs(Store(db, write=False), ids, series=True)
    assert all(r["series"]["gpu0"]["t_s"] and r["devices"] and r["phases"] for r in doc["runs"])
    return doc


def write_doc(tmp_path: Path, doc) -> Path:
    p = tmp_path / "in.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc, allow_nan=True))
    return p


@pytest.mark.parametrize("where, field, value, says", [
    ("run", "started_at", 1e300, "field started_at must be a unix time between 2000 and 2100"),
    ("run", "started_at", -1e12, "field started_at"),
    ("run", "energy_j", "lots", "field energy_j must be a finite number of joules >= 0, got 'lots'"),
    ("run", "energy_j", 1e308, "field energy_j"),
    ("run", "energy_j", math.inf, "field energy_j"),
    ("run", "energy_j", math.nan, "field energy_j"),
    ("run", "energy_j", 10**400, "field energy_j"),
    ("run", "co2e_kg", -0.5, "field co2e_kg"),
    ("run", "pue", 0, "field pue must be a PUE > 0"),
    ("run", "pue", -1.2, "field pue"),
    ("run", "status", "<script>alert(1)</script>", "field status must be one of running, finished"),
    ("run", "name", "", "field name must be non-empty text"),
    ("run", "id", None, "field id is required"),
    ("run", "tags", {"k": [1]}, "field tags"),
    ("run", "notes", "text", "field notes must be a list of text"),
    ("run", "ended_at", 1.0e9, "field ended_at"),
    ("device", "name", None, "device #1: field name is required"),
    ("device", "energy_j", -5.0, "device #1: field energy_j"),
    ("phase", "started_at", "soon", "phase #1: field started_at"),
    ("series", "power_w", [1.0], "series 'gpu0': t_s has"),
])
def test_import_rejects_a_bad_field_with_one_line_naming_the_record_and_field(good_doc, tmp_path, db_path, where,
                                                                              field, value, says):
    Store(db_path).close()
    doc = copy.deepcopy(good_doc)
    run = doc["runs"][1]
    target = {"run": run, "device": (run["devices"] or [{}])[0], "phase": (run["phases"] or [{}])[0],
              "series": run["series"].get("gpu0", {})}[where]
    if value is None:
        target.pop(field, None)
    else:
        target[field] = value
    line = one_line(cli("import", "greentrack", str(write_doc(tmp_path, doc))))
    assert "run #2" in line and says in line, line
    assert counts(db_path) == (0, 0, 0, 0, 0)  # nothing of runs #1 and #3 either: one transaction per file


@pytest.mark.parametrize("text, says", [
    ("[]", "not a greentrack export"),
    ('"x"', "not a greentrack export"),
    ('{"schema": "greentrack.export", "version": "1", "runs": []}', "field version must be a whole number"),
    ('{"schema": "greentrack.export", "version": 99, "runs": []}', "newer than this greentrack reads"),
    ('{"schema": "greentrack.export", "version": 1, "runs": {}}', "runs must be a list"),
    ('{"schema": "greentrack.export", "version": 1, "runs": [1]}', "run #1: must be an object"),
    ('{"schema": "greentrack.export", "version": 1, "runs": [{"id": "a", "name": "n", "status": "finished", '
     '"started_at": 1.8e9, "devices": "gpu"}]}', "devices must be a list"),
    ('{"schema": "greentrack.export", "version": 1, "runs": [{"id": "a", "name": "n", "status": "finished", '
     '"started_at": 1.8e9, "phases": [7]}]}', "phase #1: must be an object"),
    ('{"schema": "greentrack.export", "version": 1, "runs": [{"id": "a", "name": "n", "status": "finished", '
     '"started_at": 1.8e9, "series": []}]}', "series must be an object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("{not json", "is not JSON"),
])
def test_malformed_export_files_are_one_line_never_a_bare_exception_name(tmp_path, db_path, text, says):
    line = one_line(cli("import", "greentrack", str(write_doc(tmp_path, text))))
    assert says in line, line
    for name in ("AttributeError", "KeyError", "IntegrityError", "ProgrammingError", "RecursionError", "TypeError",
                 "ValueError"):
        assert name not in line


def test_import_of_a_directory_or_binary_file_is_one_line(tmp_path):
    r = cli("import", "greentrack", str(tmp_path))  # click itself refuses it: a usage error, exit 2
    assert r.exit_code == 2 and "is a directory" in r.stderr and "Traceback" not in r.output
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in one_line(cli("import", "greentrack", str(tmp_path / "bin.json")))


def test_a_good_export_imports_whole_and_twice_adds_nothing(good_doc, tmp_path, db_path):
    path = write_doc(tmp_path, good_doc)
    r = cli("import", "greentrack", str(path))
    assert r.exit_code == 0 and "imported 3 runs" in r.output
    before = counts(db_path)
    assert before[0] == 3 and before[4] > 0
    assert "3 already there" in cli("import", "greentrack", str(path)).output
    assert counts(db_path) == before


def _cc_csv(tmp_path: Path, rows: list[dict]) -> Path:
    p = tmp_path / "emissions.csv"
    with open(p, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CC_HEADER)
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return p


@pytest.mark.parametrize("field, value, says", [
    ("duration", "1e300", "row 3: column duration must be a finite number"),
    ("energy_consumed", "inf", "row 3: column energy_consumed"),
    ("energy_consumed", "", "row 3: column energy_consumed is required"),
    ("emissions", "-1", "row 3: column emissions"),
    ("pue", "0", "row 3: column pue must be a finite number, > 0"),
    ("gpu_energy", "lots", "row 3: column gpu_energy"),
    ("timestamp", "yesterday", "row 3: column timestamp is not an ISO date"),
    ("timestamp", "2500-01-01T00:00:00", "row 3: column timestamp must be between 2000 and 2100"),
])
def test_codecarbon_import_checks_every_field_and_is_all_or_nothing(tmp_path, db_path, field, value, says):
    Store(db_path).close()
    rows = [dict(CC_ROW, run_id=f"r{i}") for i in range(3)]
    rows[1][field] = value
    line = one_line(cli("import", "codecarbon", str(_cc_csv(tmp_path, rows))))
    assert says in line, line
    assert counts(db_path)[0] == 0


def test_a_codecarbon_run_with_near_zero_energy_leaves_the_derived_intensity_out(tmp_path, db_path):
    row = dict(CC_ROW, energy_consumed="1e-300", emissions="1e-3")
    r = cli("import", "codecarbon", str(_cc_csv(tmp_path, [row])))
    assert r.exit_code == 0, r.output
    run = Store(db_path).list_runs()[0]
    assert run["intensity_g_per_kwh"] is None and run["co2e_kg"] == 1e-3


# property-based: any file ---------------------------------------------------------------------------
FUZZ_EXAMPLES = int(os.environ.get("GREENTRACK_FUZZ_EXAMPLES", "50"))  # e.g. 2000 for a thorough run
JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
T_MIN, T_MAX = 946_684_800.0, 4_000_000_000.0  # the documented range (2000-2100), with room for durations
TEXT = st.text(max_size=30)  # any unicode: control characters, RTL marks, emoji...
FIN = st.floats(min_value=0.0, max_value=1e18)
OPT = {
    "duration_s": st.floats(0, 3.2e9), "energy_j": FIN, "co2e_kg": st.floats(0, 1e15), "region": TEXT,
    "intensity_g_per_kwh": st.floats(0, 10_000), "intensity_source": TEXT, "pue": st.floats(1e-9, 100),
    "backend": TEXT, "host": TEXT, "pid": st.integers(0, 2**31), "command": TEXT,
    "tags": st.dictionaries(st.text(min_size=1, max_size=5).filter(str.strip), TEXT, max_size=3),
    "job_id": TEXT, "rank": st.integers(0, 64), "world_size": st.integers(0, 64), "steps": st.integers(0, 2**62),
    "samples": FIN, "tokens": FIN, "error": TEXT, "notes": st.lists(TEXT, max_size=2),
    "stats": st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.floats(0, 1e9), TEXT), max_size=3),
    "budget": st.one_of(st.none(), st.fixed_dictionaries({"budget": TEXT, "limit": FIN, "usage": FIN})),
    "version": TEXT,
}
NAME = st.text(min_size=1, max_size=40).filter(str.strip)


@st.composite
def valid_run(draw, i: int) -> dict:
    t0 = draw(st.floats(T_MIN, T_MAX))
    run = {"id": f"r{i:03d}" + draw(st.text(alphabet="0123456789abcdef", max_size=8)), "name": draw(NAME),
           "status": draw(st.sampled_from(["finished", "failed", "interrupted", "running", "lost"])), "started_at": t0}
    run.update(draw(st.fixed_dictionaries({}, optional=OPT)))
    if draw(st.booleans()):
        run["ended_at"] = t0 + draw(st.floats(0, 1e7))
    keys = draw(st.lists(st.sampled_from(["gpu0", "gpu1", "cpu0", "dram0"]), unique=True, max_size=3))
    run["devices"] = [{"key": k, "kind": k[:-1], "name": draw(NAME), "idx": 0, "method": draw(TEXT),
                       "energy_j": draw(st.one_of(st.none(), FIN)), "avg_power_w": draw(st.floats(0, 1e6)),
                       "peak_power_w": draw(st.floats(0, 1e6)), "n_samples": draw(st.integers(0, 10**9)),
                       "info": draw(st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))} for k in keys]
    run["phases"] = []
    for seq in range(draw(st.integers(0, 2))):
        p0 = t0 + draw(st.floats(0, 1e5))
        run["phases"].append({"seq": seq, "name": draw(TEXT), "started_at": p0,
                              "ended_at": p0 + draw(st.floats(0, 1e5)), "energy_j": draw(st.one_of(st.none(), FIN)),
                              "steps": draw(st.integers(0, 10**6))})
    if keys and draw(st.booleans()):
        n = draw(st.integers(0, 5))
        run["series"] = {keys[0]: {"t_s": draw(st.lists(st.floats(-1e4, 1e6), min_size=n, max_size=n)),
                                   "power_w": draw(st.lists(st.floats(0, 1e6), min_size=n, max_size=n))}}
    return run


@st.composite
def export_doc(draw) -> object:
    """A valid export, or one with a single field (or the whole file) replaced by anything at all."""
    runs = [draw(valid_run(i)) for i in range(draw(st.integers(0, 3)))]
    doc: dict = {"schema": "greentrack.export", "version": 1, "runs": runs}
    kind = draw(st.sampled_from(["valid", "valid", "one bad field", "one bad field", "junk"]))
    if kind == "junk":
        return draw(JUNK)
    if kind == "one bad field" and runs:
        run = draw(st.sampled_from(runs))
        targets = [run] + run["devices"] + run["phases"] + list((run.get("series") or {}).values())
        target = draw(st.sampled_from(targets))
        key = draw(st.sampled_from(sorted(target) + ["extra"]))
        target[key] = draw(JUNK)
    return doc


def _everything_reads(db: Path) -> None:
    """Every reader on every run: report in each text format, show, show JSON, export."""
    from greentrack.api import query_runs, run_with_series
    from greentrack.views.runs import render
    from greentrack.views.show import build_view, render_show, show_json

    def strict(text: str) -> None:
        json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))

    rows = query_runs(db=db, last=None)
    for fmt in ("table", "csv", "markdown"):
        render(rows, fmt)
    strict(render(rows, "json"))
    store = Store(db, write=False)
    for r in rows:
        view = build_view(*run_with_series(store, r["id"]), width=20)
        render_show(view)
        strict(show_json(view))
    strict(dumps(export_runs(store, [r["id"] for r in rows], series=True)))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=export_doc())
def test_no_export_file_makes_a_later_report_fail_or_is_partly_imported(doc):
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "fuzz.db"
        Store(db).close()
        path = Path(d) / "in.json"
        path.write_text(json.dumps(doc, allow_nan=True, default=str))
        before = counts(db)
        try:
            done, skipped = import_export(Store(db), path)
        except GreentrackError as exc:
            event("rejected")
            assert "\n" not in str(exc)
            assert counts(db) == before, "a rejected file left rows behind"
        else:
            event(f"imported {done} run(s)")
            assert counts(db)[0] == before[0] + done and done + skipped == len(doc["runs"])
        _everything_reads(db)


CELL = st.one_of(st.sampled_from(["", "nan", "inf", "-inf", "-1", "0", "1e300", "1e-300", "abc", "2026-13-40",
                                  "1.5", "3600", "2026-11-01T10:00:00", "\x00", "=HYPERLINK(1)"]),
                 st.text(max_size=6), st.floats(allow_nan=True).map(repr))
NUM = st.floats(0, 1e6).map(repr)


@st.composite
def codecarbon_rows(draw) -> list[dict]:
    """CodeCarbon rows with valid values, or with one cell replaced by anything at all."""
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        row = dict(CC_ROW, project_name=draw(TEXT), run_id=draw(st.text(max_size=8)),
                   timestamp=draw(st.datetimes(min_value=_dt.datetime(2001, 1, 2),
                                               max_value=_dt.datetime(2099, 12, 30))).isoformat(),
                   duration=draw(st.floats(0, 1e7).map(repr)), energy_consumed=draw(NUM),
                   emissions=draw(st.one_of(st.just(""), NUM)),
                   pue=draw(st.one_of(st.just(""), st.floats(1, 3).map(repr))))
        for k in ("cpu_energy", "gpu_energy", "ram_energy", "cpu_power", "gpu_power", "ram_power", "gpu_count"):
            row[k] = draw(st.one_of(st.just(""), NUM))
        rows.append(row)
    if draw(st.booleans()):
        row = draw(st.sampled_from(rows))
        row[draw(st.sampled_from(CC_HEADER))] = draw(CELL)
    return rows


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=codecarbon_rows())
def test_no_codecarbon_csv_makes_a_later_report_fail_or_is_partly_imported(rows):
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "fuzz.db"
        Store(db).close()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CC_HEADER)
        w.writeheader()
        for r in rows:
            w.writerow(r)
        path = Path(d) / "emissions.csv"
        path.write_text(buf.getvalue(), encoding="utf-8")
        before = counts(db)
        try:
            done, _ = import_codecarbon(Store(db), path)
            event(f"imported {done} run(s)")
        except GreentrackError as exc:
            event("rejected")
            assert "\n" not in str(exc)
            assert counts(db) == before, "a rejected file left rows behind"
        _everything_reads(db)
