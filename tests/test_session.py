"""Sessions end to end on the mock backend, with a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import greentrack
from greentrack.errors import ConfigError, UnknownRegionError
from greentrack.store.sqlite import Store


def _busy(seconds: float, s=None, step_every: float = 0.01, samples: int = 8) -> None:
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(step_every)
        if s is not None:
            s.step(samples=samples, tokens=samples * 100)


def test_context_manager_constant_power(monkeypatch, db_path):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:300")
    with greentrack.session("const", region="FR", tags={"precision": "bf16"}) as s:
        time.sleep(0.6)
    r = s.result
    assert r.status == "finished"
    # counter-based total, its 10 Hz refreshes dated at both edges and the edges filled from the series
    assert r.energy_j == pytest.approx(300 * r.duration_s, rel=0.01)
    assert r.devices[0].method == "counter"
    assert r.devices[0].series_method == "buffer"
    assert r.region == "FRA"
    assert r.co2e_kg == pytest.approx(r.energy_kwh * r.intensity_g_per_kwh / 1000)
    assert "codecarbon" in r.intensity_source
    stored = Store(db_path).get_run(r.run_id)
    assert stored["status"] == "finished"
    assert stored["energy_j"] == pytest.approx(r.energy_j)
    assert stored["tags"] == {"precision": "bf16"}
    assert stored["devices"][0]["method"] == "counter"
    assert s.result.avg_power_w == pytest.approx(r.energy_j / r.duration_s)


def test_phases_and_steps_follow_the_load(monkeypatch):
    monkeypatch.setenv("GREENTRACK_MOCK", "load:50,500")
    with greentrack.session("phased", region="DE") as s:
        with s.phase("train"):
            _busy(1.2, s)
        with s.phase("idle"):
            time.sleep(1.2)
    r = s.result
    train, idle = r.phase("train"), r.phase("idle")
    assert train.steps > 20 and idle.steps == 0
    assert train.energy_j / train.duration_s == pytest.approx(500, rel=0.08)
    # the load window keeps the GPU busy 0.5 s after the last step, then it idles at 50 W
    expected_idle = 500 * 0.5 + 50 * (idle.duration_s - 0.5)
    assert idle.energy_j == pytest.approx(expected_idle, rel=0.12)
    # phases plus what lies outside them reconcile to the counter total
    assert train.energy_j + idle.energy_j + r.outside_phases_j == pytest.approx(r.energy_j, rel=1e-9)
    st = r.step_stats
    assert st["steps"] == r.steps == train.steps
    assert st["j_per_sample"] == pytest.approx(st["mean_j"] * st["steps"] / r.samples)
    assert r.samples == 8 * r.steps and r.tokens == 800 * r.steps


def test_short_sessions_are_exact(monkeypatch):
    """A run shorter than the counter's refresh period: edges dated, filled from the series."""
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:1000")
    for sleep, method in ((0.0, "buffer"), (0.05, None), (0.21, "counter")):
        with greentrack.session("short", store=False) as s:
            time.sleep(sleep)
        assert s.result.energy_j == pytest.approx(1000 * s.result.duration_s, rel=0.03), sleep
        # a run that ends before the counter's first refresh takes its total from the series
        assert method is None or s.result.devices[0].method == method, sleep


def test_decorator_and_explicit_start_stop(db_path):
    @greentrack.track("decorated", region="FR")
    def work(n, greentrack_session=None):
        for _ in range(n):
            greentrack_session.step()
        return n * 2

    assert work(5) == 10
    assert work.last_result.steps == 5
    s = greentrack.Session("explicit", backend="mock").start()
    time.sleep(0.2)
    r = s.stop()
    assert r is s.result and r.status == "finished"
    assert s.stop() is r  # idempotent
    names = [row["name"] for row in Store(db_path).list_runs(last=10)]
    assert names == ["explicit", "decorated"]


@pytest.mark.parametrize("backend", ["mock", "cpu-model"])
def test_a_program_that_never_stops_its_session_exits_at_once_with_the_run_stored(backend, db_path, tmp_path):
    """The sampler thread never holds the interpreter's exit (a daemon thread, stopped by the exit
    handler with the run written); without a thread (the CPU model in the background=False mode of the
    pytest plugin) the same."""
    code = (f"import greentrack, time\n"
            f"s = greentrack.Session('left-open', backend={backend!r}, background=False).start()\n"
            f"time.sleep(0.2)\n")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GREENTRACK_DB": str(db_path)}, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert time.perf_counter() - t0 < 20  # not held by a thread waiting to be stopped
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert (row["name"], row["status"]) == ("left-open", "finished") and row["energy_j"] is not None


@pytest.mark.parametrize("how,status,error", [
    ("raise RuntimeError('boom')", "failed", "RuntimeError: boom"),
    ("raise KeyboardInterrupt", "interrupted", "KeyboardInterrupt"),
])
def test_a_program_killed_by_an_uncaught_exception_leaves_its_open_run_ended_so(how, status, error, db_path,
                                                                                  tmp_path):
    """A session started with start() and never stopped ends with the interpreter: failed (or interrupted)
    when an uncaught exception ended the program, also for a session opened after an earlier one ended
    (greentrack's excepthook is in place only while a session is open). The program's traceback and exit
    status are its own."""
    code = ("import greentrack\n"
            "greentrack.Session('earlier', backend='cpu-model', background=False).start().stop()\n"
            "s = greentrack.Session('left-open', backend='cpu-model', background=False).start()\n"
            f"{how}\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GREENTRACK_DB": str(db_path)}, cwd=tmp_path)
    # Python's own exit: 1, or for Ctrl-C death by SIGINT as Python does it (-2 seen from a parent on POSIX)
    assert p.returncode == (1 if status == "failed" else -2 if os.name == "posix" else 1), p.stderr
    assert "Traceback" in p.stderr and error.split(":")[0] in p.stderr
    rows = {r["name"]: r for r in Store(db_path, create=False).list_runs(last=None)}
    assert rows["earlier"]["status"] == "finished"
    assert rows["left-open"]["status"] == status and error in (rows["left-open"]["error"] or "")


def test_a_session_left_open_beside_a_stopped_one_still_ends_with_the_program(tmp_path, db_path):
    """Stopping one session forgets that one only: another left open is still stopped at exit, and the
    process keeps no trace of the stopped ones (its list of open sessions does not grow)."""
    code = """
import greentrack
from greentrack.measure import lifecycle
a = greentrack.Session('left-open', backend='cpu-model', background=False).start()
b = greentrack.Session('stopped', backend='cpu-model', background=False).start()
assert len(lifecycle._order) == 2
b.stop()
assert [r() for r in lifecycle._order] == [a] and lifecycle.open_sessions() == [a]
for i in range(3):
    greentrack.Session(f'more{i}', backend='cpu-model', background=False, store=False).start().stop()
assert len(lifecycle._order) == 1
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GREENTRACK_DB": str(db_path)}, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r["status"] for r in Store(db_path, create=False).list_runs(last=None)}
    assert rows == {"left-open": "finished", "stopped": "finished"}


def test_an_error_an_interactive_session_survived_does_not_fail_a_later_run(tmp_path, db_path):
    """An interactive interpreter reports an uncaught error through sys.excepthook and goes on; once the
    session open then has ended, that error must not mark a later session left open at exit as failed."""
    code = """
import sys
import greentrack
a = greentrack.Session('during-error', backend='cpu-model', background=False).start()
try:
    1 / 0
except ZeroDivisionError:
    sys.excepthook(*sys.exc_info())  # what the interactive prompt does with an uncaught error
a.stop()
b = greentrack.Session('later', backend='cpu-model', background=False).start()
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GREENTRACK_DB": str(db_path)}, cwd=tmp_path)
    assert p.returncode == 0 and "ZeroDivisionError" in p.stderr, p.stderr
    rows = {r["name"]: r["status"] for r in Store(db_path, create=False).list_runs(last=None)}
    assert rows == {"during-error": "finished", "later": "finished"}


def test_process_hooks_are_in_place_only_while_a_session_is_open(tmp_path, db_path):
    """sys.excepthook and the at-fork callback are greentrack's only while a session is open (the interpreter
    holds them to its end, which slows every exit); a program's hook chained on top since is left alone."""
    code = """
import sys
import greentrack
from greentrack.measure import atfork
orig = sys.excepthook
s = greentrack.Session('h1', backend='cpu-model', background=False).start()
assert sys.excepthook is not orig and atfork.callbacks and atfork.registered
s.stop()
assert sys.excepthook is orig and not atfork.callbacks
s = greentrack.Session('h2', backend='cpu-model', background=False).start()
theirs = sys.excepthook
def mine(*a):
    theirs(*a)
sys.excepthook = mine
s.stop()
assert sys.excepthook is mine and not atfork.callbacks
print('ok')
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "GREENTRACK_DB": str(db_path)}, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_exception_marks_failed_and_propagates(db_path):
    with pytest.raises(ZeroDivisionError):
        with greentrack.session("boom") as s:
            _ = 1 / 0
    assert s.result.status == "failed"
    row = Store(db_path).get_run(s.id)
    assert row["status"] == "failed" and "ZeroDivisionError" in row["error"]


def test_keyboard_interrupt_marks_interrupted(db_path):
    with pytest.raises(KeyboardInterrupt):
        with greentrack.session("ctrl-c") as s:
            raise KeyboardInterrupt
    assert Store(db_path).get_run(s.id)["status"] == "interrupted"


def test_no_region_uses_labelled_world_average():
    with greentrack.session("noregion") as s:
        time.sleep(0.1)
    r = s.result
    assert r.region == "WORLD"
    assert any("world average" in n for n in r.notes)
    assert "IEA" in r.intensity_source and "2019" in r.intensity_source


def test_unknown_region_strict_and_lenient(capsys):
    with pytest.raises(UnknownRegionError) as ei:
        greentrack.Session("x", region="Frnace", strict=True).start()
    assert "France" in str(ei.value)
    with greentrack.session("lenient", region="Frnace") as s:
        s.step()
    assert s.result.status == "finished" and s.result.energy_j is not None
    assert "unknown region" in capsys.readouterr().err


def test_unknown_backend_never_breaks_the_loop(monkeypatch, capsys):
    monkeypatch.setenv("GREENTRACK_BACKEND", "nvidai")
    with pytest.raises(ConfigError) as ei:
        greentrack.Session("x", strict=True).start()
    assert "unknown backend 'nvidai'" in str(ei.value) and "nvidia" not in str(ei.value).split("known:")[0]
    with greentrack.session("goes-on") as s:
        for _ in range(3):
            s.step()
    assert s.result.status == "finished"
    assert s.result.energy_j is None  # nothing measured, nothing invented
    err = capsys.readouterr().err
    assert err.count("unknown backend") == 1


def test_no_gpu_says_so_once_and_passes_nothing_off_as_measured(monkeypatch, capsys, tmp_path):
    from greentrack import plugins

    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    for _ in range(2):
        with greentrack.session("cpu-only") as s:
            time.sleep(0.05)
        # nothing measures here: the CPU model's figure, labelled as a model (docs/cpu-model.md)
        assert s.result.energy_method == "model"
        assert [(d.kind, d.method) for d in s.result.devices] == [("cpu", "model")]
    err = capsys.readouterr().err
    assert err.count("nothing here measures power") == 1 and "modelled figures are marked ~" in err
    # without the model either: nothing at all, and no figure invented
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS",
                       "greentrack.measure.sources.nvml,greentrack.measure.sources.cpu_model")
    plugins.reset()
    for _ in range(2):
        with greentrack.session("cpu-only") as s:
            time.sleep(0.05)
        assert s.result.energy_j is None and s.result.co2e_kg is None and s.result.devices == []
    assert capsys.readouterr().err.count("no GPU power source found") == 1


def test_non_numeric_step_counts_are_ignored_with_one_line(capsys):
    with greentrack.session("badsteps") as s:
        s.step(samples="lots")
        s.step(samples=4, tokens=None)
        s.step(samples=-1)
    assert s.result.status == "finished"
    assert s.result.steps == 3 and s.result.samples == 4
    assert capsys.readouterr().err.count("not a non-negative number") == 1


def test_failing_sensor_is_reported_once_and_run_goes_on(monkeypatch, capsys):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:200")
    monkeypatch.setenv("GREENTRACK_MOCK_FAIL_AFTER", "0.3")
    with greentrack.session("flaky", sample_interval_s=0.05, flush_interval_s=0.1) as s:
        time.sleep(0.8)
    r = s.result
    assert r.status == "finished"
    # energy up to the failure is kept; nothing is made up for the rest, which is counted as unmeasured
    lost_at = r.devices[0].gaps[0][0]
    assert r.energy_j == pytest.approx(200 * (lost_at - r.started_at), abs=200 * 0.06)
    assert r.unmeasured_s == pytest.approx(r.ended_at - lost_at)
    err = capsys.readouterr().err
    assert err.count("mock:gpu0 failed in power read") == 1


def test_multi_gpu_and_fallback_methods(monkeypatch):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    monkeypatch.setenv("GREENTRACK_MOCK_GPUS", "2")
    monkeypatch.setenv("GREENTRACK_MOCK_FEATURES", "instant")  # no buffer, no counter
    with greentrack.session("two") as s:
        time.sleep(0.5)
    r = s.result
    assert [d.key for d in r.devices] == ["gpu0", "gpu1"]
    assert {d.method for d in r.devices} == {"instant"}
    assert r.energy_j == pytest.approx(2 * 100 * r.duration_s, rel=0.02)


def test_unwritable_database_measures_but_does_not_store(monkeypatch, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("GREENTRACK_DB", str(blocker / "sub" / "gt.db"))
    with greentrack.session("nodb") as s:
        time.sleep(0.1)
    assert s.result.status == "finished" and s.result.energy_j is not None
    assert "cannot create database folder" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        greentrack.Session("strict", strict=True).start()


def test_live_budget_fires_hook_once(monkeypatch):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:360000")  # 0.1 kWh per second
    seen = []

    class Watcher:
        @greentrack.hookimpl
        def greentrack_budget_exceeded(self, run, budget, usage):
            seen.append((budget["budget"], usage["energy_kwh"]))

    from greentrack import plugins

    plugins.register(Watcher())
    with greentrack.session("budget", budget_kwh=0.02, flush_interval_s=0.1, sample_interval_s=0.05) as s:
        time.sleep(0.6)
    assert len(seen) == 1 and seen[0][0] == "energy_kwh" and seen[0][1] > 0.02
    assert s.result.budget["limit"] == 0.02 and s.result.budget["exceeded"] is True
    with greentrack.session("within", budget_kwh=1e6) as s2:
        time.sleep(0.05)
    assert s2.result.budget["exceeded"] is False and s2.result.budget["usage"] < 1e6


def test_forked_child_does_not_finish_the_parents_run(db_path):
    """A DataLoader-style forked worker exiting must leave the parent's run running."""
    import os

    # the globals of the module the public function lives in (pytester may have dropped it from
    # sys.modules); nothing is imported in the child: another thread may hold the import lock
    gs = greentrack.Session.stop.__globals__["lifecycle"].__dict__
    with greentrack.session("parent") as s:
        deadline = time.time() + 10  # the run row is written by the sampler thread: wait for it first
        while time.time() < deadline and not Store(db_path).list_runs(last=None):
            time.sleep(0.01)
        pid = os.fork()
        if pid == 0:  # child: what the interpreter's exit would run
            forgot = (s._forked and not gs["_order"] and gs["_hook"] is None
                      and not gs["atfork"].callbacks)  # the parent's session, its order, the process hooks
            gs["_stop_at_exit"]()
            os._exit(0 if not gs["_active"] and forgot else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # the run row is written by the sampler thread just after start(): on a loaded machine, wait for it
        deadline = time.time() + 10
        while not Store(db_path).list_runs(last=1) and time.time() < deadline:
            time.sleep(0.01)
        assert Store(db_path).get_run(s.id)["status"] == "running"
    assert Store(db_path).get_run(s.id)["status"] == "finished"
