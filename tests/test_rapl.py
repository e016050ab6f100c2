"""The RAPL source on a powercap tree laid out like Linux's, in tmp_path."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from greentrack.measure.sampler import Sampler
from greentrack.measure.sources import SourceUnavailable
from greentrack.measure.sources.rapl import RAPLSource, find_zones
from greentrack.measure.tracker import Session

MAX_UJ = 262143328850  # a real package's max_energy_range_uj


def make_tree(root: Path, packages: int = 1, dram: bool = True, core: bool = True) -> Path:
    for p in range(packages):
        z = root / f"intel-rapl:{p}"
        z.mkdir(parents=True)
        (z / "name").write_text(f"package-{p}\n")
        (z / "energy_uj").write_text("1000000\n")
        (z / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
        subs = ([("core", 0)] if core else []) + ([("dram", 1)] if dram else [])
        for name, i in subs:
            s = root / f"intel-rapl:{p}:{i}"
            s.mkdir()
            (s / "name").write_text(name + "\n")
            (s / "energy_uj").write_text("500\n")
            (s / "max_energy_range_uj").write_text("65532610987\n")
    (root / "intel-rapl-mmio:0").mkdir()  # other powercap folders are ignored
    return root


def set_uj(root: Path, zone: str, uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{uj}\n")


def test_zones_packages_and_dram_only(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "powercap", packages=2)
    zones = find_zones(root)
    assert [(z.zone_id, z.kind, z.package) for z in zones] == [
        ("0", "cpu", 0), ("0:1", "dram", 0), ("1", "cpu", 1), ("1:1", "dram", 1)]
    src = RAPLSource(root)
    assert [d.key for d in src.devices] == ["cpu0", "dram0", "cpu1", "dram1"]
    assert src.devices[0].info["wrap_j"] == pytest.approx(MAX_UJ / 1e6)
    assert src.devices[0].method == "counter"


def test_no_tree_or_unreadable_counters_record_nothing(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no RAPL zones"):
        RAPLSource(tmp_path / "absent")
    root = make_tree(tmp_path / "pc", dram=False, core=False)
    (root / "intel-rapl:0" / "energy_uj").unlink()
    (root / "intel-rapl:0" / "energy_uj").mkdir()  # unreadable as a file, whoever runs the test
    with pytest.raises(SourceUnavailable, match="not readable"):
        RAPLSource(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_root_only_counter_is_named_as_such(tmp_path: Path) -> None:  # pragma: no cover - CI runs as root
    root = make_tree(tmp_path / "pc", dram=False, core=False)
    os.chmod(root / "intel-rapl:0" / "energy_uj", 0o000)
    assert find_zones(root)[0].error == "energy_uj is readable by root only"


def test_poll_derives_power_from_counter_deltas_across_a_wrap(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "pc", dram=False, core=False)
    clock = [100.0]
    set_uj(root, "intel-rapl:0", MAX_UJ - 30_000_000)
    src = RAPLSource(root, clock=lambda: clock[0])
    d = src.devices[0]
    clock[0] += 2.0
    set_uj(root, "intel-rapl:0", MAX_UJ - 10_000_000)
    assert src.poll(d) == [(102.0, pytest.approx(10.0))]
    clock[0] += 1.0
    set_uj(root, "intel-rapl:0", 5_000_000)  # wrapped: 10 J to the top, 5 J after
    assert src.poll(d) == [(103.0, pytest.approx(15.0))]


def test_sampler_counter_total_handles_each_devices_wrap(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "pc", dram=True, core=False)
    set_uj(root, "intel-rapl:0", MAX_UJ - 1_000_000)
    set_uj(root, "intel-rapl:0:1", 65532610987 - 2_000_000)
    src = RAPLSource(root)
    smp = Sampler([src], 1.0, lambda chunks, states: None)
    smp.read_counters(first=True)
    set_uj(root, "intel-rapl:0", 3_000_000)
    set_uj(root, "intel-rapl:0:1", 1_000_000)
    smp.read_counters()
    got = {st.device.key: st.counter_energy_j() for st in smp.states}
    assert got == {"cpu0": pytest.approx(4.0), "dram0": pytest.approx(3.0)}


def test_session_on_rapl_records_cpu_and_dram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "pc", dram=True, core=True)
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(root))
    monkeypatch.setenv("GREENTRACK_BACKEND", "rapl")
    s = Session("cpu-job", region="FR", sample_interval_s=0.05, flush_interval_s=0.1)
    s.start()
    for i in range(1, 6):
        time.sleep(0.06)
        set_uj(root, "intel-rapl:0", 1_000_000 + i * 3_000_000)  # 3 J each 60 ms: ~50 W
        set_uj(root, "intel-rapl:0:1", 500 + i * 600_000)
    time.sleep(0.06)
    r = s.stop()
    by = {d.key: d for d in r.devices}
    assert set(by) == {"cpu0", "dram0"}
    # 15 J and 3 J were written; the run's edges (before the first counter reading, after the
    # last) come from the series derived from the counter deltas
    assert by["cpu0"].energy_j == pytest.approx(15.0, rel=0.1)
    assert by["dram0"].energy_j == pytest.approx(3.0, rel=0.1)
    assert by["cpu0"].method == "counter" and by["cpu0"].series_method == "delta"
    assert r.energy_j == pytest.approx(by["cpu0"].energy_j + by["dram0"].energy_j)
    assert by["cpu0"].n_samples >= 3


def test_auto_backend_skips_rapl_where_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greentrack import plugins
    from greentrack.measure.sources import build_sources
    from greentrack.settings import Settings

    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "nothing"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    plugins.reset()
    sources, notes = build_sources(Settings(db_path=tmp_path / "x.db", backend="auto"))
    assert [s.name for s in sources] == ["cpu-model"]  # nothing measures: the labelled CPU model, said first
    assert notes[0].startswith("nothing here measures power") and "rapl: no RAPL zones" in notes[0]
    assert any(n.startswith("rapl: no RAPL zones") for n in notes)
    root = make_tree(tmp_path / "pc", dram=False, core=False)
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(root))
    sources, notes = build_sources(Settings(db_path=tmp_path / "x.db", backend="auto"))
    assert [s.name for s in sources] == ["rapl"] and [d.key for d in sources[0].devices] == ["cpu0"]
