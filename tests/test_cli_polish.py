"""What a new user reads: report formats from the file name, the demo's pointers, time zones, grammar, long or
unprintable run names."""

from __future__ import annotations

import json
import time

import pytest

import greentrack


def make_run(name: str = "ft", steps: int = 3, **kw) -> str:
    with greentrack.session(name, region="FR", backend="mock", flush_interval_s=0.2, **kw) as s:
        with s.phase("train"):
            for _ in range(steps):
                time.sleep(0.02)
                s.step(samples=4, tokens=64)
    return s.id


@pytest.mark.parametrize("suffix,check", [
    (".html", lambda t: t.startswith("<!doctype html>")),
    (".HTM", lambda t: t.startswith("<!doctype html>")),
    (".csv", lambda t: t.startswith("id,name,status,")),
    (".json", lambda t: json.loads(t)["schema"] == "greentrack.runs"),
    (".md", lambda t: t.startswith("| id | name |")),
    (".txt", lambda t: t.startswith("id ") and "-----" in t.splitlines()[1]),
    (".out", lambda t: t.startswith("id ")),  # an unknown extension: the default table
])
def test_report_format_follows_the_output_extension(cli, tmp_path, suffix, check):
    make_run()
    out = tmp_path / f"runs{suffix}"
    p = cli("report", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert check(out.read_text()), out.read_text()[:200]


def test_report_refuses_a_format_that_contradicts_the_extension(cli, tmp_path):
    make_run()
    p = cli("report", "--format", "csv", "-o", str(tmp_path / "runs.html"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "--format csv contradicts --output" in p.stderr and "an HTML file" in p.stderr and "runs.csv" in p.stderr
    assert not (tmp_path / "runs.html").exists()
    assert cli("report", "--format", "markdown", "-o", str(tmp_path / "runs.txt")).returncode == 0  # .txt holds any


def test_demo_says_where_the_run_went_and_what_to_try(cli, db_path, tmp_path):
    p = cli("demo", "--steps", "1", "--eval-time", "0.1")
    assert p.returncode == 0, p.stderr
    assert f"stored in your greentrack database: {db_path}" in p.stdout.splitlines()[0]
    assert "--db FILE" in p.stdout.splitlines()[0]
    run_id = json.loads(cli("report", "--format", "json").stdout)["runs"][0]["id"]
    assert f"run {run_id} is stored in {db_path}" in p.stdout
    assert f"greentrack show {run_id}" in p.stdout and "greentrack report" in p.stdout
    assert "(1 step)" in p.stdout and "1 steps" not in p.stdout
    other = tmp_path / "elsewhere.db"
    p = cli("demo", "--steps", "2", "--eval-time", "0.1", "--db", str(other))
    assert "stored in the database given with --db" in p.stdout and f"--db {other}" in p.stdout
    assert other.exists()


@pytest.mark.parametrize("tz,zone", [("Asia/Kolkata", "IST"), ("America/Sao_Paulo", "UTC-03:00"), ("UTC", "UTC")])
def test_tables_say_their_time_zone_and_json_stays_utc(cli, tz, zone):
    make_run()
    env = {"TZ": tz}
    row = cli("report", env=env).stdout.splitlines()[2]
    assert f" {zone} " in row, row
    assert f" {zone} " in next(ln for ln in cli("show", "last", env=env).stdout.splitlines() if "started" in ln)
    rec = json.loads(cli("report", "--format", "json", env=env).stdout)["runs"][0]
    assert rec["started_at"].endswith("Z")


def test_counts_are_pluralised(cli, tmp_path, pytester):
    make_run("one", steps=1)
    assert "  1 step:" in cli("show", "last").stdout
    out = tmp_path / "one.json"
    assert cli("export", "last", "-o", str(out)).stderr.strip() == f"wrote {out} (1 run)"
    p = cli("import", "greentrack", str(out), "--db", str(tmp_path / "other.db"))
    assert p.stdout.strip() == f"imported 1 run from {out}"
    bad = tmp_path / "sc.toml"
    bad.write_text('[scenarios.mine]\nkind = "onprem"\nregion = "FR"\n')
    p = cli("compare", "last", "--scenarios", str(bad), "-s", "mine")
    assert p.returncode == 2 and "an on-prem scenario needs" in p.stderr, p.stderr
    pytester.makepyfile("import time\n\n\ndef test_a():\n    time.sleep(0.05)\n")
    res = pytester.runpytest("-p", "greentrack", "--greentrack")
    res.stdout.fnmatch_lines(["*1 test measured*"])


def test_a_huge_name_does_not_pad_the_tables(cli):
    huge = "n" * 100_000
    run_id = make_run(huge)
    make_run("short")
    lines = cli("report").stdout.splitlines()
    assert max(len(ln) for ln in lines) < 200
    assert any("n" * 39 + "…" in ln for ln in lines)
    show = cli("show", run_id).stdout.splitlines()
    assert len(show[0]) < 250 and "(100,000 characters; --format json has it whole)" in show[0]
    assert json.loads(cli("show", run_id, "--format", "json").stdout)["name"] == huge  # the stored name is kept
    assert json.loads(cli("report", "--format", "json").stdout)["runs"][1]["name"] == huge
    md = cli("report", "--format", "markdown").stdout.splitlines()
    assert max(len(ln) for ln in md) < 250


def test_newlines_and_tabs_do_not_break_tables(cli):
    run_id = make_run("line1\nline2\tcol\x1b[31mred")
    out = cli("report").stdout
    assert len(out.splitlines()) == 3 and "\x1b" not in out
    assert "line1\\nline2\\tcol\\x1b[31mred" in out
    md = cli("report", "--format", "markdown").stdout.splitlines()
    assert len(md) == 3 and "line1\\nline2" in md[2]
    show = cli("show", run_id).stdout
    assert show.startswith("line1\\nline2\\tcol\\x1b[31mred  [") and "\x1b" not in show
    assert json.loads(cli("report", "--format", "json").stdout)["runs"][0]["name"] == "line1\nline2\tcol\x1b[31mred"
    d = cli("diff", run_id, run_id).stdout
    assert d.splitlines()[0].startswith("A  line1\\nline2")
