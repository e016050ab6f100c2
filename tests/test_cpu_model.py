"""The cpu-model source: codecarbon's real CPU table, real CPU time of real child processes, real sessions.

No RAPL on this machine: a fake powercap tree (tests/test_rapl.py's make_tree) shows that a
measured source always wins over the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_rapl import make_tree

from greentrack import plugins
from greentrack.errors import ConfigError
from greentrack.measure.sampler import THREAD_NAME
from greentrack.measure.sources import build_sources
from greentrack.measure.sources.cpu_model import (
    UNKNOWN_CPU_W_PER_THREAD,
    CPUInfo,
    CPUModelSource,
    CPUTable,
    ModelInputs,
    ProcessCPUTime,
    codecarbon_cpu_table,
    match_cpu,
    read_cpuinfo,
    resolve_inputs,
)
from greentrack.measure.tracker import Session
from greentrack.settings import Settings
from greentrack.store.sqlite import Store

BUSY_CHILD = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


def busy(seconds: float) -> None:
    """*seconds* of this thread's CPU (the process's clock would count greentrack's sampler thread too)."""
    t = time.thread_time()
    while time.thread_time() - t < seconds:
        pass


@pytest.fixture
def no_measured_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as a CI runner: auto backend, no RAPL tree, no NVML."""
    monkeypatch.setenv("GREENTRACK_BACKEND", "auto")
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(tmp_path / "no-powercap"))
    monkeypatch.setenv("GREENTRACK_DISABLE_PLUGINS", "greentrack.measure.sources.nvml")
    for var in ("GREENTRACK_CPU_WATTS_PER_THREAD", "GREENTRACK_CPU_IDLE_SHARE"):
        monkeypatch.delenv(var, raising=False)
    plugins.reset()


@pytest.fixture
def own_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model counts this process's own CPU time only, as the test's oracle (``time.process_time``)
    does: live descendants are left out. A test process may have some that are not the test's own
    (the session's PostgreSQL cluster: its server processes are children of pytest and wake on their
    own), and their CPU time would land in whichever window the model refreshes them in.
    test_cpu_time_counts_own_threads_and_children_reaped_or_live checks the live children's count."""
    monkeypatch.setattr(ProcessCPUTime, "live_children_s", lambda self: 0.0)


# the CPU table ---------------------------------------------------------------------------------
def test_codecarbon_table_is_read_from_its_installed_file_and_matched_like_codecarbon() -> None:
    table, source = codecarbon_cpu_table()
    assert source.startswith("codecarbon ") and source.endswith("data/hardware/cpu_power.csv")
    assert len(table) > 1000
    names = table
    probe = ("import sys\nfrom greentrack.measure.sources.cpu_model import codecarbon_cpu_table, resolve_inputs\n"
             "assert codecarbon_cpu_table() and resolve_inputs()\nprint(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('codecarbon', 'pandas', 'rapidfuzz', 'cpuinfo')))")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"  # read as a file: codecarbon (pandas, rapidfuzz) never imported
    cases = {
        "AMD EPYC 7763 64-Core Processor": ("AMD EPYC 7763", 280.0),  # GitHub's hosted runners
        "Intel(R) Xeon(R) Platinum 8480+": ("Intel Xeon Platinum 8480+", 350.0),
        "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz": ("Intel Xeon E5-2686 v4", 145.0),
        "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz": ("Intel Core i7-10700", 65.0),
    }
    for raw, (name, tdp) in cases.items():
        assert match_cpu(raw, names) == name
        assert table[name] == tdp
    assert match_cpu("Intel(R) Xeon(R) Processor", names) is None  # a VM's generic name: ambiguous, no guess
    assert match_cpu("Quantum Abacus 9000", names) is None


BRANDS = [  # what /proc/cpuinfo says on CI runners, clouds, laptops; and names no table knows
    "Intel(R) Xeon(R) Processor", "AMD EPYC 7763 64-Core Processor", "Intel(R) Xeon(R) Platinum 8480+",
    "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz", "Apple M2", "Apple M1 Pro",
    "Quantum Abacus 9000", "AMD Ryzen 9 5950X 16-Core Processor", "AMD EPYC 9654 96-Core Processor",
    "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz", "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz",
    "Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", "Intel(R) Xeon(R) CPU @ 2.20GHz", "AMD EPYC 7B13",
    "Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz", "Intel(R) Core(TM) i9-13900K", "13th Gen Intel(R) Core(TM) i7-1365U",
    "AMD Ryzen 7 PRO 4750U with Radeon Graphics", "Intel(R) Celeron(R) N4020 CPU @ 1.10GHz", "Intel Xeon", "AMD",
    "AMD Ryzen Threadripper PRO 5995WX 64-Cores", "Intel(R) Core(TM) Ultra 7 155H", "ARMv8 Processor rev 1 (v8l)",
    # fewer words than the entry (an entry holding every word of the brand), and words around a " CPU @ "
    "Xeon Platinum 8480+", "EPYC 7763", "Core i7-10700", "X CPU @ 2.00GHz", " CPU @ 2.00GHz", "Y CPU @ 3GHz",
    "i7 CPU @ 3GHz", "AMD EPYC", "AMD EPYC Processor",  # generic names some VMs report: in many rows
]


def test_matching_agrees_with_codecarbons_own_matcher() -> None:
    """The same entry as codecarbon's ``_get_matching_cpu`` (rapidfuzz) for every brand string."""
    cpu = pytest.importorskip("codecarbon.core.cpu")
    from codecarbon.input import DataSource

    df = DataSource().get_cpu_power_data()
    table, _ = codecarbon_cpu_table()
    for brand in BRANDS:
        theirs = cpu.TDP._get_matching_cpu(object(), brand, df)  # self is unused there
        assert match_cpu(brand, table) == theirs, brand
        if theirs is not None:
            assert table[theirs] == float(df[df["Name"] == theirs]["TDP"].values[0])


def test_matching_a_list_of_names_as_a_table() -> None:
    """match_cpu takes a plain list of names too (each made a row of a table at 1 W)."""
    names = ["Intel Xeon Platinum 8480+", "AMD EPYC 7763", 'Odd, "Quoted" Name']
    assert match_cpu("Intel(R) Xeon(R) Platinum 8480+", names) == "Intel Xeon Platinum 8480+"
    assert match_cpu("EPYC 7763", names) == "AMD EPYC 7763"
    assert match_cpu("Quantum Abacus 9000", names) is None


def test_an_entry_is_found_by_its_whole_name_at_the_start_of_a_row_only() -> None:
    """The exact lookup reads a row only where the name ends at its field: a name that merely starts
    another (hundreds of rows start "Intel Xeon"), or sits inside one, is not taken for it."""
    rows = ["Intel Xeon Platinum 8480+,350", "Intel Xeon E5-2686 v4,145", '"Intel Xeon" ,1', " AMD EPYC ,2",
            'Odd, "Quoted" Name,3', "Vendor X Intel Xeon,4", "AMD EPYC 7763,280", "amd epyc 7763,999"]
    table = CPUTable("Name,TDP\n" + "\n".join(rows) + "\n", "test")
    assert table.find("intel xeon") == "Intel Xeon" and table.tdp_of("INTEL XEON") == 1.0
    assert table.find("AMD EPYC") == "AMD EPYC" and table.tdp_of("amd epyc") == 2.0
    assert table.tdp_of("AMD EPYC 7763") == 280.0  # the first row of a name wins
    assert table.tdp_of('Odd, "Quoted" Name') == 3.0
    assert table.find("Xeon Platinum 8480+") is None  # inside a name, not at its start
    assert table.find("Intel Xeon Platinum") is None  # the start of a longer name
    assert table.find("Name") is None  # the header is no row
    assert match_cpu("Intel(R) Xeon(R) CPU @ 2.20GHz", table) == "Intel Xeon"
    wide = CPUTable("Name,TDP\n" + "\n".join(f"Intel Xeon {i},{i + 1}" for i in range(3000)) + "\n", "t")
    assert match_cpu("Intel(R) Xeon(R) CPU @ 2.20GHz", wide) is None  # a generic name: ambiguous, no guess
    assert match_cpu("Intel(R) Xeon(R) 2999", wide) == "Intel Xeon 2999"
    # past the first places that merely start longer names, the rest are searched another way: same answer
    for before in (3, 15, 16, 17, 40):
        rows = [f"Intel Xeon {i}x,{i + 1}" for i in range(before)] + ['"Intel Xeon" ,7', "Intel Xeon,8"]
        t = CPUTable("Name,TDP\n" + "\n".join(rows) + "\n", "t")
        assert (t.find("INTEL XEON"), t.tdp_of("intel xeon"), t.find("intel xeo"), t.find("intel xeon 9")) == \
            ("Intel Xeon", 7.0, None, None), before


@pytest.mark.parametrize("body, usable", [
    ("", False),
    ("no comma here\n,5\nname only,\nzero,0\nnegative,-3\n", False),  # no row has a name and positive watts
    ("name\n,5", False),  # read as one line, these two would make a row
    ("\nname\n,5", False),  # the same after an empty first line
    ("garbage\nIntel Foo 1,nan-ish\nIntel Bar 2,65", True),  # the good row last, no newline after it
    ("Intel Bar 2,65\n", True),
    ("\n\nIntel Bar 2,65\n\n", True),
    ("X,5", True),  # a one-letter name: every character of the row counts
    ("bad\nX,5", True),
])
def test_a_cpu_table_without_a_good_row_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str,
                                                    usable: bool) -> None:
    """codecarbon's CPU table is used only when some line of it is a row with a name and a positive TDP
    (wherever it stands in the file); otherwise the model falls back as for an unknown CPU."""
    from greentrack.carbon import grid

    data = tmp_path / "codecarbon" / "data"
    (data / "hardware").mkdir(parents=True)
    (data / "hardware" / "cpu_power.csv").write_text("Name,TDP\n" + body)
    monkeypatch.setattr(grid, "codecarbon_data_dir", lambda: data)
    found = codecarbon_cpu_table()
    assert (found is not None) is usable
    if usable:
        name, watts = ("X", 5.0) if "X,5" in body else ("Intel Bar 2", 65.0)
        assert found[0][name] == watts


def test_cpuinfo_parsing_threads_and_virtualisation() -> None:
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nsiblings\t: 4\ncpu cores\t: 2\n"
            "flags\t\t: fpu sse hypervisor avx2\n\nprocessor\t: 1\nmodel name\t: other\n")
    info = read_cpuinfo(text)
    assert (info.name, info.threads_per_core, info.package_threads, info.virtual) == (
        "AMD EPYC 7763 64-Core Processor", 2, 4, True)
    real = read_cpuinfo()  # this machine's own /proc/cpuinfo
    assert real.logical >= 1


# the model's inputs --------------------------------------------------------------------------------
def test_watts_per_thread_from_tdp_on_bare_metal_and_in_a_vm(no_measured_source: None) -> None:
    bare = resolve_inputs({}, CPUInfo("Intel(R) Xeon(R) Platinum 8480+", 224, 2, 112, False))
    assert bare.watts_per_thread == pytest.approx(350 / 112)
    assert bare.tdp_w == 350 and bare.threads == 112 and "TDP 350 W / 112 threads" in bare.basis
    # a GitHub runner: a VM seeing 4 threads of a 64-core EPYC; the name gives the cores, SMT the rest
    vm_amd = resolve_inputs({}, CPUInfo("AMD EPYC 7763 64-Core Processor", 4, 2, 4, True))
    assert vm_amd.watts_per_thread == pytest.approx(280 / 128)
    # an Intel VM: TDP known, but not how many threads the host CPU has: no division by the VM's slice
    vm_intel = resolve_inputs({}, CPUInfo("Intel(R) Xeon(R) Platinum 8480+", 2, 1, 2, True))
    assert vm_intel.watts_per_thread == UNKNOWN_CPU_W_PER_THREAD
    assert "virtual machine" in vm_intel.basis and "TDP 350 W" in vm_intel.basis
    unknown = resolve_inputs({}, CPUInfo("Intel(R) Xeon(R) Processor", 2, 1, 2, True))
    assert unknown.watts_per_thread == 4.0 and "not in codecarbon" in unknown.basis
    assert unknown.idle_share == 0.0 and "Green Algorithms" in unknown.idle_basis


def test_user_values_win_environment_over_pyproject(no_measured_source: None, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.greentrack]\ncpu_watts_per_thread = 7.5\ncpu_idle_share = 0.1\n")
    monkeypatch.chdir(tmp_path)
    s = Session("cfg", backend="cpu-model", store=False)
    s.start()
    s.stop()
    info = s.result.devices[0].info
    assert info["watts_per_thread"] == 7.5 and info["basis"] == "set by [tool.greentrack] cpu_watts_per_thread"
    assert info["idle_share"] == 0.1 and info["idle_basis"] == "set by [tool.greentrack] cpu_idle_share"
    monkeypatch.setenv("GREENTRACK_CPU_WATTS_PER_THREAD", "2")
    got = resolve_inputs({"cpu_watts_per_thread": 7.5})
    assert got.watts_per_thread == 2.0 and got.basis == "set by GREENTRACK_CPU_WATTS_PER_THREAD"


@pytest.mark.parametrize("env, value, message", [
    ("GREENTRACK_CPU_WATTS_PER_THREAD", "lots", "GREENTRACK_CPU_WATTS_PER_THREAD='lots' is not a number"),
    ("GREENTRACK_CPU_WATTS_PER_THREAD", "0", "GREENTRACK_CPU_WATTS_PER_THREAD='0' must be a number > 0"),
    ("GREENTRACK_CPU_WATTS_PER_THREAD", "nan", "must be a number > 0"),
    ("GREENTRACK_CPU_IDLE_SHARE", "1.5", "GREENTRACK_CPU_IDLE_SHARE='1.5' must be a number between 0 and 1"),
])
def test_bad_values_are_one_line_errors(no_measured_source: None, monkeypatch: pytest.MonkeyPatch, cli,
                                        env: str, value: str, message: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_inputs({})
    with pytest.raises(ConfigError):
        Session("bad", store=False, strict=True).start()
    p = cli("run", "--", sys.executable, "-c", "pass")  # the CLI: one line, exit 2, no traceback
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


# CPU time -----------------------------------------------------------------------------------------
def live_children_pids() -> list[int]:
    """The live children of this process now (a session's PostgreSQL server, another fixture's process)."""
    pids: list[int] = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{tid}/children") as fh:
                pids += [int(k) for k in fh.read().split()]
        except OSError:
            continue
    return pids


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of process *pid* and its descendants, counted as ProcessCPUTime counts a live child
    (its own and its reaped children's time, then its live children's); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rpartition(")")[2].split()  # f[11:15]: utime, stime, cutime, cstime
        kids = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids += [int(k) for k in fh.read().split()]
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK") + sum(tree_cpu_s(k) for k in kids)


def test_cpu_time_counts_own_threads_and_children_reaped_or_live() -> None:
    ct = ProcessCPUTime()
    foreign = live_children_pids() if ct._proc else []
    if foreign:
        # children that are not this test's (the session's PostgreSQL cluster where the test process reaps
        # orphans, as PID 1 of a container does) are left out of the live count: their CPU time, on their own
        # schedule, would land in the tight windows below
        ct.live_children_s = lambda: (ProcessCPUTime.live_children_s(ct)  # type: ignore[method-assign]
                                      - sum(tree_cpu_s(k) for k in foreign))
    c0 = ct.read()
    busy(0.1)
    c1 = ct.read()
    assert 0.09 < c1 - c0 < 0.3
    subprocess.run([sys.executable, "-c", BUSY_CHILD.format(s=0.3)], check=True)  # waited for: RUSAGE_CHILDREN
    c2 = ct.read()
    assert 0.3 <= c2 - c1 < 0.8
    live0 = ct.live_children_s()  # what is left of other children (none where /proc tells them apart)
    child = subprocess.Popen([sys.executable, "-c", BUSY_CHILD.format(s=0.6) + "time.sleep(30)\n"])
    try:
        deadline = time.monotonic() + 20
        live = 0.0
        while time.monotonic() < deadline:  # still running: counted live from /proc
            time.sleep(0.1)
            live = ct.live_children_s() - live0
            if live >= 0.6:
                break
        assert live >= 0.6
        c3 = ct.read()
        assert c3 - c2 >= 0.6
    finally:
        child.kill()
        child.wait()
    c4 = ct.read()  # reaped now: its time moves from live to reaped, never counted twice
    assert c3 <= c4 < c3 + 0.3


def test_greentracks_own_sampler_thread_is_not_counted(no_measured_source: None, own_cpu_only: None) -> None:
    burned = []

    class BusyExporter:  # a plugin whose hook runs on the sampler thread, as exporters' do
        @plugins.hookimpl
        def greentrack_samples(self, run, batch):
            t = time.thread_time()
            busy(0.1)
            burned.append(time.thread_time() - t)

    plugins.register(BusyExporter(), name="busy-exporter")
    with Session("sampler-cost", backend="cpu-model", store=False, sample_interval_s=0.05,
                 flush_interval_s=0.1) as s:
        time.sleep(0.8)
    w = s.result.devices[0].info["watts_per_thread"]
    assert sum(burned) >= 0.3  # the sampler thread burned that much CPU meanwhile
    assert s.result.energy_j < 0.1 * w  # ... none of which is the workload's (a sleep)


def sampler_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == THREAD_NAME]


def test_a_session_without_background_sampling_reads_the_model_at_the_edges_only(
        no_measured_source: None, own_cpu_only: None, db_path: Path) -> None:
    """background=False (the pytest plugin): no sampler thread for the CPU model; each phase and
    energy_between still get exactly the CPU time of their window, the series is stored once at stop
    and the greentrack_samples hook called then; step marks are folded at the edges."""
    batches: list[int] = []

    class Exporter:
        @plugins.hookimpl
        def greentrack_samples(self, run, batch):
            batches.append(len(batch))

    plugins.register(Exporter(), name="count-batches")
    s = Session("edges", backend="cpu-model", background=False, flush_interval_s=0.05, strict=True)
    s.start()
    assert sampler_threads() == [] and s.sampler.inline
    assert s.sampler.states[0].acc.n_raw == 1  # a first sample at start, on the calling thread
    w = s.sources[0].inputs.watts_per_thread
    cpus = []
    for i in range(3):
        cpu0 = time.process_time()
        with s.phase(f"busy-{i}"):
            busy(0.05)
        cpus.append(time.process_time() - cpu0)
        for _ in range(1000):
            s.step()
        t0 = time.time()
        time.sleep(0.05)
        assert s.energy_between(t0) < 0.005 * w  # asleep: hardly any CPU
        # the marks of the earlier rounds were folded at this round's edges, not kept raw for the run
        assert len(s._steps.marks) <= 3 * 1000 and s._steps.n == 1000 * i
    assert batches == [] and sampler_threads() == []  # nothing flushed while running
    r = s.stop()
    assert r.steps == 3000 and batches == [1]
    for ph, cpu in zip(r.phases, cpus):  # the model's figure for the phase's own CPU time
        assert ph.energy_j == pytest.approx(w * cpu, rel=0.1)
    (row,) = Store(db_path, create=False).list_runs(last=None)
    assert row["energy_j"] == pytest.approx(r.energy_j, rel=1e-9) and row["status"] == "finished"
    times, _watts = Store(db_path, create=False).read_series(row["id"])["cpu-model"]
    assert len(times) >= 2 and times[-1] >= r.phases[-1].ended_at  # written once, at stop


@pytest.mark.parametrize("exact_edges", [True, False])
def test_without_a_thread_the_stop_reads_the_model_once_more(no_measured_source: None, own_cpu_only: None,
                                                             exact_edges: bool) -> None:
    """Whether or not the stop waits for counters (none here), its last read covers the work since the
    last edge: the run's energy is the model's figure for all of its CPU time."""
    s = Session("tail", backend="cpu-model", background=False, store=False, exact_edges=exact_edges)
    outer0 = time.process_time()
    s.start()
    cpu0 = time.process_time()
    busy(0.1)
    cpu1 = time.process_time()
    r = s.stop()
    outer1 = time.process_time()
    w = s.sources[0].inputs.watts_per_thread
    # at least the busy work after the last edge; at most all the CPU time from before the start to after the
    # stop (a garbage collection of a large test process may fall inside the run but outside the busy loop)
    assert w * (cpu1 - cpu0) * 0.95 <= r.energy_j <= w * (outer1 - outer0) * 1.05, \
        (r.energy_j, cpu1 - cpu0, outer1 - outer0)


def test_the_model_counts_from_the_runs_start_not_from_its_sources_creation(
        no_measured_source: None, own_cpu_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session starts (started_at) before it builds its sources; the CPU time between the two is the
    run's, counted as CPU time (CPUModelSource.bind), not filled with the first sample's power. Here the
    start waits 0.1 s (no CPU) and works 20 ms before the source exists: filled from the first sample, a
    mean over the busy instants of the start, the wait would count as up to 0.1 s of a thread's power;
    counted from the source's creation, the 20 ms of work would be missing. (5 ms of slack either way: a
    reading retried after a stall keeps its tightest pair of clock readings, and the stop fills the
    instants after its last reading.)"""
    import greentrack.measure.sources.cpu_model as cpu_model

    real = cpu_model.resolve_inputs

    def slow_inputs(*args, **kwargs):
        time.sleep(0.1)  # inside the run, before the source exists: wall time, no CPU
        busy(0.02)  # and CPU time
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_model, "resolve_inputs", slow_inputs)
    s = Session("from-start", backend="cpu-model", background=False, store=False)
    s.start()
    src = s.sources[0]
    assert src._t0 == s.started_at  # the source's origin is the run's start
    t, j = s.edge()
    cpu_then = time.process_time()
    w = src.inputs.watts_per_thread
    assert j <= w * (cpu_then - s.started_cpu_s) + 1e-9  # the joules so far: the run's CPU time, no more
    busy(0.05)
    cpu_before_stop = time.process_time()
    r = s.stop()
    cpu_after_stop = time.process_time()
    slack = w * 0.005
    run_cpu_low, run_cpu_high = cpu_before_stop - s.started_cpu_s, cpu_after_stop - s.started_cpu_s
    assert w * run_cpu_low - slack <= r.energy_j <= w * run_cpu_high + slack, (r.energy_j, run_cpu_low, run_cpu_high)
    assert r.duration_s >= 0.1  # the wait is inside the run, its wall time counted, its CPU time (none) too


def test_bind_moves_only_a_fresh_sources_origin_and_only_with_the_runs_clocks(own_cpu_only: None) -> None:
    """CPUModelSource.bind: a source not yet read counts from the run's start (its wall clock and the
    process's own CPU clock then); a source already read (polled, or marked at an edge) keeps its origin,
    and a session-like object without both clocks changes nothing."""
    class Run:
        def __init__(self, started_at: object, started_cpu_s: object) -> None:
            self.started_at, self.started_cpu_s = started_at, started_cpu_s

    start_t, start_cpu = time.time(), time.process_time()
    busy(0.02)
    src = CPUModelSource(ModelInputs(10.0, "test value"))
    t0, cpu0 = src._t0, src._cpu0
    for half in (Run(start_t, None), Run(None, start_cpu), Run(start_t, "0.1")):
        src.bind(half)
        assert (src._t0, src._cpu0) == (t0, cpu0)
    src.bind(Run(start_t, start_cpu))
    assert src._t0 == start_t and src._cpu0 <= cpu0 - 0.02 and src._last == (start_t, src._cpu0)
    _t, j = src.mark(src.devices[0])
    assert j >= 10.0 * 0.02  # the 20 ms before the source existed are the run's

    marked = CPUModelSource(ModelInputs(10.0, "test value"))
    marked.mark(marked.devices[0])
    polled = CPUModelSource(ModelInputs(10.0, "test value"))
    busy(0.002)
    polled.poll(polled.devices[0])
    for read in (marked, polled):
        origin = (read._t0, read._cpu0)
        read.bind(Run(start_t, start_cpu))
        assert (read._t0, read._cpu0) == origin


def test_edges_read_by_mark_are_the_samples_a_poll_would_give(no_measured_source: None, own_cpu_only: None) -> None:
    """Session.edge (the pytest plugin's read at each test's call): the window between two edges gets the
    model's figure for its CPU time, and a phase marked with it keeps it exactly. The series keeps an
    edge's reading only EDGE_SERIES_S after the last one it kept, in order, at the next poll: windows
    between kept readings get the same figure from energy_between and from the attribution of a phase
    marked without one. Kills a kept reading dropped (its energy missing from the series), readings kept
    out of order or all of them, the joules counted from the previous poll instead of the source's start,
    and the idle share left out of a mark."""
    from greentrack.measure.sources.cpu_model import EDGE_SERIES_S

    s = Session("edges", backend="cpu-model", background=False, store=False)
    s.start()
    src = s.sources[0]
    w = src.inputs.watts_per_thread
    windows = []
    for i in range(4):  # short windows: their readings mostly stay out of the series
        busy(0.002)  # between windows: outside them
        t_a, j_a = s.edge()
        cpu0 = time.process_time()
        busy(0.005 * (i + 1))
        cpu = time.process_time() - cpu0
        t_b, j_b = s.edge()
        windows.append((t_a, t_b, j_b - j_a))
        s.mark_phase(f"w{i}", t_a, t_b, energy_j=j_b - j_a)
        assert t_b > t_a and j_b - j_a == pytest.approx(w * cpu, rel=0.05, abs=w * 2e-4)
    assert src.marks_pending <= 1  # 8 readings in about 0.06 s: at most one 0.1 s after the start
    wide = []
    for i in range(2):  # windows whose edges are each kept: EDGE_SERIES_S apart
        time.sleep(EDGE_SERIES_S)
        t_a, j_a = s.edge()
        busy(0.01)
        time.sleep(EDGE_SERIES_S)
        t_b, j_b = s.edge()
        wide.append((t_a, t_b, j_b - j_a))
        s.mark_phase(f"wide{i}", t_a, t_b)  # no figure given: attributed from the series
    kept = [t for t, _cpu in src._marks]
    assert kept == sorted(kept) and all(b - a >= EDGE_SERIES_S for a, b in zip(kept, kept[1:]))
    assert {x for w_ in wide for x in w_[:2]} <= set(kept)
    acc = s.sampler.states[0].acc
    raw_before = acc.n_raw
    for t_a, t_b, e in wide:  # polls first: the kept readings become samples
        assert s.energy_between(t_a, t_b) == pytest.approx(e, abs=2e-4)
    assert acc.n_raw >= raw_before + len(kept)
    r = s.stop()
    for ph, (_t_a, _t_b, e) in zip(r.phases, windows + wide):
        assert ph.energy_j == pytest.approx(e, abs=2e-4)
    for ph, (_t_a, _t_b, e) in zip(r.phases, windows):
        assert ph.energy_j == e  # the edges' own figure, as it was given
    # with an idle share, a mark's joules hold the share of the wall time too
    idle = CPUModelSource(ModelInputs(10.0, "test value", idle_share=0.5))
    time.sleep(EDGE_SERIES_S)
    t0, j0 = idle.mark(idle.devices[0])
    time.sleep(EDGE_SERIES_S)
    t1, j1 = idle.mark(idle.devices[0])
    assert j1 - j0 == pytest.approx(5.0 * (t1 - t0), rel=0.2)
    samples = idle.poll(idle.devices[0])
    assert [t for t, _p in samples[:2]] == [t0, t1] and len(samples) == 3


def test_a_phase_keeps_the_energy_read_at_its_edges_and_only_a_real_one(no_measured_source: None,
                                                                         own_cpu_only: None) -> None:
    """mark_phase(..., energy_j=): the stored phase holds that figure as given, not the series' attribution
    (kills the figure ignored or given to another phase); one that is not a finite float >= 0 is not kept,
    and that phase is attributed as if none were given; a phase marked without one is attributed."""
    s = Session("given", backend="cpu-model", background=False)
    s.start()
    t_a, _j = s.edge()
    busy(0.02)
    t_b, _j = s.edge()
    busy(0.02)
    t_c, _j = s.edge()
    s.mark_phase("given", t_a, t_b, energy_j=1234.5)
    for bad in (float("nan"), -1.0, float("inf"), "7", 7):
        s.mark_phase(f"bad {bad!r}", t_b, t_c, energy_j=bad)  # type: ignore[arg-type]
    s.mark_phase("attributed", t_b, t_c)
    r = s.stop()
    energies = {p.name: p.energy_j for p in r.phases}
    assert energies.pop("given") == 1234.5
    attributed = energies.pop("attributed")
    assert attributed is not None and 0 < attributed < 1234.5
    assert set(energies.values()) == {attributed}
    from greentrack.store import open_store

    stored = {p["name"]: p["energy_j"] for p in open_store(s.settings.db_path).get_run(s.id)["phases"]}
    assert stored["given"] == 1234.5 and stored["attributed"] == pytest.approx(attributed)


def test_marks_and_polls_give_one_energy_even_at_one_instant_and_with_an_idle_share() -> None:
    """A fake clock and CPU clock: a mark's joules and the poll's samples agree exactly, with an idle share
    (kills the CPU term divided by, or its share added to, the idle share); a reading at the instant of
    the previous one makes no sample (no division by zero) and its CPU time goes to the next sample,
    while later readings still become samples (kills ``dt < 0`` and ``break``); a mark's joules count
    from the source's start (kills its CPU or wall time added to the start's)."""
    now, cpu = [100.0], [10.0]

    class FakeCPU:
        def read(self) -> float:
            return cpu[0]

    src = CPUModelSource(ModelInputs(8.0, "test value", idle_share=0.25), cpu_time=FakeCPU(),  # type: ignore[arg-type]
                         clock=lambda: now[0])
    d = src.devices[0]
    t0, j0 = src.mark(d)  # at the source's start: nothing yet
    assert (t0, j0) == (100.0, 0.0)
    now[0], cpu[0] = 102.0, 11.0  # 2 s, 1 CPU second: 8 W x (1 x 0.75 + 2 x 0.25) = 10 J
    t1, j1 = src.mark(d)
    assert j1 - j0 == pytest.approx(10.0)
    cpu[0] = 11.5  # the same instant, half a CPU second more
    t2, j2 = src.mark(d)
    now[0], cpu[0] = 103.0, 12.0  # 1 s more, 0.5 CPU second more (1 since t1): 8 x (1 x 0.75 + 1 x 0.25) = 8 J
    t3, j3 = src.mark(d)
    assert (t2, j3 - j1) == (102.0, pytest.approx(8.0))
    now[0], cpu[0] = 104.0, 12.00000049  # 1 s idle: 2 J (and the CPU seconds kept to the microsecond)
    samples = src.poll(d)
    assert [t for t, _p in samples] == [102.0, 103.0, 104.0]  # none at the repeated instant
    assert [p for _t, p in samples] == pytest.approx([5.0, 8.0, 2.0], rel=1e-5)  # W: 10 J / 2 s, 8 J / 1 s, 2 J / 1 s
    assert d.info["cpu_s"] == 2.0


@pytest.mark.parametrize("answer", [(float("nan"), 1.0), (1.0, float("inf")), ("1.0", 1.0), (1.0, None)])
def test_a_marks_impossible_answer_is_left_to_the_poll(answer: tuple) -> None:
    """A source's mark that answers something other than two finite floats (a plugin's bug) is not used:
    the caller polls instead."""
    from greentrack.measure.sampler import Sampler

    src = CPUModelSource(ModelInputs(10.0, "test value"))
    smp = Sampler([src], 2.0, lambda chunks, states: None, background=False)
    smp.start()
    assert smp.mark_edge() is not None
    src.mark = lambda device: answer  # type: ignore[method-assign]
    assert smp.mark_edge() is None
    smp.stop()


def test_a_long_run_of_edges_is_folded_into_the_series_as_it_goes(no_measured_source: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Edges read without a poll between them (a long pytest suite) are kept only up to MARKS_FOLD_AT, then
    polled into the series: memory stays bounded and every window keeps its energy (kills the fold's
    condition negated or dropped)."""
    import greentrack.measure.sampler as sampler_mod
    from greentrack.measure.sources import cpu_model

    monkeypatch.setattr(sampler_mod, "MARKS_FOLD_AT", 4)
    monkeypatch.setattr(cpu_model, "EDGE_SERIES_S", 0.0)  # every reading kept for the series: the fold's count
    s = Session("long", backend="cpu-model", background=False, store=False)
    s.start()
    src, windows, pending = s.sources[0], [], []
    for _ in range(9):
        t_a, j_a = s.edge()
        pending.append(src.marks_pending)
        busy(0.002)
        t_b, j_b = s.edge()
        pending.append(src.marks_pending)
        windows.append((t_a, t_b, j_b - j_a))
    # kept until there are MARKS_FOLD_AT of them, then polled (the 4th, 8th... edge), not more often
    assert pending == [n % 4 for n in range(1, 19)], pending
    assert s.sampler.states[0].acc.n_raw >= 1 + 2 * 8  # folded as it went, before any poll of the caller
    for t_a, t_b, e in windows:
        assert s.energy_between(t_a, t_b) == pytest.approx(e, abs=2e-4)
    s.stop()


def test_edge_is_left_to_the_poll_where_a_mark_cannot_stand_for_it(no_measured_source: None,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """None (the caller polls) for a source without marks (a GPU), for several devices, while step marks
    wait to be folded at the edge, and after a failed read, said once; never after the stop."""
    from greentrack import notify

    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    with Session("gpu", backend="mock", background=False, store=False) as s:
        assert s.edge() is None
    s = Session("steps", backend="cpu-model", background=False, store=False)
    s.start()
    assert s.edge() is not None
    s.step()
    assert s.edge() is None  # the marks are folded by poll_edges
    s.poll_edges()
    assert s.edge() is not None
    notify.forget()
    source = s.sources[0]

    def broken(device: object) -> tuple[float, float]:
        raise OSError("no clock")

    source.mark = broken  # type: ignore[method-assign]
    assert s.edge() is None and s.edge() is None
    assert capsys.readouterr().err.count("OSError: no clock") == 1
    del source.mark
    s.sampler.states.append(s.sampler.states[0])  # two devices: each would be read at its own instant
    assert s.edge() is None
    s.sampler.states.pop()
    s.stop()
    assert s.edge() is None


def test_a_failing_start_callback_without_a_thread_is_said_once_and_sampling_goes_on(
        capsys: pytest.CaptureFixture[str]) -> None:
    from greentrack import notify
    from greentrack.measure.sampler import Sampler

    def broken_start() -> None:
        raise OSError("the database went away")

    notify.forget()
    src = CPUModelSource(ModelInputs(10.0, "test value"))
    flushed: list[int] = []
    smp = Sampler([src], 2.0, lambda chunks, states: flushed.append(len(chunks)), broken_start, background=False)
    smp.start()
    busy(0.02)
    smp.poll_edges()
    smp.stop()
    err = capsys.readouterr().err
    assert err.count("greentrack: greentrack failed in start: OSError: the database went away") == 1
    assert smp.states[0].acc.n_raw >= 2 and flushed == [1]  # measured all the same, flushed once at stop
    smp.stop()
    assert flushed == [1]  # a second stop reads and writes nothing more


def test_a_source_that_needs_periodic_reads_keeps_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:100")
    with Session("gpu", backend="mock", background=False, store=False) as s:
        assert sampler_threads() == [THREAD_NAME] and not s.sampler.inline
    assert s.result.energy_j == pytest.approx(100 * s.result.duration_s, abs=100 * 0.025)


def test_source_energy_is_cpu_time_times_watts_exactly_per_window(own_cpu_only: None) -> None:
    src = CPUModelSource(ModelInputs(10.0, "test value"))
    d = src.devices[0]
    assert (d.key, d.kind, d.method, src.measured) == ("cpu-model", "cpu", "model", False)
    ct = src.cpu_time
    src.poll(d)
    t0, cpu0 = time.time(), ct.read()
    busy(0.15)
    (t1, p), = src.poll(d)
    cpu1 = ct.read()
    assert p * (t1 - t0) == pytest.approx(10.0 * (cpu1 - cpu0), rel=0.05)
    time.sleep(0.2)  # asleep: hardly any CPU, hardly any energy
    (t2, p2), = src.poll(d)
    assert p2 * (t2 - t1) < 0.1 * 10.0 * 0.15
    idle = CPUModelSource(ModelInputs(10.0, "test value", idle_share=0.5))
    time.sleep(0.2)
    (_t, p3), = idle.poll(idle.devices[0])
    assert p3 == pytest.approx(5.0, rel=0.15)  # half a thread's watts while idle


# sessions ----------------------------------------------------------------------------------------
def test_auto_uses_the_model_only_where_nothing_measures_and_says_so(no_measured_source: None, own_cpu_only: None,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    tmp_path: Path) -> None:
    with Session("ci-job", region="FR") as s:
        t0 = time.time()
        busy(0.2)
        t1 = time.time()
        window = s.energy_between(t0, t1)
        with s.phase("sleep"):
            time.sleep(0.2)
    r = s.result
    assert s.backend == "cpu-model" and r.energy_method == "model"
    (dev,) = r.devices
    assert dev.method == "model" and dev.info["watts_per_thread"] > 0
    w = dev.info["watts_per_thread"]
    assert window == pytest.approx(0.2 * w, rel=0.25)
    assert r.phase("sleep").energy_j < 0.1 * window
    assert 0.2 <= dev.info["cpu_s"] < 2.0
    err = capsys.readouterr().err
    assert err.count("greentrack: nothing here measures power") == 1
    assert "modelled figures are marked ~" in err and "rapl: no RAPL zones" in err


def test_rapl_always_wins_over_the_model(no_measured_source: None, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    root = make_tree(tmp_path / "powercap", dram=True, core=False)
    monkeypatch.setenv("GREENTRACK_RAPL_ROOT", str(root))
    sources, notes = build_sources(Settings(db_path=tmp_path / "x.db", backend="auto"))
    assert [s.name for s in sources] == ["rapl"]
    assert not any("modelled" in n for n in notes)
    with Session("on-rapl", region="FR", store=False) as s:
        time.sleep(0.05)
    assert s.backend == "rapl" and s.result.energy_method == "measured"
    # the fake counters stand still, so the totals come from RAPL's own series (delta); never the model
    assert {d.key for d in s.result.devices} == {"cpu0", "dram0"}
    assert {d.method for d in s.result.devices} <= {"counter", "delta"}
    # asked for by name next to RAPL, the model is added (and the total says it is mixed)
    sources, _ = build_sources(Settings(db_path=tmp_path / "x.db", backend="rapl,cpu-model"))
    assert [s.name for s in sources] == ["rapl", "cpu-model"]


def test_show_report_and_html_label_the_model(no_measured_source: None, cli, tmp_path: Path) -> None:
    with Session("modelled-run", region="FR", tags={"k": "v"}) as s:
        busy(0.1)
    rid = s.id
    show = cli("show", rid)
    assert show.returncode == 0, show.stderr
    out = show.stdout
    energy_line = next(ln for ln in out.splitlines() if ln.strip().startswith("energy"))
    assert "~" in energy_line
    assert "model      cpu-model: modelled from CPU time, not measured (Green Algorithms" in out
    assert "CPU-s x 4 W per thread" in out or "W per thread" in out
    assert "watts per thread:" in out and "idle share 0:" in out
    rep = cli("report", "--name", "modelled-run")
    assert rep.returncode == 0
    row = next(ln for ln in rep.stdout.splitlines() if ln.startswith(rid))
    assert "~0.0000" in row
    assert "~ modelled from CPU time" in rep.stdout
    doc = json.loads(cli("report", "--name", "modelled-run", "--format", "json").stdout)
    assert doc["runs"][0]["energy_method"] == "model"
    html = tmp_path / "r.html"
    p = cli("report", "--name", "modelled-run", "--format", "html", "-o", str(html))
    assert p.returncode == 0, p.stderr
    text = html.read_text()
    assert "tr class=modelled" in text and "modelled from CPU time, not measured" in text and "~" in text


# a reading taken, then the thread descheduled before it is dated ------------------------------------
class StallingCPUTime:
    """The process's real CPU time; the read marked to stall holds the thread *after* reading,
    as another thread holding the GIL in a long C call (or the OS) does between a reading and
    the clock call that dates it."""

    def __init__(self) -> None:
        self.real = ProcessCPUTime()
        self.stall_next_s = 0.0
        self.reads = 0

    def read(self) -> float:
        v = self.real.read()
        self.reads += 1
        if self.stall_next_s:
            stall, self.stall_next_s = self.stall_next_s, 0.0
            busy(stall)  # the CPU this burns belongs after the reading just taken
        return v


def test_a_reading_is_dated_when_it_was_taken_not_after_a_stall(own_cpu_only: None) -> None:
    """more_itertools' 8 s test_primes once got 26 % of its energy: the sampler thread read the CPU
    time, lost the GIL for 6 s to the test's C loop, and dated the reading after it; the test's
    CPU then landed after its end. A stalled reading is taken again."""
    ct = StallingCPUTime()
    src = CPUModelSource(ModelInputs(10.0, "test value"), cpu_time=ct)
    d = src.devices[0]
    src.poll(d)
    t0, cpu0 = time.time(), ct.real.read()
    ct.stall_next_s = 0.3  # this poll's first reading stalls for 0.3 s of (busy) CPU
    (t1, p), = src.poll(d)
    cpu1 = ct.real.read()
    assert ct.reads >= 3  # the first poll, the stalled reading, the one taken again
    # the sample covers exactly the CPU time up to its own date: the stall's 0.3 s included
    assert p * (t1 - t0) == pytest.approx(10.0 * (cpu1 - cpu0), rel=0.05, abs=0.02)
    assert p * (t1 - t0) > 10.0 * 0.25


def test_edge_function_answers_as_mark_edge_does_bound_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampler.edge_function (the pytest plugin's read at each edge, through Session.edge_function): the
    same answers as mark_edge, the source's reader looked up once. A reading through the CPU model's
    edge_reader joins the series at the next poll; None in a data gap, with step marks to fold, after
    stop, for a failed read (reported once) and an impossible answer; a source that can only mark is read
    through mark; several devices never answer."""
    from greentrack.measure.sampler import Sampler
    from greentrack.measure.sources import cpu_model
    from greentrack.measure.steps import StepLog

    monkeypatch.setattr(cpu_model, "EDGE_SERIES_S", 0.0)  # every reading kept for the series, to be counted
    src = CPUModelSource(ModelInputs(10.0, "test value"))
    smp = Sampler([src], 2.0, lambda chunks, states: None, background=False)
    smp.start()
    edge = smp.edge_function()
    st = smp.states[0]
    t, j = edge()
    assert type(t) is float and type(j) is float and src.marks_pending == 1
    assert smp.mark_edge() is not None and src.marks_pending == 2  # the generic path reads the same source
    smp.poll_state(st)
    assert src.marks_pending == 0 and st.acc.n_raw >= 3  # the two readings and the poll's own
    t2, j2 = edge()  # the list the reader appends to is still the source's after a poll
    assert t2 >= t and j2 >= j and src.marks_pending == 1
    st.in_gap_since = t2
    assert edge() is None and smp.mark_edge() is None
    st.in_gap_since = None
    smp.steps = StepLog(t2)
    smp.steps.marks.extend((t2, None, None))
    assert edge() is None and smp.mark_edge() is None
    smp.steps = None
    assert edge() is not None
    smp.stop()
    assert edge() is None and smp.mark_edge() is None

    class MarkOnly:  # a plugin source that can mark but has no edge_reader
        name, measured, interval_means, poll_at_edges, edge_reads_suffice = "mark-only", False, True, True, True
        series_tolerance_j, poll_interval_s = 1e-4, 1.0

        def __init__(self, answer: object) -> None:
            self.inner = CPUModelSource(ModelInputs(10.0, "test value"))
            self.devices = self.inner.devices
            self.answer = answer
            self.marked = 0

        def poll(self, device: object) -> list[tuple[float, float]]:
            return self.inner.poll(self.inner.device)

        def mark(self, device: object) -> object:
            self.marked += 1
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer if self.answer is not None else self.inner.mark(self.inner.device)

        def energy_j(self, device: object) -> None:
            return None

        def close(self) -> None:
            pass

    for answer, expect in ((None, True), ((float("nan"), 1.0), False), (OSError("sensor gone"), False)):
        plain = MarkOnly(answer)
        smp = Sampler([plain], 2.0, lambda chunks, states: None, background=False)  # type: ignore[list-item]
        smp.start()
        edge = smp.edge_function()
        assert (edge() is not None) is expect and plain.marked == 1
        assert (edge() is not None) is expect and plain.marked == 2
        smp.stop()
    two = Sampler([CPUModelSource(ModelInputs(10.0, "a")), CPUModelSource(ModelInputs(10.0, "b"))], 2.0,
                  lambda chunks, states: None, background=False)
    two.start()
    assert two.edge_function()() is None and two.mark_edge() is None
    two.stop()


def test_session_edge_function_is_edge_bound_once(no_measured_source: None, own_cpu_only: None) -> None:
    """Session.edge_function gives what Session.edge gives, and nothing once the run has stopped (the
    function taken before the stop included)."""
    s = Session("edge-function", backend="cpu-model", background=False, store=False)
    before = s.edge_function()
    assert before() is None  # not started
    s.start()
    edge = s.edge_function()
    t_a, j_a = edge()
    busy(0.01)
    t_b, j_b = s.edge()
    busy(0.01)
    t_c, j_c = edge()
    assert t_a < t_b < t_c and j_a < j_b < j_c
    w = s.sources[0].inputs.watts_per_thread
    assert j_c - j_a == pytest.approx(w * 0.02, rel=0.3)
    s.mark_phase("w", t_a, t_c, energy_j=j_c - j_a)
    r = s.stop()
    assert r.phases[0].energy_j == j_c - j_a
    assert edge() is None and s.edge() is None and s.edge_function()() is None


def test_edge_process_clock_is_the_process_clock_the_edge_read(no_measured_source: None, own_cpu_only: None,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Session.edge_process_clock: time.process_time() as the latest edge's reading read it (no system call
    of its own), between the clock read just before and just after that edge, and unchanged until the next
    edge (kills a stale or a fresh read); None where the edges do not read it: a mock GPU, a source whose
    CPU time is not a ProcessCPUTime, a plugin source's process_clock that raises, a stopped run."""
    from greentrack.measure.sampler import Sampler

    s = Session("clock", backend="cpu-model", background=False, store=False)
    s.start()
    clock, edge = s.edge_process_clock(), s.edge_function()
    assert clock is not None
    for _ in range(3):
        before = time.process_time()
        assert edge() is not None
        after = time.process_time()
        busy(0.005)
        assert before <= clock() <= after
    s.stop()
    assert s.edge_process_clock() is None
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    gpu = Session("mock", background=False, store=False)
    gpu.start()
    assert gpu.edge_process_clock() is None
    gpu.stop()

    class FakeCPU:
        def read(self) -> float:
            return 1.0

    fake = CPUModelSource(ModelInputs(10.0, "test value"), cpu_time=FakeCPU())  # type: ignore[arg-type]
    assert fake.process_clock() is None
    broken = CPUModelSource(ModelInputs(10.0, "test value"))
    broken.process_clock = lambda: 1 / 0  # type: ignore[method-assign,assignment,misc]
    for src in (fake, broken):
        smp = Sampler([src], 2.0, lambda chunks, states: None, background=False)
        smp.start()
        assert smp.edge_process_clock() is None
        smp.stop()


@pytest.mark.parametrize("scenario", ["tight", "stalled_once", "always_stalled", "at_the_bound", "bound_on_retry",
                                      "tie"])
def test_a_mark_is_dated_as_timed_read_dates_a_reading(scenario: str) -> None:
    """The CPU model's edge reader does timed_read's work inline (one call level less at each of a
    test's edges): for the same readings and clock, a mark is dated at the same instant and reads the
    same value as timed_read gives. A reading whose clocks are exactly READ_SPREAD_S apart is kept, on a
    first try or a later one; of two equally tight readings, the first is kept."""
    from greentrack.measure.sources.base import READ_SPREAD_S, timed_read

    def world() -> tuple[object, object, list[float]]:
        # the clock's answers, two per reading (before, after)
        ticks = {"tight": [100.0, 100.001], "stalled_once": [100.0, 106.0, 106.0, 106.001],
                 "always_stalled": [0.0, 0.5, 1.0, 1.2, 2.0, 2.9, 3.0, 3.3],
                 "at_the_bound": [0.0, READ_SPREAD_S, 9.0, 9.0],
                 "bound_on_retry": [0.0, 1.0, 0.0, READ_SPREAD_S, 9.0, 9.0],
                 "tie": [0.0, 0.5, 1.0, 1.25, 2.0, 2.25, 3.0, 3.5]}[scenario]  # two spans of exactly 0.25 s
        seen: list[float] = []

        def clock() -> float:
            return ticks.pop(0)

        def read() -> float:
            seen.append(ticks[0] if ticks else -1.0)
            return 1000.0 + len(seen)  # the n-th reading reads 1000 + n CPU seconds

        return clock, read, seen

    clock, read, seen = world()
    expect_t, expect_v = timed_read(read, clock)  # type: ignore[arg-type]
    tries = len(seen)

    class FakeCPU:
        def __init__(self) -> None:
            self.first = True

        def read(self) -> float:
            if self.first:  # the source's own first reading, at its creation: its origin
                self.first = False
                return 1000.0
            return fake_read()

    clock, fake_read, seen = world()
    started = [False]

    def src_clock() -> float:  # the source's creation reads the clock once: not one of the scenario's ticks
        return clock() if started[0] else -50.0  # type: ignore[operator]

    src = CPUModelSource(ModelInputs(2.0, "test value"), cpu_time=FakeCPU(), clock=src_clock)  # type: ignore[arg-type]
    src._t0 = 0.0  # joules counted from t = 0 (the idle share is 0: the wall time does not count anyway)
    started[0] = True
    t, j = src.mark(src.devices[0])
    assert len(seen) == tries
    assert t == pytest.approx(expect_t) and j == pytest.approx(2.0 * (expect_v - 1000.0))
    assert src._marks == [(t, expect_v)]


def test_live_children_are_read_again_every_half_second_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """ProcessCPUTime re-reads its live descendants at most every LIVE_REFRESH_S (0.5 s) of its clock: at
    0.4 s after a read it does not, at exactly 0.5 s it does; the total never goes backwards."""
    from greentrack.measure.sources import cpu_model

    now = [10.0]
    reads: list[float] = []
    live = [5.0, 7.0, 6.0]  # the third reading is lower (a child reaped between reads): the total holds

    def live_children(self: object) -> float:
        reads.append(now[0])
        return live[len(reads) - 1]

    monkeypatch.setattr(cpu_model.ProcessCPUTime, "live_children_s", live_children)
    ct = cpu_model.ProcessCPUTime(clock=lambda: now[0])
    monkeypatch.setattr(ct, "_children", lambda: type("R", (), {"ru_utime": 0.0, "ru_stime": 0.0})())
    first = ct.read()
    n0 = len(reads)
    assert reads == [10.0]  # the first read reads them
    now[0] = 10.4
    ct.read()
    assert len(reads) == n0  # 0.4 s: not yet
    now[0] = 10.0 + cpu_model.LIVE_REFRESH_S
    second = ct.read()
    assert len(reads) == n0 + 1 and second >= first + 2.0 - 0.05  # exactly 0.5 s: read again (5 -> 7 s)
    now[0] = 11.0
    third = ct.read()  # the live children now read 6 s: the total does not go back
    assert third >= second


def test_timed_read_dates_a_reading_by_the_clock_on_both_sides() -> None:
    from greentrack.measure.sources.base import READ_SPREAD_S, READ_TRIES, timed_read

    now = [100.0]

    def clock() -> float:
        return now[0]

    calls = []

    def tight() -> str:
        calls.append("tight")
        now[0] += 0.001
        return "v"

    assert timed_read(tight, clock) == (pytest.approx(100.0005), "v") and calls == ["tight"]

    stalls = [6.0, 0.001]  # the first reading stalls 6 s before the clock dates it; the next does not

    def stalled_once() -> float:
        now[0] += stalls.pop(0)
        return now[0]

    t, v = timed_read(stalled_once, clock)  # clock at 100.001 when called
    assert v == pytest.approx(106.002)  # the second reading ...
    assert t == pytest.approx(106.0015)  # ... dated at the midpoint of the clock readings around it
    assert not stalls and 0.001 <= READ_SPREAD_S

    spans = [0.5, 0.2, 0.9, 0.3]

    def always_stalled() -> float:
        now[0] += spans[len(seen)]
        seen.append(now[0])
        return spans[len(seen) - 1]

    seen: list[float] = []
    t, v = timed_read(always_stalled, clock)
    assert len(seen) == READ_TRIES  # tried as often as allowed ...
    assert v == 0.2  # ... and kept the tightest pair, dated at its midpoint
    assert t == pytest.approx(seen[1] - 0.1)
