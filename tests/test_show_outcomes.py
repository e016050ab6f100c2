"""What show, diff and the run notes say in the cases a new user trips on: a budget that held, a lost run,
a run compared with itself, a cost's currency, a misspelt region."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import stored_energy_j, wait_for

import greentrack
from greentrack.store.sqlite import Store


def make_run(name: str, **kw) -> greentrack.Session:
    with greentrack.session(name, region="FR", backend="mock", flush_interval_s=0.2, **kw) as s:
        for _ in range(5):
            time.sleep(0.03)
            s.step(samples=8, tokens=1024)
    return s


def test_show_says_a_session_budget_held(cli):
    make_run("held", budget_kwh=1.0)
    out = cli("show", "last").stdout
    assert "budget     within: energy " in out and "kWh <= limit 1 kWh" in out and "none set" not in out
    make_run("unbudgeted")
    assert "budget     none set" in cli("show", "last").stdout


def test_show_says_a_pyproject_pytest_budget_held(pytester, cli):
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        energy_budget_kwh = 100
    """)
    pytester.makepyfile("def test_a():\n    assert True\n")
    res = pytester.runpytest("-p", "greentrack")
    res.assert_outcomes(passed=1)
    out = cli("show", "last").stdout
    assert "budget     within: energy (pytest session budget)" in out and "<= limit 100 kWh" in out, out
    rec = json.loads(cli("report", "--format", "json").stdout)["runs"][0]
    assert rec["budget_exceeded"] is False


def test_a_lost_run_shows_co2e_from_its_energy(cli, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import sys, time, greentrack
        s = greentrack.Session("killed", region="FR", backend="mock", flush_interval_s=0.2).start()
        print(s.id, flush=True)
        while True:
            time.sleep(0.02)
            s.step()
    """))
    env = dict(os.environ, GREENTRACK_MOCK="constant:250")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    run_id = p.stdout.readline().strip()
    try:  # killed once a flush (every 0.2 s) has stored some energy, however late a loaded machine makes it
        wait_for(lambda: stored_energy_j(lambda: Store(os.environ["GREENTRACK_DB"], create=False), run_id),
                 "flush of the run's energy")  # (was: a fixed 1.0 s)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    out = cli("show", run_id).stdout
    assert out.startswith(f"killed  [{run_id}]  lost"), out
    co2_line = next(ln for ln in out.splitlines() if ln.strip().startswith("CO2e"))
    assert "gCO2e" in co2_line and "until the run was lost" in co2_line, co2_line
    table = cli("report").stdout.splitlines()[2]
    assert "lost" in table and "gCO2e" in table
    rec = json.loads(cli("report", "--format", "json").stdout)["runs"][0]
    assert rec["co2e_kg"] > 0 and rec["co2e_kg"] * 1000 == rec["energy_kwh"] * rec["intensity_g_per_kwh"]


def test_diff_of_a_run_with_itself_says_so(cli):
    make_run("only")
    p = cli("diff", "last", "last")
    assert p.returncode == 0, p.stderr
    assert "note: A and B are the same run" in p.stdout.splitlines()[2]
    assert "B used" not in p.stdout
    d = json.loads(cli("diff", "last", "last", "--format", "json").stdout)
    assert d["same_run"] is True and d["verdict"] is None


def test_cost_shows_its_currency(cli):
    make_run("a")
    make_run("b")
    out = cli("diff", "-2", "last", "--price-per-kwh", "0.25").stdout
    cost = next(ln for ln in out.splitlines() if ln.startswith("cost "))
    assert "USD" in cost and "e-0" not in cost, cost
    assert "(cost at 0.25 USD per kWh" in out
    assert "cost / 1M tokens" in out
    out = cli("diff", "-2", "last", "--price-per-kwh", "0.25", env={"GREENTRACK_CURRENCY": "eur"}).stdout
    assert "EUR" in next(ln for ln in out.splitlines() if ln.startswith("cost "))
    assert " CHF" in cli("diff", "-2", "last", "--price-per-kwh", "0.3", "--currency", "CHF").stdout
    bad = cli("diff", "-2", "last", "--price-per-kwh", "0.3", "--currency", "US dollars")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "bad currency" in bad.stderr


def test_a_misspelt_region_is_named_in_the_notes(monkeypatch, capsys):
    monkeypatch.setenv("GREENTRACK_REGION", "Frnace")
    with greentrack.session("typo", backend="mock") as s:
        time.sleep(0.05)
    notes = s.result.notes
    assert any("region 'Frnace' was not recognised (did you mean: France" in n and "world average" in n
               for n in notes), notes
    assert not any("no region given" in n for n in notes)
    assert "did you mean: France" in capsys.readouterr().err
