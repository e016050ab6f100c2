"""plugins/greentrack-prometheus installed for real (pip --target): its counters, settings, CLI and dashboard.

The end-to-end tests with a real Prometheus server are in test_plugin_prometheus_scrape.py.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import install_plugin, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (.ci/run installs it)")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-prometheus"

# PromQL words that are not metric names (functions, aggregations, keywords used by the dashboard)
PROMQL_WORDS = {"sum", "avg", "max", "min", "count", "rate", "increase", "irate", "by", "without", "on", "ignoring",
                "group_left", "group_right", "and", "or", "unless", "offset", "bool", "label_values", "topk",
                "bottomk", "last_over_time", "max_over_time", "timestamp", "time", "vector", "scalar", "abs",
                "clamp_min", "delta", "deriv", "histogram_quantile", "sort", "sort_desc"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed into its own folder, the way a user installs a third-party plugin."""
    target = install_plugin(PLUGIN_DIR, tmp_path_factory.mktemp("prometheus-install"))
    eps = list(target.glob("greentrack_prometheus-*.dist-info/entry_points.txt"))
    assert len(eps) == 1 and "prometheus = greentrack_prometheus" in eps[0].read_text()
    assert list(target.glob("greentrack_prometheus/dashboards/greentrack.json"))  # package data ships
    return target


@pytest.fixture
def gp(site: Path, monkeypatch: pytest.MonkeyPatch):
    """The installed plugin imported in this process, found by greentrack through its entry point."""
    monkeypatch.syspath_prepend(str(site))
    for var in ("GREENTRACK_PROMETHEUS_PORT", "GREENTRACK_PROMETHEUS_ADDR", "GREENTRACK_PROMETHEUS_GRACE",
                "GREENTRACK_PROMETHEUS_LINGER", "GREENTRACK_PARENT_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    import greentrack_prometheus as mod

    mod._forget_in_child()  # a fresh exporter for each test
    from greentrack import plugins

    plugins.reset()
    assert "prometheus" in [p["name"] for p in plugins.describe()]
    yield mod
    if mod._exp is not None:
        mod._exp.shutdown()
    mod._forget_in_child()


def env_for(site: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENTRACK_PROMETHEUS_")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_MOCK="constant:300", GREENTRACK_FLUSH_INTERVAL="0.5",
               GREENTRACK_DB=str(tmp_path / "runs.db"))
    env.update(extra)
    return env


def scrape_with(collector, name: str, phase: str | None = None) -> dict[tuple[str, tuple], float] | None:
    """One scrape, if it has a sample called *name* (labelled with *phase*, when given); else None."""
    out = scrape(collector)
    found = any(k[0] == name and (phase is None or dict(k[1]).get("phase") == phase) for k in out)
    return out if found else None


def scrape(collector) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of one scrape, parsed by prometheus_client's parser."""
    from greentrack_prometheus.metrics import exposition

    out = {}
    for fam in text_string_to_metric_families(exposition(collector)):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by_name(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# --- the counters ---------------------------------------------------------------------------------

def test_a_session_is_exported_with_phases_and_matches_the_stored_run(gp, monkeypatch: pytest.MonkeyPatch) -> None:
    import greentrack

    monkeypatch.setenv("GREENTRACK_MOCK", "constant:250")
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")
    monkeypatch.setenv("GREENTRACK_FLUSH_INTERVAL", "0.3")
    monkeypatch.setenv("GREENTRACK_JOB_ID", "job-7")
    monkeypatch.setenv("RANK", "3")
    coll = gp.collector()  # into a registry of the test's own: no port, runs recorded all the same
    seen: list[dict] = []
    with greentrack.session("exp", region="FR", pue=1.2) as s:
        with s.phase("train"):
            for _ in range(30):
                time.sleep(0.05)
                s.step()
            seen.append(scrape(coll))
        with s.phase("eval"):
            # power is labelled with the phase once a flush has brought eval's samples (the mock's buffer is
            # read every second, so a fixed 1.5 s left 0.2 s of margin): scrape until one shows eval's power
            seen.append(wait_for(lambda: scrape_with(coll, "greentrack_power_watts", phase="eval"),
                                 "a live scrape with eval's power"))
    seen += [scrape(coll), scrape(coll)]  # the first scrape of a new series shows 0, the next its value
    last = seen[-1]
    energy = by_name(last, "greentrack_energy_joules_total")
    labels = {dict(k)["device"]: dict(k) for k in energy}
    assert set(labels) == {"gpu0", "gpu1"}
    one = labels["gpu0"]
    assert (one["run"], one["run_id"], one["job_id"], one["rank"], one["host"]) == \
        ("exp", s.id, "job-7", "3", os.uname().nodename)
    phases = {dict(k)["phase"] for k in energy}
    assert {"train", "eval"} <= phases <= {"train", "eval", "(none)"}
    total = sum(energy.values())
    assert total == pytest.approx(s.result.energy_j, rel=1e-9)  # final values are the stored totals
    for p in s.result.phases:  # split by the power series at the phase edges, each phase gets its own energy
        got = sum(v for k, v in energy.items() if dict(k)["phase"] == p.name)
        assert got == pytest.approx(p.energy_j, abs=0.1 * 500 + 0.02 * p.energy_j), p.name  # 0.1 s of 2 x 250 W
    co2e = by_name(last, "greentrack_co2e_grams_total")
    assert sum(co2e.values()) == pytest.approx(s.result.co2e_kg * 1000, rel=1e-6)
    intensity = by_name(last, "greentrack_grid_intensity_grams_per_kwh")
    (ilab, ival), = intensity.items()
    assert dict(ilab)["region"] == "FRA" and ival == pytest.approx(s.result.intensity_g_per_kwh)
    assert re.search(r"\d{4}\)$", dict(ilab)["source"])  # the figure names its source and year
    pue = by_name(last, "greentrack_pue")
    assert list(pue.values()) == [1.2] and dict(next(iter(pue)))["run_id"] == s.id
    assert list(by_name(last, "greentrack_steps_total").values()) == [30.0]
    info = {dict(k)["device"]: dict(k) for k in by_name(last, "greentrack_device_info")}
    assert info["gpu1"]["method"] == "counter" and info["gpu1"]["model"] == "Mock GPU"
    assert list(by_name(last, "greentrack_run_end_time_seconds").values()) == [pytest.approx(s.result.ended_at)]
    # power during the run: the mock draws 250 W per GPU; none after the end
    during = by_name(seen[1], "greentrack_power_watts")
    assert during and all(v == pytest.approx(250.0, rel=0.01) for v in during.values())
    assert {dict(k)["phase"] for k in during} == {"eval"}
    assert not by_name(last, "greentrack_power_watts")
    # every series is monotonic from scrape to scrape
    for a, b in zip(seen, seen[1:]):
        for key, v in a.items():
            if key[0].endswith("_total") and key in b:
                assert b[key] >= v, key


def test_ended_runs_drop_out_after_the_grace_period(gp, monkeypatch: pytest.MonkeyPatch) -> None:
    import greentrack

    monkeypatch.setenv("GREENTRACK_PROMETHEUS_GRACE", "0.6")
    coll = gp.collector()
    with greentrack.session("short") as s:
        time.sleep(0.1)
    assert gp._exp.grace_s == 0.6  # read when the process's first session starts
    assert {dict(k)["run_id"] for k in by_name(scrape(coll), "greentrack_energy_joules_total")} == {s.id}
    time.sleep(0.8)
    assert not by_name(scrape(coll), "greentrack_energy_joules_total")
    assert gp._exp.runs == {}  # memory is released too


def test_counters_never_go_backwards(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from greentrack_prometheus.state import DeviceLabels, RunState

    st = RunState(run_id="r", name="n")
    st.add_device(DeviceLabels("gpu0"))
    st.add_device(DeviceLabels("gpu1"))
    st.snapshot(0.0)
    st.observe({"gpu0": 100.0, "gpu1": 50.0})
    st.observe({"gpu0": 80.0})  # gpu0 reads lower (a source switching method), gpu1 dropped out
    snap = st.snapshot(1.0)
    assert sorted(snap.energy) == [("gpu0", "(none)", 100.0), ("gpu1", "(none)", 50.0)]
    st.observe({"gpu0": 130.0, "gpu1": None})
    assert sorted(st.snapshot(2.0).energy) == [("gpu0", "(none)", 130.0), ("gpu1", "(none)", 50.0)]


Phase = SimpleNamespace


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["gpu0", "gpu1"]), st.floats(0, 1e4), st.floats(0, 2.0)),
                min_size=1, max_size=30),
       st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 10), st.floats(0, 10)), max_size=4))
def test_counters_are_monotonic_and_sum_to_the_highest_reading(site_path, flushes, phase_spans) -> None:
    from greentrack_prometheus.state import RunState

    phases = [Phase(name=n, started_at=min(a, b), ended_at=max(a, b)) for n, a, b in phase_spans]
    st = RunState(run_id="r", name="n", zero_first=False)
    t = 0.0
    high: dict[str, float] = {}
    prev: dict = {}
    for dev, reading, dt in flushes:
        times = [t + dt * i / 4 for i in range(1, 5)]
        t = times[-1]
        st.observe({dev: reading}, [(dev, times, [300.0] * 4)], phases, window_end=t)
        high[dev] = max(high.get(dev, 0.0), reading)
        now = {(d, p): v for d, p, v in st.snapshot(t).energy}
        assert all(now.get(k, 0.0) >= v - 1e-9 * max(1.0, v) for k, v in prev.items())
        prev = now
        for d, h in high.items():
            assert sum(v for (dd, _), v in now.items() if dd == d) == pytest.approx(h, rel=1e-9, abs=1e-9)


@pytest.fixture(scope="module")
def site_path(site: Path) -> Path:
    sys.path.insert(0, str(site))  # for the module (hypothesis calls the test many times with one fixture)
    yield site
    sys.path.remove(str(site))


def test_phase_timeline_takes_the_innermost_phase(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from greentrack_prometheus.state import phase_timeline

    phases = [Phase(name="train", started_at=0.0, ended_at=10.0), Phase(name="eval", started_at=4.0, ended_at=6.0),
              Phase(name="save", started_at=9.0, ended_at=None)]
    starts, names = phase_timeline(phases, 1.0, 12.0)
    assert list(zip(starts, names)) == [(1.0, "train"), (4.0, "eval"), (6.0, "train"), (9.0, "save"),
                                        (10.0, "save")]
    assert phase_timeline([], 0.0, 1.0) == ([0.0], [None])


def test_phase_names_are_capped(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    from greentrack_prometheus.state import MAX_PHASES, OTHER_PHASE, RunState

    st = RunState(run_id="r", name="n")
    labels = {st.phase_label(f"step-{i}") for i in range(MAX_PHASES + 50)}
    assert len(labels) == MAX_PHASES + 1 and OTHER_PHASE in labels


# --- settings and failures: one line, the run goes on -----------------------------------------------

RUN = """
import json, sys, time
import greentrack, greentrack_prometheus as gp
with greentrack.session("p") as s:
    time.sleep(0.2)
print(json.dumps({"id": s.id, "status": s.result.status, "url": gp.endpoint(),
                  "client": "prometheus_client" in sys.modules}))
"""


def run_script(env: dict[str, str], cwd: Path, code: str = RUN) -> tuple[dict, str]:
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("value, message", [
    ("abc", "GREENTRACK_PROMETHEUS_PORT='abc' is not a port number (0 to 65535)"),
    ("70000", "GREENTRACK_PROMETHEUS_PORT='70000' is not a port number (0 to 65535)"),
])
def test_bad_port_is_one_line_and_the_run_finishes(site: Path, tmp_path: Path, value: str, message: str) -> None:
    run, err = run_script(env_for(site, tmp_path, GREENTRACK_PROMETHEUS_PORT=value), tmp_path)
    assert run["status"] == "finished" and run["url"] is None
    assert err.strip().splitlines() == [f"greentrack: prometheus: {message} (no metrics endpoint; the run goes on)"]


def test_port_in_use_is_one_line_and_the_run_finishes(site: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run, err = run_script(env_for(site, tmp_path, GREENTRACK_PROMETHEUS_PORT=str(port),
                                      GREENTRACK_PROMETHEUS_ADDR="127.0.0.1"), tmp_path)
    assert run["status"] == "finished" and run["url"] is None
    assert err.strip().splitlines() == [f"greentrack: prometheus: cannot serve on 127.0.0.1:{port}: Address already "
                                        "in use (no metrics endpoint in this process; the run goes on)"]


def test_off_without_a_port_and_light_at_import(site: Path, tmp_path: Path) -> None:
    run, err = run_script(env_for(site, tmp_path), tmp_path)
    assert run == {"id": run["id"], "status": "finished", "url": None, "client": False} and err == ""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text("[tool.greentrack.prometheus]\nport = 0\naddr = \"127.0.0.1\"\n")
    run, err = run_script(env_for(site, tmp_path), proj)
    assert run["url"].startswith("http://127.0.0.1:") and run["client"]
    assert err.strip() == f"greentrack: prometheus: serving {run['url']}"
    (proj / "pyproject.toml").write_text("[tool.greentrack.prometheus]\nprot = 9500\n")
    run, err = run_script(env_for(site, tmp_path), proj)
    assert run["url"] is None and "unknown key 'prot' in [tool.greentrack.prometheus] (did you mean: port?)" in err


def test_not_served_in_a_child_of_greentrack_run_nor_when_blocked(site: Path, tmp_path: Path) -> None:
    child, _ = run_script(env_for(site, tmp_path, GREENTRACK_PROMETHEUS_PORT="0", GREENTRACK_PARENT_RUN_ID="abc"),
                          tmp_path)
    assert child["url"] is None
    blocked, _ = run_script(env_for(site, tmp_path, GREENTRACK_PROMETHEUS_PORT="0",
                                    GREENTRACK_DISABLE_PLUGINS="prometheus"), tmp_path)
    assert blocked["url"] is None and not blocked["client"]


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "greentrack", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_serve_metrics_bad_input_is_one_line_and_exit_2(site: Path, tmp_path: Path) -> None:
    env = env_for(site, tmp_path)
    for args, msg in ((["--port", "x"], "--port='x' is not a port number (0 to 65535)"),
                      (["--grace", "-1"], "--grace='-1' must be a number of seconds, zero or more"),
                      (["--addr", "no.such.host.invalid", "--port", "0"], "cannot serve on no.such.host.invalid:0")):
        out = cli(env, tmp_path, "serve-metrics", *args)
        assert out.returncode == 2 and out.stdout == "", out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"greentrack: error: {msg}"), lines
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli(env, tmp_path, "serve-metrics", "--addr", "127.0.0.1", "--port", str(port))
    assert out.returncode == 2
    assert out.stderr.strip() == f"greentrack: error: cannot serve on 127.0.0.1:{port}: Address already in use"


def test_serve_metrics_once_reads_the_store(site: Path, tmp_path: Path) -> None:
    env = env_for(site, tmp_path)
    empty = cli(env, tmp_path, "serve-metrics", "--once")  # no database yet: nothing to show, store up
    assert empty.returncode == 0 and "greentrack_store_up 1.0" in empty.stdout
    assert not (tmp_path / "runs.db").exists()
    run, _ = run_script(env, tmp_path)
    out = cli(env, tmp_path, "serve-metrics", "--once", "--grace", "600")
    assert out.returncode == 0, out.stderr
    fams = {f.name: f for f in text_string_to_metric_families(out.stdout)}
    (energy,) = fams["greentrack_energy_joules"].samples
    assert energy.labels["run_id"] == run["id"] and "phase" not in energy.labels  # the store has no live phase
    from greentrack.store import Store

    assert energy.value == pytest.approx(Store(tmp_path / "runs.db").get_run(run["id"])["energy_j"], rel=1e-9)
    gone = cli(env, tmp_path, "serve-metrics", "--once", "--grace", "0")
    assert gone.returncode == 0 and run["id"] not in gone.stdout


# --- the Grafana dashboard ------------------------------------------------------------------------

def dashboard_queries(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", q))  # the metric part of label_values()
    return exprs


def metric_and_label_names(expr: str) -> tuple[set[str], set[str]]:
    """The metric names and label names a PromQL expression uses (enough PromQL for the dashboard's)."""
    labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels |= {g.strip() for g in group.split(",") if g.strip()}
    bare = re.sub(r"\"[^\"]*\"", "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"\$\w+|\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", bare)
    names = {w for w in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if w not in PROMQL_WORDS}
    return names, labels


def test_dashboard_uses_only_what_the_exporter_emits(gp, site: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import greentrack

    monkeypatch.setenv("GREENTRACK_FLUSH_INTERVAL", "0.3")
    coll = gp.collector()
    emitted: dict[str, set[str]] = {}

    def take(samples: dict) -> None:
        for name, labels in samples:
            emitted.setdefault(name, set()).update(k for k, _ in labels)

    with greentrack.session("dash") as s:
        with s.phase("train"):
            s.step()
            # power is shown once a flush has brought samples (the mock's buffer, like NVML's, is read every
            # second): scrape until then, however slow the machine
            take(wait_for(lambda: scrape_with(coll, "greentrack_power_watts"), "a live scrape with power"))
    take(scrape(coll))
    node = cli(env_for(site, tmp_path), tmp_path, "serve-metrics", "--once")
    for fam in text_string_to_metric_families(node.stdout):
        for smp in fam.samples:
            emitted.setdefault(smp.name, set()).update(smp.labels)
    from greentrack_prometheus.metrics import METRIC_NAMES

    assert set(emitted) == set(METRIC_NAMES)  # the documented list is the real one
    text = cli(env_for(site, tmp_path), tmp_path, "prometheus-dashboard").stdout
    dash = json.loads(text)
    assert dash == json.loads((PLUGIN_DIR / "src/greentrack_prometheus/dashboards/greentrack.json").read_text())
    assert {v["name"] for v in dash["templating"]["list"]} >= {"job", "host", "run"}
    used_metrics: set[str] = set()
    for expr in dashboard_queries(dash):
        names, labels = metric_and_label_names(expr)
        assert names, expr
        used_metrics |= names
        assert names <= set(emitted), (expr, names - set(emitted))
        known = set().union(*(emitted[n] for n in names))
        assert labels <= known, (expr, labels - known)
    assert {"greentrack_power_watts", "greentrack_energy_joules_total", "greentrack_co2e_grams_total",
            "greentrack_steps_total"} <= used_metrics
    for p in dash["panels"]:
        assert p["description"] and p["datasource"]["uid"] == "${datasource}"


def test_run_view_tells_the_time_each_live_energy_covers(monkeypatch: pytest.MonkeyPatch) -> None:
    """RunView.device_energy_span: what an exporter needs to date the energy it reads at a flush."""
    import greentrack
    from greentrack import plugins

    monkeypatch.setenv("GREENTRACK_MOCK", "constant:400")
    monkeypatch.setenv("GREENTRACK_FLUSH_INTERVAL", "0.3")
    seen: list[tuple[float, dict, dict]] = []

    class Spy:
        @greentrack.hookimpl
        def greentrack_samples(self, run, batch):
            seen.append((time.time(), dict(run.device_energy_j), dict(run.device_energy_span)))

    plugins.register(Spy(), name="spy")
    with greentrack.session("span") as s:
        wait_for(lambda: len(seen) >= 3, "three flushes with samples")  # the start's, then two of the buffer's
    live = [x for x in seen if x[0] < s.ended_at]
    assert len(live) >= 3
    for now, energy, span in live:
        (t_from, t_to), = span.values()
        assert s.started_at <= t_from <= t_to <= now
        # the mock's counter refreshes at 10 Hz: the energy read is that of its span, to within 0.1 s of power
        assert energy["gpu0"] == pytest.approx(400.0 * (t_to - t_from), abs=400.0 * 0.1 + 1e-6)
