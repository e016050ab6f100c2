"""Guarantee: text stored by anyone is shown, never obeyed.

Names, tags, phases and errors holding terminal escape sequences are shown escaped by every
terminal view, piped or not; CSV cells that a spreadsheet would run as a formula are
neutralised (OWASP); the HTML report draws ``$`` as a dollar, and one run that cannot be drawn
never costs the report of the others.
"""

from __future__ import annotations

import csv
import io
import re
import time

import pytest

import greentrack
from greentrack.store.sqlite import Store

CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;pwned\x07"
CLIPBOARD = "\x1b]52;c;ZWNobyBoaQ==\x07"
C1 = "\x9b31m"  # an 8-bit CSI
BIDI = "\u202egnp.exe"
HOSTILE = f"evil{CLEAR}{TITLE}{CLIPBOARD}{C1}\r\nfake-row{BIDI}"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def make_hostile_runs(monkeypatch) -> tuple[str, str]:
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    with greentrack.session(HOSTILE, tags={f"k{CLEAR}": f"v{TITLE}"}, region="FR") as a:
        with a.phase(f"train{CLIPBOARD}"):
            a.step(samples=1)
            time.sleep(0.05)
    with pytest.raises(RuntimeError):
        with greentrack.session(f"=HYPERLINK(\"http://x\"){TITLE}", region="FR") as b:
            with b.phase("cost $5 and $6"):
                time.sleep(0.05)
            raise RuntimeError(f"boom{CLEAR}")
    return a.id, b.id


def assert_clean(text: str) -> None:
    bad = RAW.findall(text)
    assert not bad, f"raw control characters reached the output: {bad!r}"


@pytest.mark.parametrize("args", [("report",), ("report", "--format", "markdown"), ("show", "{a}"), ("show", "{b}"),
                                  ("diff", "{a}", "{b}"), ("compare", "{a}", "--scenario", "onprem:FR"),
                                  ("show", "{hostile}"), ("regions", "{hostile}"), ("export", "{a}")])
def test_terminal_views_escape_control_characters_even_when_piped(args, monkeypatch, cli, db_path):
    a, b = make_hostile_runs(monkeypatch)
    argv = [x.format(a=a, b=b, hostile=HOSTILE) for x in args]
    out = cli(*argv)  # stdout and stderr are pipes here
    assert_clean(out.stdout)
    assert_clean(out.stderr)
    assert out.returncode == (2 if args[0] == "regions" else 0), out.stderr
    if argv in (["report"], ["show", a], ["show", HOSTILE]):
        assert "\\x1b[2J" in out.stdout  # shown, escaped


def test_a_name_with_a_newline_cannot_fake_a_report_row(monkeypatch, cli, db_path):
    make_hostile_runs(monkeypatch)
    lines = cli("report").stdout.splitlines()
    assert not any(line.startswith("fake-row") for line in lines)
    assert sum("evil" in line for line in lines) == 1


def test_the_live_line_escapes_the_run_name(monkeypatch):
    from greentrack.measure.progress import status_text

    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    with greentrack.session(HOSTILE, store=False) as s:
        text = status_text(s)
    assert_clean(text)
    assert "\\x1b[2J" in text  # shown escaped (the name is cut at 30 columns)


def test_notices_on_stderr_escape_what_a_plugin_says(capsys):
    from greentrack.notify import say_once, warn_once

    warn_once(f"plug{CLEAR}", "greentrack_samples", RuntimeError(f"oops{CLIPBOARD}"))
    say_once(f"a source named {TITLE}")
    assert_clean(capsys.readouterr().err)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("cmd", [("report", "--format", "csv"), ("export", "--format", "csv")])
def test_csv_cells_that_would_run_as_formulas_are_neutralised(cmd, monkeypatch, cli, db_path):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    names = ["=1+1", "+SUM(A1)", "-2+3", "@cmd", "\tx", "\r=y", "＝FULLWIDTH", "plain", "a=b"]
    for n in names:
        with greentrack.session(n, tags={"note": "=HYPERLINK(\"http://evil\")"}, region="FR"):
            pass
    out = cli(*cmd)
    assert out.returncode == 0, out.stderr
    rows = {r["id"]: r for r in _csv_rows(out.stdout)}
    got = sorted(r["name"] for r in rows.values())
    assert got == sorted(["'=1+1", "'+SUM(A1)", "'-2+3", "'@cmd", "'\\tx", "'\\r=y", "'＝FULLWIDTH", "plain", "a=b"])
    for r in rows.values():
        for k, v in r.items():
            assert not v.startswith(("=", "+", "@", "\t", "\r")), (k, v)
            if k not in ("energy_j", "energy_kwh", "co2e_kg", "duration_s", "avg_power_w", "intensity_g_per_kwh",
                         "pue", "unmeasured_s", "steps"):
                assert not v.startswith("-"), (k, v)
        assert float(r["energy_j"]) >= 0  # numbers stay numbers


def test_codecarbon_project_names_are_neutralised_on_the_way_out(tmp_path, cli, db_path):
    cc = tmp_path / "emissions.csv"
    cc.write_text("timestamp,project_name,run_id,duration,emissions,energy_consumed,country_iso_code\n"
                  "2026-11-01T10:00:00,=HYPERLINK(\"http://evil\"),r1,60,0.001,0.01,FRA\n")
    assert cli("import", "codecarbon", str(cc)).returncode == 0
    row = _csv_rows(cli("report", "--format", "csv").stdout)[0]
    assert row["name"] == "'=HYPERLINK(\"http://evil\")"
    assert Store(db_path).list_runs(last=1)[0]["name"] == "=HYPERLINK(\"http://evil\")"  # stored as given


def test_html_report_draws_dollars_as_dollars(monkeypatch, cli, db_path, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    for name, phases in (("cost $5 and $6", ["$\\frac{a}{b}$", "price $x", "$$"]), ("ok run", ["a", "b"])):
        with greentrack.session(name, region="FR") as s:
            for ph in phases:
                with s.phase(ph):
                    time.sleep(0.02)
    out = tmp_path / "r.html"
    res = cli("report", "--format", "html", "-o", str(out))
    assert res.returncode == 0, res.stderr
    html = out.read_text()
    assert html.count("class='chart power'") == 2  # both runs drawn
    assert "cost $5 and $6" in html and "$\\frac{a}{b}$" in html  # drawn as written, not as math
    assert "could not be drawn" not in html


def test_one_run_that_cannot_be_drawn_never_blocks_the_others(monkeypatch):
    pytest.importorskip("matplotlib")
    from greentrack.views import html as html_view

    def run(i: int) -> dict:
        return {"id": f"r{i}", "name": f"run {i}", "status": "finished", "started_at": 1e9, "ended_at": 1e9 + 10,
                "duration_s": 10.0, "energy_j": 100.0, "devices": [], "phases": [], "notes": []}

    real = html_view.power_chart

    def flaky(Figure, r, series):
        if r["id"] == "r1":
            raise ValueError("a chart that cannot be drawn")
        return real(Figure, r, series)

    monkeypatch.setattr(html_view, "power_chart", flaky)
    import numpy as np

    series = {"gpu0": (np.array([1e9 + 1, 1e9 + 5, 1e9 + 9]), np.array([10.0, 20.0, 10.0]))}
    text = html_view.render_html([run(0), run(1), run(2)], [(run(0), series), (run(1), series), (run(2), series)])
    assert text.count("class='chart power'") == 2
    assert "this run could not be drawn (ValueError: a chart that cannot be drawn)" in text
    assert text.rstrip().endswith("</html>")


def test_one_line_and_csv_cell_are_what_the_docs_say():
    from greentrack.units import csv_cell, one_line, terminal_safe

    assert one_line("a\x1bb\nc\td") == "a\\x1bb\\nc\\td"
    assert terminal_safe("a\x1bb\nc") == "a\\x1bb\nc"
    assert one_line("\u202eabc") == "\\u202eabc"
    assert [csv_cell(x) for x in ("=1", "+1", "-1", "@a", "\t", "ok", "")] == ["'=1", "'+1", "'-1", "'@a", "'\\t",
                                                                              "ok", ""]
