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
    text = cli("doctor", env={"GREENTRACK_RAPL_ROOT": str(root)}).stdout
    assert "CPU and memory (RAPL): 4 zone(s) measured" in text


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
