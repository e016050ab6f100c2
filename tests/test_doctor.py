"""``greentrack doctor``: a real subprocess on this GPU-less machine, and the NVML stand-in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_nvml import FakeNVML
from test_rapl import make_tree

import greentrack
from greentrack.cli.doctor import diagnose, render


def test_doctor_without_gpu_or_rapl_says_so_and_exits_0(cli, tmp_path: Path, db_path: Path) -> None:
    p = cli("doctor", env={"GREENTRACK_RAPL_ROOT": str(tmp_path / "none"), "GREENTRACK_BACKEND": "auto"})
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "GPUs: none measured." in out
    assert "NVML did not initialise" in out or "pynvml is not importable" in out
    assert "CPU and memory (RAPL): not measured." in out and "no estimate" in out
    assert f"Database: {db_path} (not created yet; writable)" in out
    assert "countries" in out and "from codecarbon " in out  # where the grid intensities come from
    assert not db_path.exists()  # doctor writes nothing


def test_doctor_json_reports_readable_rapl_and_the_database(cli, tmp_path: Path, db_path: Path) -> None:
    root = make_tree(tmp_path / "powercap", packages=2)
    with greentrack.session("one-run", region="FR"):
        time.sleep(0.02)
    p = cli("doctor", "--json", env={"GREENTRACK_RAPL_ROOT": str(root)})
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert [(z["zone"], z["readable"]) for z in d["rapl"]["zones"]] == [
        ("intel-rapl:0", True), ("intel-rapl:0:1", True), ("intel-rapl:1", True), ("intel-rapl:1:1", True)]
    assert {k: d["database"][k] for k in ("path", "exists", "writable", "runs")} == {
        "path": str(db_path), "exists": True, "writable": True, "runs": 1}
    assert d["gpus"]["available"] is False
    assert d["grid"]["countries"] > 150 and d["grid"]["codecarbon"] and d["grid"]["data_dir"]
    text = cli("doctor", env={"GREENTRACK_RAPL_ROOT": str(root)}).stdout
    assert "CPU and memory (RAPL): 4 zones measured" in text


def test_doctor_names_unreadable_rapl(tmp_path: Path) -> None:
    d = {"greentrack": "x", "gpus": {"available": False, "why": "no GPU", "devices": []},
         "rapl": {"root": "/sys/class/powercap", "zones": [{"zone": "intel-rapl:0", "name": "package-0", "kind": "cpu",
                                                            "readable": False,
                                                            "why": "energy_uj is readable by root only"}]},
         "database": {"path": "/x.db", "exists": False, "writable": False}, "environment": {}}
    text = render(d)
    assert "energy_uj is readable by root only" in text and "chmod o+r" in text
    assert "NOT writable" in text


def test_doctor_on_gpus_says_what_each_method_gives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "none"))
    nv = FakeNVML(gpus=2, features="counter,buffer,instant,average")
    time.sleep(0.05)  # let the buffer hold a few samples
    text = render(diagnose(nv=nv))
    assert "GPUs: 2 measured through NVML (driver 580.159.04" in text
    assert text.count("energy counter: yes") == 2
    assert "one every 20 ms" in text
    assert text.count("run totals from the energy counter") == 2
    assert "per-step and per-phase energy from the driver's power-sample buffer, reconciled" in text
    assert nv.inits == 0  # NVML was shut down again

    old = FakeNVML(gpus=1, features="average")
    text = render(diagnose(nv=old))
    assert "energy counter: no" in text and "power-sample buffer: no" in text
    assert "run totals from the integrated series (average), no counter" in text
    assert "lags the load" in text

    monkeypatch.setenv("GREENTRACK_NVML_COUNTER", "off")
    monkeypatch.setenv("LOCAL_RANK", "1")
    text = render(diagnose(nv=FakeNVML(gpus=2)))
    assert "energy counter: yes, but switched off" in text
    assert "gpu1" in text and "gpu0" not in text
    assert "LOCAL_RANK=1: this process measures only its own GPU" in text


def test_doctor_bad_setting_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENTRACK_NVML_SERIES", "psychic")
    d = diagnose(nv=FakeNVML())
    assert d["gpus"]["available"] is False and "GREENTRACK_NVML_SERIES" in d["gpus"]["why"]


def test_doctor_lists_the_settings_in_force_and_where_they_come_from(cli, tmp_path: Path, db_path: Path) -> None:
    """Each setting of greentrack.settings.SETTINGS: set or not, its value, from the environment or pyproject."""
    from greentrack.settings import SETTINGS

    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text(
        '[tool.greentrack]\nregion = "DE"\nbackend = "rapl"\nflush_interval_s = 5\nregoin = "FR"\n'
        '[tool.greentrack.scenarios.lab]\nextends = "onprem"\npue = 1.3\n'
        '[tool.greentrack.jsonl]\npath = "runs.jsonl"\n')
    env = {"GREENTRACK_RAPL_ROOT": str(tmp_path / "none"), "GREENTRACK_REGION": "FR", "GREENTRACK_BACKEND": "",
           "GREENTRACK_FLUSH_INTERVAL": ""}
    p = cli("doctor", "--json", env=env, cwd=proj)
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)["settings"]
    assert st["pyproject"] == str(proj / "pyproject.toml")
    assert [(x["env"], x["key"]) for x in st["items"]] == [(s.env or None, s.key) for s in SETTINGS]
    items = {x["env"] or x["key"]: x for x in st["items"]}
    assert items["GREENTRACK_REGION"] == {**items["GREENTRACK_REGION"], "set": True, "value": "FR", "from": "env",
                                          "overrides": "[tool.greentrack] region"}
    assert (items["GREENTRACK_BACKEND"]["value"], items["GREENTRACK_BACKEND"]["from"]) == ("rapl", "pyproject")
    assert (items["GREENTRACK_FLUSH_INTERVAL"]["value"], items["GREENTRACK_FLUSH_INTERVAL"]["from"]) == (5, "pyproject")
    assert (items["GREENTRACK_DB"]["value"], items["GREENTRACK_DB"]["from"]) == (str(db_path), "env")
    assert items["scenarios"]["set"] and items["scenarios"]["value"] == {"lab": {"extends": "onprem", "pue": 1.3}}
    assert items["GREENTRACK_MOCK"] == {**items["GREENTRACK_MOCK"], "set": False, "value": None, "from": None}
    assert all(x["help"] and "default" in x for x in st["items"])
    assert st["unknown_keys"] == [{"key": "regoin", "hint": " (did you mean: region?)"}]  # jsonl is a plugin's table

    text = cli("doctor", env=env, cwd=proj).stdout
    settings_part = text[text.index("Settings (environment, then [tool.greentrack] of "):]
    assert "GREENTRACK_REGION" in settings_part and "= FR  (environment; overrides [tool.greentrack] region)" in text
    assert "[tool.greentrack] backend" in settings_part and "= rapl  (pyproject.toml)" in settings_part
    assert "[tool.greentrack] scenarios" in settings_part and "= table: lab  (pyproject.toml)" in settings_part
    assert f"= {db_path}  (environment)" in settings_part
    unset = len(SETTINGS) - 6  # region, backend, flush interval, db, RAPL root, scenarios
    assert f"{unset} other(s) at their defaults" in settings_part
    assert "unknown key in [tool.greentrack]: 'regoin' (did you mean: region?)" in settings_part
    assert "Backend: rapl ([tool.greentrack] backend)." in text


def test_doctor_settings_without_pyproject_and_with_a_broken_one(cli, tmp_path: Path) -> None:
    env = {"GREENTRACK_DB": "", "GREENTRACK_BACKEND": ""}  # an empty variable counts as unset
    p = cli("doctor", env=env)  # tmp_path has no pyproject.toml above it
    assert p.returncode == 0, p.stderr
    assert "a pyproject.toml: none found here" in p.stdout and "none set: all" in p.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pyproject.toml").write_text("[tool.greentrack\nregion = 'FR'\n")
    p = cli("doctor", "--json", env=env, cwd=broken)
    assert p.returncode == 0, p.stderr  # doctor reports a broken file instead of failing on it
    d = json.loads(p.stdout)
    assert "cannot read" in d["settings"]["pyproject_error"] and "cannot read" in d["database"]["error"]
    text = cli("doctor", env=env, cwd=broken).stdout
    # said where it matters: the CPU model's inputs, the database, the settings
    assert "Database: unknown (cannot read" in text and text.count("Expected ']'") == 3
