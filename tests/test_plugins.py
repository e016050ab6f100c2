"""The plugin path a third-party plugin takes: hooks, sources, isolation, blocking, entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

from conftest import wait_for

import greentrack
from greentrack import plugins
from greentrack.measure.sources.base import Device


class ConstantSource:
    """A source a plugin adds: one 'fpga' at 42 W, no counter."""

    name = "fpga"
    kind = "gpu"
    poll_interval_s = 0.05

    def __init__(self) -> None:
        self.devices = [Device(key="fpga0", kind="gpu", index=0, name="Test FPGA", series_method="instant")]

    def poll(self, device):
        return [(time.time(), 42.0)]

    def energy_j(self, device):
        return None

    def close(self):
        pass


class ThrowAwayPlugin:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.batches = 0

    @greentrack.hookimpl
    def greentrack_register_sources(self, register):
        register("fpga", lambda settings: ConstantSource(), priority=5)

    @greentrack.hookimpl
    def greentrack_session_start(self, run):
        self.events.append(f"start:{run.name}")

    @greentrack.hookimpl
    def greentrack_samples(self, run, batch):
        self.batches += 1
        for key, times, powers in batch:
            assert key == "fpga0" and len(times) == len(powers)

    @greentrack.hookimpl
    def greentrack_session_end(self, run, result):
        self.events.append(f"end:{result.name}:{result.status}")


class BrokenPlugin:
    @greentrack.hookimpl
    def greentrack_session_start(self, run):
        raise RuntimeError("exporter offline")

    @greentrack.hookimpl
    def greentrack_session_end(self, run, result):
        raise RuntimeError("still offline")


def test_throwaway_plugin_adds_a_source_and_sees_the_lifecycle():
    p = ThrowAwayPlugin()
    plugins.register(p, name="throwaway")
    with greentrack.session("fpga-run", backend="fpga", flush_interval_s=0.1) as s:
        time.sleep(0.4)
        wait_for(lambda: p.batches >= 1, "batch of samples while running")  # flushed every 0.1 s, if late
    assert p.events == ["start:fpga-run", "end:fpga-run:finished"]
    assert p.batches >= 2  # while running, and the last one at the stop
    r = s.result
    assert r.devices[0].name == "Test FPGA" and r.devices[0].method == "instant"
    assert abs(r.energy_j / r.duration_s - 42.0) < 2.0


def test_failing_plugin_is_reported_once_and_run_goes_on(capsys):
    plugins.register(BrokenPlugin(), name="broken")
    for _ in range(2):
        with greentrack.session("survives") as s:
            s.step()
        assert s.result.status == "finished"
    err = capsys.readouterr().err
    assert err.count("broken failed in greentrack_session_start") == 1
    assert err.count("broken failed in greentrack_session_end") == 1


def test_the_mock_and_the_scenarios_are_imported_only_when_used(tmp_path):
    """Both are built-in plugins, listed with their hooks, but a session on another source, and the plugin
    manager itself, leave their modules unimported (a few milliseconds and their objects per process)."""
    code = textwrap.dedent("""
        import sys
        import greentrack
        from greentrack import plugins
        lazy = ("greentrack.measure.sources.mock", "greentrack.carbon.scenarios")
        hooks = {p["name"]: p["hooks"] for p in plugins.describe()}
        print(hooks[lazy[0]], hooks[lazy[1]])
        with greentrack.session("lazy", backend="cpu-model", store=False):
            pass
        print([m in sys.modules for m in lazy])
        from greentrack.carbon.scenarios import definitions
        print(sorted(o for _raw, o in definitions().values())[:1], "greentrack.carbon.scenarios" in sys.modules)
        with greentrack.session("mock", backend="mock", store=False) as s:
            pass
        print(s.backend, "greentrack.measure.sources.mock" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.splitlines()
    assert out[0] == "['greentrack_register_sources'] ['greentrack_register_scenarios']"
    assert out[1] == "[False, False]"
    assert out[2] == "['built-in'] True"  # the shipped scenarios, through the hook, with their origin
    assert out[3] == "mock True"


def test_builtin_plugins_listed_and_blockable(monkeypatch):
    names = [p["name"] for p in plugins.describe()]
    assert "greentrack.measure.sources.mock" in names and "greentrack.carbon.grid" in names
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.mock")
    plugins.reset()
    assert "greentrack.measure.sources.mock" not in [p["name"] for p in plugins.describe()]
    import pytest

    from greentrack.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend 'mock'"):
        greentrack.Session("x", backend="mock", strict=True).start()


def test_grid_intensity_plugin_overrides_the_static_table():
    from greentrack.carbon.grid import Intensity

    class Hourly:
        @greentrack.hookimpl
        def greentrack_grid_intensity(self, region, at):
            if region == "FR":
                return Intensity("FR", 12.0, "test feed", 2026, "France (live)")
            return None

    plugins.register(Hourly())
    with greentrack.session("fr", region="FR") as s:
        time.sleep(0.05)
    assert s.result.intensity_g_per_kwh == 12.0
    with greentrack.session("de", region="DE") as s2:
        time.sleep(0.05)
    assert s2.result.intensity_g_per_kwh != 12.0 and "codecarbon" in s2.result.intensity_source


def test_entry_point_plugin_is_loaded_and_can_be_blocked(tmp_path):
    """A real installed distribution (a .dist-info on sys.path) with a 'greentrack' entry point."""
    site = tmp_path / "site"
    (site / "gt_hello-0.1.dist-info").mkdir(parents=True)
    (site / "gt_hello-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: gt-hello\nVersion: 0.1\n")
    (site / "gt_hello-0.1.dist-info" / "entry_points.txt").write_text("[greentrack]\nhello = gt_hello\n")
    (site / "gt_hello.py").write_text(textwrap.dedent("""
        import greentrack

        @greentrack.hookimpl
        def greentrack_session_end(run, result):
            print("HELLO", result.name, result.status)
    """))
    code = "import greentrack\nwith greentrack.session('ep'):\n    pass\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HELLO ep finished" in out.stdout
    env["GREENTRACK_DISABLE_PLUGINS"] = "hello"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "HELLO" not in out.stdout


def test_a_broken_entry_point_plugin_does_not_stop_the_others(tmp_path):
    site = tmp_path / "site"
    info = site / "gt_two-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gt-two\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[console_scripts]\nnot-ours = gt_ok:main\n\n[greentrack]\nbroken = gt_missing_module\nok = gt_ok:Plugin\n")
    (site / "gt_ok.py").write_text(textwrap.dedent("""
        import greentrack

        class Plugin:
            @staticmethod
            @greentrack.hookimpl
            def greentrack_session_end(run, result):
                print("OK-PLUGIN", result.status)
    """))
    code = "import greentrack\nwith greentrack.session('ep2'):\n    pass\n"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "OK-PLUGIN finished" in out.stdout
    assert out.stderr.count("broken failed in import") == 1
    from greentrack.plugins import entry_points

    sys.path.insert(0, str(site))
    try:
        assert entry_points("greentrack")[:2] == [("broken", "gt_missing_module"), ("ok", "gt_ok:Plugin")]
    finally:
        sys.path.remove(str(site))


def test_the_entry_point_scan_reads_as_importlib_metadata_does(tmp_path, monkeypatch):
    """The first distribution of a name on sys.path wins, even one without entry points; a long
    entry_points.txt is read whole; .egg-info folders count; other groups and comments are not read
    as greentrack's. importlib.metadata, on the same sys.path, agrees."""
    from importlib import metadata

    from greentrack.plugins import entry_points

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, version in ((first, "1.0"), (second, "0.9")):  # the first has no entry_points.txt: it hides the other
        (folder / f"gt_shadow-{version}.dist-info").mkdir(parents=True)
        (folder / f"gt_shadow-{version}.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: gt-shadow\nVersion: {version}\n")
    (second / "gt_shadow-0.9.dist-info" / "entry_points.txt").write_text("[greentrack]\nshadowed = gt_shadow\n")
    long = second / "gt_long-2.0.dist-info"
    long.mkdir()
    (long / "METADATA").write_text("Metadata-Version: 2.1\nName: gt-long\nVersion: 2.0\n")
    scripts = "".join(f"tool{i} = gt_long.cli:main{i}\n" for i in range(4000))  # over 64 KiB before the group
    (long / "entry_points.txt").write_text(f"[console_scripts]\n{scripts}\n[greentrack]\n# a comment\n"
                                           "late = gt_long.hooks:Plugin [extra]\n")
    egg = second / "gt_egg.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: gt-egg\nVersion: 3.1\n")
    (egg / "entry_points.txt").write_text("[greentrack]\negg = gt_egg\n")
    assert (long / "entry_points.txt").stat().st_size > 65536
    monkeypatch.setattr(sys, "path", [str(first), str(second)])
    got = entry_points("greentrack")
    assert got == [("egg", "gt_egg"), ("late", "gt_long.hooks:Plugin")]  # in the order of the folders' names
    want = sorted((ep.name, ep.value.split("[")[0].strip()) for ep in metadata.entry_points(group="greentrack"))
    assert sorted(got) == want


# --- pluggy as designed: calls go through pm.hook ----------------------------------------------------

def test_a_firstresult_hook_takes_the_first_plugins_answer_and_skips_the_rest():
    """greentrack_grid_intensity is firstresult: the plugin registered last answers first, the others
    (and the built-in table, trylast) are not called at all."""
    from greentrack.carbon.grid import Intensity, lookup

    calls: list[str] = []

    class First:
        @greentrack.hookimpl
        def greentrack_grid_intensity(self, region, at):
            calls.append("first")
            return Intensity(region, 11.0, "first plugin", 2026, "first")

    class Second:
        @greentrack.hookimpl
        def greentrack_grid_intensity(self, region, at):
            calls.append("second")
            return Intensity(region, 22.0, "second plugin", 2026, "second")

    plugins.register(Second(), name="second")
    plugins.register(First(), name="first")  # registered last: called first (pluggy's LIFO order)
    assert lookup("FR").g_per_kwh == 11.0
    assert calls == ["first"]


def test_a_wrapper_hook_runs_around_the_others_and_sees_their_results():
    seen: list[object] = []

    class Wrapper:
        @greentrack.hookimpl(wrapper=True)
        def greentrack_grid_intensity(self, region, at):
            seen.append(("before", region))
            result = yield
            seen.append(("after", result.g_per_kwh))
            return result

    plugins.register(Wrapper(), name="wrapper")
    from greentrack.carbon.grid import lookup

    it = lookup("FR")
    assert seen == [("before", "FR"), ("after", it.g_per_kwh)]


def test_a_broken_wrapper_or_plain_plugin_is_reported_once_and_the_others_still_answer(capsys):
    class BrokenPlain:
        @greentrack.hookimpl(tryfirst=True)
        def greentrack_grid_intensity(self, region, at):
            raise RuntimeError("feed down")

    class BrokenWrapper:
        @greentrack.hookimpl(wrapper=True)
        def greentrack_grid_intensity(self, region, at):
            raise RuntimeError("wrapper bug")
            yield  # unreachable: makes this a generator

    plugins.register(BrokenPlain(), name="broken-plain")
    plugins.register(BrokenWrapper(), name="broken-wrapper")
    from greentrack.carbon.grid import lookup

    for _ in range(3):
        assert lookup("FR").g_per_kwh > 0  # the built-in table still answers
    err = capsys.readouterr().err
    assert err.count("broken-plain failed in greentrack_grid_intensity") == 1
    assert err.count("broken-wrapper failed in greentrack_grid_intensity") == 1


def test_hook_calls_can_be_traced_with_pluggys_monitoring():
    traced: list[str] = []
    pm = plugins.get_plugin_manager()
    undo = pm.add_hookcall_monitoring(lambda name, impls, kwargs: traced.append(name), lambda *a: None)
    try:
        with greentrack.session("traced", flush_interval_s=0.05) as s:
            s.step()
    finally:
        undo()
    assert "greentrack_session_start" in traced and "greentrack_session_end" in traced


def test_greentrack_plugins_lists_name_version_hooks_and_origin(cli):
    r = cli("plugins", "--all", "--json")
    assert r.returncode == 0, r.stderr
    import json

    items = {p["name"]: p for p in json.loads(r.stdout)}
    grid = items["greentrack.carbon.grid"]
    assert grid["origin"] == "built-in" and grid["hooks"] == ["greentrack_grid_intensity"] and grid["version"]
    assert "greentrack_register_commands" in items["greentrack.cli"]["hooks"]
    assert cli("plugins").stdout.strip().startswith("no plugins installed")
