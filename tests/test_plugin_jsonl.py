"""plugins/greentrack-jsonl installed for real (pip --target) and found through the entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import install_plugin

from greentrack.store.sqlite import Store
from greentrack.units import fmt_energy

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-jsonl"

RUN = """
import json, sys, time
import greentrack
budget = float(sys.argv[2]) if len(sys.argv) > 2 else None
with greentrack.session(sys.argv[1], tags={"model": "tiny"}, region="FR", budget_kwh=budget) as s:
    time.sleep(0.45)
print(json.dumps({"id": s.id, "energy_j": s.result.energy_j, "status": s.result.status}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into its own folder, the way a user installs a third-party plugin."""
    target = install_plugin(PLUGIN_DIR, tmp_path_factory.mktemp("jsonl-install"))
    eps = list(target.glob("greentrack_jsonl-*.dist-info/entry_points.txt"))
    assert len(eps) == 1 and "jsonl = greentrack_jsonl" in eps[0].read_text()
    return target


def _env(site: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GREENTRACK_JSONL", "GREENTRACK_DISABLE_PLUGINS")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_FLUSH_INTERVAL="0.1",
               GREENTRACK_DB=str(tmp_path / "runs.db"))
    env.update(extra)
    return env


def _run(env: dict[str, str], cwd: Path, name: str = "jl", *args: str) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", RUN, name, *args], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greentrack", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_run_is_streamed_and_summarised(site: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    env = _env(site, tmp_path, GREENTRACK_JSONL=str(live))
    run, _ = _run(env, tmp_path, "jl", "1e-6")  # 300 W crosses 1e-6 kWh (3.6 J) at the first flush
    recs = [json.loads(line) for line in live.read_text().splitlines()]
    assert {r["run_id"] for r in recs} == {run["id"]}
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end"
    start = recs[0]
    assert start["name"] == "jl" and start["tags"] == {"model": "tiny"} and start["region"] == "FRA"
    assert [d["key"] for d in start["devices"]] == ["gpu0"]
    samples = [r for r in recs if r["event"] == "samples"]
    assert samples and [r["flush"] for r in samples] == list(range(1, len(samples) + 1))
    powers = [w for r in samples for d in r["devices"] for w in d["w"]]
    assert powers and all(w == pytest.approx(300.0) for w in powers)
    assert all(len(d["t"]) == len(d["w"]) for r in samples for d in r["devices"])
    budget = [r for r in recs if r["event"] == "budget_exceeded"]
    assert len(budget) == 1 and budget[0]["budget"]["budget"] == "energy_kwh"
    assert budget[0]["usage"]["energy_kwh"] > 1e-6
    end = recs[-1]
    stored = Store(tmp_path / "runs.db").get_run(run["id"])
    assert end["status"] == stored["status"] == "finished"
    assert end["result"]["energy_j"] == stored["energy_j"] == run["energy_j"]
    assert end["flushes"] == len(samples)

    out = _cli(env, tmp_path, "jsonl-summary", str(live))
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if run["id"] in line]
    assert len(row) == 1
    cells = row[0].split()
    assert cells[0] == "jl" and "finished" in cells and fmt_energy(run["energy_j"]) in row[0]
    assert cells[-2:] == [str(len(samples)), str(len(powers))]

    missing = _cli(env, tmp_path, "jsonl-summary", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and missing.stdout == ""
    expected = f"greentrack: error: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory"
    assert missing.stderr.strip().splitlines() == [expected]
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text(live.read_text().splitlines()[0] + "\n{oops\n")
    bad = _cli(env, tmp_path, "jsonl-summary", str(garbled))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "line 2: not JSON" in bad.stderr and "Traceback" not in bad.stderr


def test_path_from_pyproject_and_nothing_written_without_one(site: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "sub").mkdir(parents=True)
    (proj / "pyproject.toml").write_text('[tool.greentrack.jsonl]\npath = "logs/live.jsonl"\n')
    run, _ = _run(_env(site, tmp_path), proj / "sub")  # nearest pyproject, path relative to it
    recs = [json.loads(x) for x in (proj / "logs" / "live.jsonl").read_text().splitlines()]
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end"
    assert {r["run_id"] for r in recs} == {run["id"]}

    bare = tmp_path / "bare"
    bare.mkdir()
    run2, _ = _run(_env(site, tmp_path), bare)
    assert list(bare.iterdir()) == []  # an exporter with no path configured leaves the cwd alone
    assert Store(tmp_path / "runs.db").get_run(run2["id"])["status"] == "finished"


def test_disabled_by_name(site: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    env = _env(site, tmp_path, GREENTRACK_JSONL=str(live), GREENTRACK_DISABLE_PLUGINS="jsonl")
    run, _ = _run(env, tmp_path)
    assert not live.exists()
    assert Store(tmp_path / "runs.db").get_run(run["id"])["status"] == "finished"
    out = _cli(env, tmp_path, "jsonl-summary", str(live))
    assert out.returncode == 2 and "No such command 'jsonl-summary'" in out.stderr


def test_unwritable_path_is_reported_once_and_the_run_finishes(site: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder\n")
    env = _env(site, tmp_path, GREENTRACK_JSONL=str(blocker / "live.jsonl"))
    run, err = _run(env, tmp_path)
    assert run["status"] == "finished"
    said = [line for line in err.splitlines() if "jsonl" in line]
    assert len(said) == 1 and f"cannot write {blocker / 'live.jsonl'}" in said[0] and "the run goes on" in said[0]
    assert "Traceback" not in err
    stored = Store(tmp_path / "runs.db").get_run(run["id"])
    assert stored["status"] == "finished" and stored["energy_j"] == run["energy_j"]


def test_two_processes_append_to_one_file(site: Path, tmp_path: Path) -> None:
    live = tmp_path / "live.jsonl"
    env = _env(site, tmp_path, GREENTRACK_JSONL=str(live))
    procs = [subprocess.Popen([sys.executable, "-c", RUN, f"rank{i}"], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(json.loads(out.strip().splitlines()[-1])["id"])
    recs = [json.loads(line) for line in live.read_text().splitlines()]  # every line whole
    for rid in ids:
        events = [r["event"] for r in recs if r["run_id"] == rid]
        assert events[0] == "start" and events[-1] == "end" and "samples" in events
