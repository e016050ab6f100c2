"""CPU energy modelled from CPU time where nothing can measure it: the ``cpu-model`` source (method ``model``).

Most CI runners have no GPU and no readable RAPL counter, so nothing there measures power. This
source does not measure either: it *models* the energy of this process and its children from the
CPU time they use, the way the Green Algorithms calculator does (Lannelongue, Grealey & Inouye,
"Green Algorithms: Quantifying the Carbon Footprint of Computation", Advanced Science 8, 2100707,
2021: energy = run time x cores x core usage x TDP per core), per hardware thread::

    energy_J = watts_per_thread x (cpu_s x (1 - idle_share) + wall_s x idle_share)

- ``cpu_s``: CPU seconds (user + system) of this process, of its children that have been waited
  for (``getrusage(RUSAGE_CHILDREN)``) and, on Linux, of its live descendants (``/proc``; psutil
  elsewhere when it is installed). Not the whole machine: a neighbour's load on a shared runner
  does not leak in.
- ``watts_per_thread``: ``[tool.greentrack] cpu_watts_per_thread`` or
  ``GREENTRACK_CPU_WATTS_PER_THREAD`` when set; else the CPU model's TDP from codecarbon's CPU
  power table (its installed ``data/hardware/cpu_power.csv``, read as a file, matched by
  codecarbon's own rules) divided by the CPU's hardware threads; else codecarbon's figure for a
  CPU it does not know, 4 W per thread.
- ``idle_share`` (0 to 1, default 0): the part of a thread's watts charged for every second of
  wall time, busy or not. 0 is Green Algorithms' method (power in proportion to use); 0.1 follows
  CodeCarbon's ``cpu_load`` mode, whose floor is 10 % of TDP. A share above 0 makes a figure
  depend on wall time, and so on the neighbours of a shared runner.

It is chosen by ``backend=auto`` only when no source measures anything here (no GPU, no
readable RAPL); a measured source always wins. Its figures are labelled (method ``model``,
``~`` before the number) and the inputs are kept with the run (``greentrack show``). Its error
against RAPL is stated in docs/cpu-model.md and measured by benchmarks/bench_cpu_model_vs_rapl.py.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ...errors import ConfigError
from ...plugins import hookimpl
from ...settings import env as settings_env
from .base import READ_SPREAD_S, READ_TRIES, Device, timed_read

ENV_WATTS = "GREENTRACK_CPU_WATTS_PER_THREAD"
ENV_IDLE = "GREENTRACK_CPU_IDLE_SHARE"
KEY_WATTS = "cpu_watts_per_thread"
KEY_IDLE = "cpu_idle_share"
# codecarbon 3.3.2, core/cpu.py DEFAULT_POWER_PER_CORE: its "W per thread" for a CPU not in its table
UNKNOWN_CPU_W_PER_THREAD = 4.0
METHOD_REF = "Green Algorithms (Lannelongue et al., Advanced Science 2021)"
LIVE_REFRESH_S = 0.5  # live descendants are re-read at most this often (and whenever a child was reaped)
# a reading taken at a window's edge joins the power series only this long after the last one that did: the
# series of a pytest run holds at most ten points a second, not two per test, and each test's figure is the
# difference of its two edges' joules, which its phase keeps (Session.mark_phase(..., energy_j=))
EDGE_SERIES_S = 0.1


# the CPU -----------------------------------------------------------------------------------------
class CPUInfo:
    """What this machine says about its CPU (a plain class: see
    :class:`greentrack.measure.sampler.DeviceState`).

    *name*: the brand string, e.g. "AMD EPYC 7763 64-Core Processor"; *logical*: the hardware
    threads this OS sees; *threads_per_core*: 2 with SMT (siblings / cpu cores in /proc/cpuinfo);
    *package_threads*: the threads of one package as this OS sees them (siblings); *virtual*:
    running under a hypervisor (the OS sees a slice of the host's CPU).
    """

    def __init__(self, name: str | None, logical: int, threads_per_core: int | None, package_threads: int | None,
                 virtual: bool) -> None:
        self.name = name
        self.logical = logical
        self.threads_per_core = threads_per_core
        self.package_threads = package_threads
        self.virtual = virtual

    def __repr__(self) -> str:
        return (f"CPUInfo({self.name!r}, logical={self.logical}, threads_per_core={self.threads_per_core}, "
                f"package_threads={self.package_threads}, virtual={self.virtual})")


def read_cpuinfo(text: str | None = None) -> CPUInfo:
    """Parse ``/proc/cpuinfo`` (or *text*); elsewhere, what ``platform`` says."""
    logical = os.cpu_count() or 1
    if text is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                fields = _first_block(fh)  # the first processor's block (the file is long on big machines)
        except OSError:
            import platform

            return CPUInfo(platform.processor() or None, logical, None, None, False)
    else:
        fields = _first_block(text.splitlines())
    siblings = _int(fields.get("siblings"))
    cores = _int(fields.get("cpu cores"))
    tpc = siblings // cores if siblings and cores and siblings % cores == 0 else None
    virtual = "hypervisor" in fields.get("flags", "").split()
    return CPUInfo(fields.get("model name") or None, logical, tpc, siblings, virtual)


def _first_block(lines: Any) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            if fields:
                break
            continue
        key, _, val = line.partition(":")
        fields.setdefault(key.strip().lower(), val.strip())
    return fields


def _int(v: str | None) -> int | None:
    return int(v) if v is not None and v.strip().isdigit() and int(v) > 0 else None


class CPUTable:
    """codecarbon's CPU power table (``Name,TDP`` rows), searched in its text, built once per process.

    A lookup runs regular expressions and ``str.find`` over the file's text (C speed) instead of
    building a dict of ~5,000 entries first: the table costs a process well under a millisecond
    (tens of them before), which matters to every pytest session on a CPU runner. The first row of
    a name wins, as in codecarbon. ``table[name]``, ``len(table)`` and iteration parse it all once.
    """

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self._low: str | None = None
        self._tdp: dict[str, float] | None = None
        self.matches: dict[str, str | None] = {}  # brand string -> entry, for this process's later sessions

    @classmethod
    def from_names(cls, names: Any, source: str = "") -> "CPUTable":
        """A table of *names* (each at 1 W), for matching against a list."""
        rows = ['"' + n.replace('"', "") + '",1' if "," in n else f"{n},1" for n in names]
        return cls("Name,TDP\n" + "\n".join(rows) + "\n", source)

    @staticmethod
    def _row(line: str) -> tuple[str, float] | None:
        name, _, w = line.rpartition(",")
        try:
            watts = float(w)
        except ValueError:
            return None
        name = name.strip().strip('"')
        return (name, watts) if name and watts > 0 else None

    @property
    def low(self) -> str:
        """The text in lower case, with a newline first (a row starts after a newline)."""
        if self._low is None:
            text = self.text if self.text.isascii() else self.text.encode("ascii", "replace").decode("ascii")
            self._low = "\n" + text.lower()  # ASCII: the same offsets as the text's
        return self._low

    def _line_at(self, pos: int) -> tuple[str, float] | None:
        """The row holding offset *pos* of :attr:`low` (offsets of :attr:`text` plus one)."""
        a = self.low.rfind("\n", 0, pos + 1) + 1
        b = self.low.find("\n", pos)
        if b < 0:
            b = len(self.low)
        if a <= 1:  # the header row
            return None
        return self._row(self.text[a - 1:b - 1])

    def _first_row(self, name: str) -> tuple[str, float] | None:
        """The first row named *name*, case aside: ``(its own spelling, TDP W)``.

        A row is read (as :meth:`_row` reads it) only where *name* starts it and is followed by the end
        of its field: a comma, after spaces or a quote. The first few places holding *name* are found
        with ``str.find``; past those, one regular expression finds the places followed by a field's
        end. A generic name such as "Intel Xeon" starts 1,319 longer names (codecarbon 3.3.2), which
        a loop over every place would each cost; an exact name is in one or two places, which
        compiling an expression would cost more than.
        """
        want = name.strip().lower()
        if not want:
            return None
        low, n = self.low, len(want)
        i = low.find(want)
        for _ in range(16):
            if i < 0:
                return None
            row = self._row_named_at(i, n, want)
            if row is not None:
                return row
            i = low.find(want, i + 1)
        if i < 0:
            return None
        for m in re.compile(re.escape(want) + r'[ \t"]*,').finditer(low, i):
            row = self._row_named_at(m.start(), n, want)
            if row is not None:
                return row
        return None

    def _row_named_at(self, i: int, n: int, want: str) -> tuple[str, float] | None:
        """The row at offset *i* of :attr:`low` if its name is *want* (*n* characters long), else None."""
        low = self.low
        j = i + n
        while low[j:j + 1] in (" ", "\t"):
            j += 1
        if low[j:j + 1] not in ',"':  # the row's name goes on (or the text ends)
            return None
        a = low.rfind("\n", 0, i)
        if a < 0 or low[a + 1:i].strip(' \t"'):  # not the start of a row
            return None
        row = self._line_at(i)
        return row if row is not None and row[0].lower() == want else None

    def find(self, name: str) -> str | None:
        """The entry named *name*, case aside (the row's own spelling); None when there is none."""
        row = self._first_row(name)
        return row[0] if row is not None else None

    def tdp_of(self, name: str) -> float | None:
        """The TDP in watts of entry *name* (exact spelling, case aside; its first row)."""
        row = self._first_row(name)
        return row[1] if row is not None else None

    def entries_matching(self, pattern: str) -> set[str]:
        """The entries (names) of the rows where regular expression *pattern* matches in :attr:`low` (the row
        of a match's last character). A pattern that starts with the newline before a row, rather than
        ``^``, lets the search skip from newline to newline (about half the time)."""
        out: set[str] = set()
        for m in re.finditer(pattern, self.low, re.M):
            row = self._line_at(max(m.start(), m.end() - 1))
            if row is not None:
                out.add(row[0])
        return out

    def entries_holding(self, word: str, every: set[str] | None = None, limit: int = 0) -> set[str]:
        """The entries whose row holds *word* (lower case) as a whole word (``str.find``: C speed); with
        *every*, only those whose name's words include all of these; with *limit*, at most that many (the
        search stops there)."""
        low, out, n = self.low, set(), len(word)
        i = low.find(word)
        while i >= 0:
            before, after = low[i - 1], low[i + n:i + n + 1]
            if not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum()):
                row = self._line_at(i)
                if row is not None and (every is None or every <= set(_words(row[0]))):
                    out.add(row[0])
                    if limit and len(out) >= limit:
                        break
            i = low.find(word, i + 1)
        return out

    @property
    def tdp(self) -> dict[str, float]:
        """``{name: TDP W}`` of every row (the first row of a name wins); parsed on first use."""
        if self._tdp is None:
            tdp: dict[str, float] = {}
            for line in self.text.splitlines()[1:]:
                row = self._row(line)
                if row is not None and row[0] not in tdp:
                    tdp[row[0]] = row[1]
            self._tdp = tdp
        return self._tdp

    @property
    def names(self) -> list[str]:
        return list(self.tdp)

    def __iter__(self) -> Any:
        return iter(self.tdp)

    def __getitem__(self, name: str) -> float:
        w = self.tdp_of(name)
        if w is None:
            raise KeyError(name)
        return w

    def __len__(self) -> int:
        return len(self.tdp)

    def get(self, name: str | None) -> float | None:
        return self.tdp_of(name) if name else None


_TABLE: dict[str, CPUTable | None] = {}


def codecarbon_cpu_table() -> tuple[CPUTable, str] | None:
    """``(table, "codecarbon X data/hardware/cpu_power.csv")`` from codecarbon's installed file, or None."""
    from ...carbon.grid import _codecarbon_version, codecarbon_data_dir

    d = codecarbon_data_dir()
    if d is None:
        return None
    path = d / "hardware" / "cpu_power.csv"
    key = str(path)
    if key not in _TABLE:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = ""
        ok = _has_row(text.partition("\n")[2])  # a table with at least one "name,watts" row
        _TABLE[key] = CPUTable(text, f"codecarbon {_codecarbon_version()} data/hardware/cpu_power.csv") if ok else None
    table = _TABLE[key]
    return (table, table.source) if table is not None else None


def _has_row(body: str) -> bool:
    """Whether *body* (a table without its header) has a row :meth:`CPUTable._row` reads; in a good table
    the first line does, so no more is read."""
    start, n = 0, len(body)
    while start < n:
        end = body.find("\n", start)
        end = n if end < 0 else end
        if CPUTable._row(body[start:end]) is not None:
            return True
        start = end + 1
    return False


_NON_ALNUM = str.maketrans({c: " " for c in map(chr, range(128)) if not c.isalnum()})


def _words(s: str) -> list[str]:
    """Lower-case words of *s* (rapidfuzz's default_process: non-alphanumerics are spaces)."""
    return s.lower().translate(_NON_ALNUM).split()


def _rarest(low: str, words: set[str]) -> str:
    """The word of *words* found least often in *low*; counted in a likely order (words with a digit, longer
    ones first), stopping at one found at most twice."""
    best, best_n = "", -1
    for w in sorted(words, key=lambda w: (not any(c.isdigit() for c in w), -len(w), w)):
        n = low.count(w)
        if best_n < 0 or n < best_n:
            best, best_n = w, n
        if n <= 2:
            break
    return best


def match_cpu(raw: str, names: Any) -> str | None:
    """The table entry for brand string *raw*, by codecarbon 3.3.2's rules (``_get_matching_cpu``).

    An exact (case-insensitive) match; else the same after dropping ``(R)``, ``CPU`` and the
    ``@ 2.60GHz`` suffix; else the one entry whose words contain, or are contained in, the
    brand's words (rapidfuzz token-set ratio 100). Several such entries: no match. *names* is a
    :class:`CPUTable` or a list of names.
    """
    table = names if isinstance(names, CPUTable) else CPUTable.from_names(names)
    hit = table.find(raw)
    if hit:
        return hit
    s = raw.replace("(R)", "").replace("(TM)", "")
    cut = s.find(" CPU @ ")
    if cut > 0:
        s = s[:cut]
    s = re.sub(r" @\s*\d+\.\d+GHz", "", s.replace(" CPU", "")).strip()
    hit = table.find(s) if s != raw.strip() else None  # (a VM's "AMD EPYC" has nothing to drop: looked up once)
    if hit:
        return hit
    want = set(_words(s))
    if not want:
        return None
    # entries holding every word of the brand, among those holding its rarest word: two of them make
    # the brand ambiguous whatever else matches (a VM's generic "AMD EPYC" is in 148 rows, "Intel Xeon" in
    # 1,319 in codecarbon 3.3.2), so the search stops there
    found = table.entries_holding(_rarest(table.low, want), every=want, limit=2)
    if len(found) > 1:
        return None
    # entries whose every word is one of the brand's (the row's name: up to its last comma). Candidates: rows
    # whose name holds no letter or digit outside the brand's words, which a character class rejects at the
    # first such character (most rows: at the model number); then their words are compared
    others = "".join(sorted(set("0123456789abcdefghijklmnopqrstuvwxyz") - set("".join(want))))
    found |= {n for n in table.entries_matching(rf"\n[^\n{others}]*,[^,\n]*$")
              if (words := set(_words(n))) and words <= want}
    return found.pop() if len(found) == 1 else None


# the model's inputs ------------------------------------------------------------------------------
class ModelInputs:
    """What the model multiplies CPU time by, and where each figure comes from (*basis*: where
    *watts_per_thread* comes from, in words, with its source; *matched*: the codecarbon table entry).
    A plain class (see :class:`greentrack.measure.sampler.DeviceState`)."""

    DEFAULT_IDLE_BASIS = "Green Algorithms: power in proportion to CPU use, no idle share"

    def __init__(self, watts_per_thread: float, basis: str, idle_share: float = 0.0,
                 idle_basis: str = DEFAULT_IDLE_BASIS,
                 cpu: str | None = None, matched: str | None = None, tdp_w: float | None = None,
                 threads: int | None = None) -> None:
        self.watts_per_thread = watts_per_thread
        self.basis = basis
        self.idle_share = idle_share
        self.idle_basis = idle_basis
        self.cpu = cpu
        self.matched = matched
        self.tdp_w = tdp_w
        self.threads = threads

    def __repr__(self) -> str:
        return f"ModelInputs({self.watts_per_thread!r} W/thread, idle share {self.idle_share!r}: {self.basis!r})"

    def as_info(self) -> dict[str, Any]:
        """The inputs as stored with the run (``devices.info``)."""
        return {"model": "cpu-time", "watts_per_thread": round(self.watts_per_thread, 6), "basis": self.basis,
                "idle_share": self.idle_share, "idle_basis": self.idle_basis, "cpu": self.cpu,
                "tdp_match": self.matched, "tdp_w": self.tdp_w, "threads": self.threads, "method_ref": METHOD_REF}

    def short(self) -> str:
        """``4 W per thread (codecarbon ...'s default ...)`` for one-line notes."""
        idle = f", idle share {self.idle_share:g}" if self.idle_share else ""
        return f"{self.watts_per_thread:.3g} W per thread ({self.basis}){idle}"


def _number(raw: Any, label: str, lo: float, hi: float, lo_open: bool) -> float:
    try:
        val = float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{label}={raw!r} is not a number") from None
    if isinstance(raw, bool) or not math.isfinite(val) or val > hi or (val <= lo if lo_open else val < lo):
        rng = f"> {lo:g}" if lo_open else f"between {lo:g} and {hi:g}"
        raise ConfigError(f"{label}={raw!r} must be a number {rng}")
    return val


def resolve_inputs(extra: dict[str, Any] | None = None, info: CPUInfo | None = None) -> ModelInputs:
    """The model's inputs: the user's values (environment, then ``[tool.greentrack]``), else the CPU's."""
    extra = extra or {}
    info = info or read_cpuinfo()
    idle, idle_basis = 0.0, ModelInputs.DEFAULT_IDLE_BASIS
    raw_idle = settings_env(ENV_IDLE)
    label = ENV_IDLE
    if raw_idle is None and extra.get(KEY_IDLE) is not None:
        raw_idle, label = extra[KEY_IDLE], f"[tool.greentrack] {KEY_IDLE}"
    if raw_idle is not None:
        idle = _number(raw_idle, label, 0.0, 1.0, lo_open=False)
        idle_basis = f"set by {label}"
    raw_w = settings_env(ENV_WATTS)
    label = ENV_WATTS
    if raw_w is None and extra.get(KEY_WATTS) is not None:
        raw_w, label = extra[KEY_WATTS], f"[tool.greentrack] {KEY_WATTS}"
    if raw_w is not None:
        w = _number(raw_w, label, 0.0, 1e4, lo_open=True)
        return ModelInputs(w, f"set by {label}", idle, idle_basis, cpu=info.name)
    found = codecarbon_cpu_table() if info.name else None
    matched = None
    if found and info.name:
        table = found[0]
        if info.name not in table.matches:
            table.matches[info.name] = match_cpu(info.name, table)
        matched = table.matches[info.name]
    tdp_found = found[0].tdp_of(matched) if found and matched else None
    if found and matched and tdp_found is not None:
        tdp = tdp_found
        threads = _package_threads(info, matched)
        if threads:
            return ModelInputs(tdp / threads, f"{matched}: TDP {tdp:g} W / {threads} threads, {found[1]}", idle,
                               idle_basis, cpu=info.name, matched=matched, tdp_w=tdp, threads=threads)
        why = (f"{matched} (TDP {tdp:g} W in {found[1]}) in a virtual machine that shows {info.logical} of "
               "its threads; codecarbon's figure for an unknown CPU, 4 W per thread")
        return ModelInputs(UNKNOWN_CPU_W_PER_THREAD, why, idle, idle_basis, cpu=info.name, matched=matched, tdp_w=tdp)
    src = found[1].rsplit(" data/", 1)[0] if found else "codecarbon 3.3.2"
    what = f"{info.name!r} is not in {src}'s CPU table" if info.name else "CPU model unknown"
    return ModelInputs(UNKNOWN_CPU_W_PER_THREAD, f"{what}: {src}'s figure for an unknown CPU, 4 W per thread",
                       idle, idle_basis, cpu=info.name)


def _package_threads(info: CPUInfo, matched: str) -> int | None:
    """Hardware threads of one CPU package: what the OS sees on bare metal; in a VM, from the
    model name's core count (``64-Core``, AMD) times the threads per core the VM sees; else None."""
    if not info.virtual:
        return info.package_threads or info.logical
    m = re.search(r"(\d+)-Core", info.name or "") or re.search(r"(\d+)-Core", matched)
    if m and info.threads_per_core:
        return int(m.group(1)) * info.threads_per_core
    return None


# CPU time ----------------------------------------------------------------------------------------
class ProcessCPUTime:
    """CPU seconds of this process and its children: own threads, waited-for and live descendants.

    Reading own and reaped time costs about 1 µs. Live descendants (a server a fixture started,
    ``greentrack run``'s command, pytest-xdist's workers seen by the controller) are re-read at
    most every 0.5 s, and at once when a child has been reaped since, so a child is never counted
    both live and reaped. The total never goes backwards.

    greentrack's own sampling thread is not counted (:meth:`exclude_current_thread`): its reads
    and database writes are the measurement's cost, not the workload's, and would otherwise land
    in whichever test happens to run when it wakes up.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pid = os.getpid()
        self._tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self._proc = Path(f"/proc/{self.pid}/task/{self.pid}/children").exists()
        self._live = 0.0
        self._live_at = -math.inf
        self._reaped_seen: float | None = None
        self._last = 0.0
        self.process_s = 0.0  # time.process_time() at the latest read
        self._excluded: list[Any] = []  # CPU clocks of threads not counted, with their last reading
        self._excluded_s = 0.0
        try:
            import resource

            self._children: Any = functools.partial(resource.getrusage, resource.RUSAGE_CHILDREN)
        except ImportError:  # pragma: no cover - Windows
            self._children = None

    def _reaped(self) -> float:
        if self._children is not None:
            r = self._children()
            return r.ru_utime + r.ru_stime
        t = os.times()  # pragma: no cover - Windows: children fields are 0 there
        return t.children_user + t.children_system

    def exclude_current_thread(self) -> None:
        """Leave the calling thread's CPU time out from now on (the sampler thread; Unix only)."""
        getclock = getattr(time, "pthread_getcpuclockid", None)
        if getclock is None:  # pragma: no cover - Windows
            return
        try:
            clk = getclock(threading.get_ident())
            self._excluded.append([clk, time.clock_gettime(clk)])
        except (OSError, ValueError):  # pragma: no cover
            pass

    def _excluded_now(self) -> float:
        for ex in self._excluded:
            try:
                v = time.clock_gettime(ex[0])
            except OSError:  # the thread has ended: its last reading stands
                continue
            self._excluded_s += v - ex[1]
            ex[1] = v
        return self._excluded_s

    def read(self) -> float:
        """Cumulative CPU seconds (any origin; monotone)."""
        self.process_s = own = time.process_time()  # this process's own CPU clock at this reading
        if self._excluded:
            own -= self._excluded_now()
        children = self._children  # _reaped, inline: this runs twice per test in the pytest plugin
        if children is not None:
            r = children()
            reaped = r.ru_utime + r.ru_stime
        else:  # pragma: no cover - Windows
            reaped = self._reaped()
        now = self.clock()
        if reaped != self._reaped_seen or now - self._live_at >= LIVE_REFRESH_S:
            self._live = self.live_children_s()
            self._live_at = now
            self._reaped_seen = reaped
        total = own + reaped + self._live
        if total < self._last:
            total = self._last
        self._last = total
        return total

    def live_children_s(self) -> float:
        """CPU seconds of live descendants (their own plus their reaped children's)."""
        if self._proc:
            return self._live_proc()
        ps: Any = sys.modules.get("psutil")
        if ps is None:
            try:  # optional, only where /proc has no children files
                ps = __import__("psutil")
            except ImportError:
                return 0.0
        try:
            total = 0.0
            for c in ps.Process(self.pid).children(recursive=True):
                try:
                    t = c.cpu_times()
                except Exception:
                    continue
                total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            return total
        except Exception:
            return 0.0

    def _live_proc(self) -> float:
        total, stack, seen = 0.0, [str(self.pid)], set()
        while stack:
            pid = stack.pop()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        kids = fh.read().split()
                except OSError:
                    continue
                for k in kids:
                    if k in seen:
                        continue
                    seen.add(k)
                    try:
                        with open(f"/proc/{k}/stat") as fh:
                            stat = fh.read()
                    except OSError:
                        continue
                    f = stat[stat.rfind(")") + 2:].split()  # f[0] is field 3 (state); utime is field 14
                    try:
                        total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / self._tick
                    except (IndexError, ValueError):
                        continue
                    stack.append(k)
        return total


def _tightest(read: Callable[[], float], clock: Callable[[], float], tries: int, spread: float,
             first: tuple[float, float, float]) -> tuple[float, float, float]:
    """The rest of :func:`~greentrack.measure.sources.base.timed_read` after a first reading *first*
    (``(t0, value, t1)``) that took too long: up to *tries* more, the tightest kept."""
    best = first
    for _ in range(tries):
        t0 = clock()
        val = read()
        t1 = clock()
        if t1 - t0 < best[2] - best[0]:
            best = (t0, val, t1)
        if t1 - t0 <= spread:
            break
    return best


# the source --------------------------------------------------------------------------------------
class CPUModelSource:
    """One device, ``cpu-model``: the modelled power of this process and its children."""

    name = "cpu-model"
    kind = "cpu"
    measured = False  # a model, not a measurement: figures are labelled as such
    interval_means = True  # each sample is the mean power since the previous poll
    poll_at_edges = True  # a poll costs about 1 µs: a test's window starts at a sample
    # reads at a window's edges lose nothing (CPU time only grows; no counter to wrap, no buffer to
    # overflow): a session asked not to sample in the background (the pytest plugin) needs no thread for it
    edge_reads_suffice = True
    series_tolerance_j = 1e-4  # a few watts: keep the series' time resolution at sub-millijoule level

    def __init__(self, inputs: ModelInputs, cpu_time: ProcessCPUTime | None = None,
                 clock: Callable[[], float] = time.time, poll_interval_s: float | None = None) -> None:
        self.inputs = inputs
        self.clock = clock
        self.poll_interval_s = poll_interval_s or 1.0
        self.cpu_time = cpu_time or ProcessCPUTime()
        label = inputs.matched or inputs.cpu or "CPU"
        self.device = Device(key="cpu-model", kind="cpu", index=0, name=f"{label} (modelled)", uuid=None,
                             has_counter=False, series_method="model", info=dict(inputs.as_info(), cpu_s=0.0))
        self.devices = [self.device]
        self._cpu0 = self.cpu_time.read()
        own = getattr(self.cpu_time, "process_s", None)  # the process's own clock in that reading (see bind)
        self._own0 = own if type(own) is float else time.process_time()
        self._last = (clock(), self._cpu0)
        self._t0 = self._last[0]
        self._marks: list[tuple[float, float]] = []  # readings taken at windows' edges, not yet polled
        self._kept_t = self._last[0]  # the date of the newest reading kept for the series (a mark's or a poll's)
        self._edge_read = False  # read at an edge since its creation (see bind)
        self._edge = self._edge_reader()

    def bind(self, session: Any) -> None:
        """Count from the run's start, not from this source's creation: a session is started (its
        ``started_at``, and ``started_cpu_s``, the process's own CPU seconds then) before its sources are
        built, and the CPU time between the two is the run's. Without this, the first sample's mean power
        (over the instants between the creation and the first read) would be stretched over that gap.
        Only while nothing has been read since the creation; the children's CPU time in the gap is left
        out (read at most every 0.5 s anyway)."""
        started_at, own = getattr(session, "started_at", None), getattr(session, "started_cpu_s", None)
        if type(started_at) is not float or type(own) is not float:
            return
        if self._edge_read or self._last != (self._t0, self._cpu0):  # already read: its origin stays
            return
        self._cpu0 -= self._own0 - own
        self._t0 = self._kept_t = started_at
        self._last = (self._t0, self._cpu0)

    def on_sampler_thread(self) -> None:
        """Called by the sampler on its own thread as it starts: that thread's CPU time is left out."""
        self.cpu_time.exclude_current_thread()

    def poll(self, device: Device) -> list[tuple[float, float]]:
        """The modelled mean power since the previous poll: one sample, or one per reading :meth:`mark`
        kept since (in order), then the one read now."""
        reading = timed_read(self.cpu_time.read, self.clock)
        self._kept_t = reading[0]
        if self._marks:
            readings = self._marks[:]
            del self._marks[:]  # in place: the edge reader holds this list
            readings.append(reading)
        else:
            readings = [reading]
        w, idle = self.inputs.watts_per_thread, self.inputs.idle_share
        out = []
        for now, cpu in readings:
            t_prev, cpu_prev = self._last
            dt = now - t_prev
            if dt <= 0:
                continue  # same instant: the CPU time goes to the next sample
            self._last = (now, cpu)
            out.append((now, w * ((cpu - cpu_prev) * (1.0 - idle) + dt * idle) / dt))
        if out:
            device.info["cpu_s"] = round(self._last[1] - self._cpu0, 6)
        return out

    def mark(self, device: Device) -> tuple[float, float]:
        """Read the CPU time at a window's edge (a test's call). Returns ``(t, J)``: when it was read, and
        the modelled joules since this source began. The energy of a window between two marks is the
        difference of their joules.

        A reading at least :data:`EDGE_SERIES_S` (0.1 s) after the last one kept for the power series
        (a mark's or a poll's) is kept too, for the next :meth:`poll`, which turns it into the sample a poll
        then would have given: the series gets at most ten points a second from the edges, however short
        the windows. Between two kept readings it spreads their energy evenly, so a shorter window's exact
        figure is its edges' difference (the pytest plugin gives it to the window's phase). About half a
        poll's cost: the series is extended later, in one go.
        """
        return self._edge()

    def edge_reader(self, device: Device) -> Callable[[], tuple[float, float]]:
        """:meth:`mark` for *device* as one function of no arguments: what the pytest plugin calls at
        each edge of each test (through :meth:`greentrack.measure.sampler.Sampler.edge_function`)."""
        return self._edge

    def _edge_reader(self) -> Callable[[], tuple[float, float]]:
        # timed_read, inline: at a test's edge this code runs with cold caches, where each call
        # level costs about a microsecond (docs/pytest-ci.md, "What it costs")
        read, clock, tries, spread = self.cpu_time.read, self.clock, READ_TRIES, READ_SPREAD_S
        inputs, marks = self.inputs, self._marks

        def edge() -> tuple[float, float]:
            t0 = clock()
            cpu = read()
            t1 = clock()
            if t1 - t0 > spread:  # stalled between the reading and its date: read again (timed_read)
                t0, cpu, t1 = _tightest(read, clock, tries - 1, spread, (t0, cpu, t1))
            now = t0 + (t1 - t0) / 2
            self._edge_read = True
            if now - self._kept_t >= EDGE_SERIES_S:
                marks.append((now, cpu))
                self._kept_t = now
            idle = inputs.idle_share
            return now, inputs.watts_per_thread * ((cpu - self._cpu0) * (1.0 - idle) + (now - self._t0) * idle)

        return edge

    def process_clock(self) -> Callable[[], float] | None:
        """A function giving this process's own CPU seconds (``time.process_time()``) as of the latest
        reading, the system call already made by that reading; None where the CPU time is not read by a
        :class:`ProcessCPUTime`. The pytest plugin takes a test's own CPU time from its edges' readings."""
        ct = self.cpu_time
        if not isinstance(ct, ProcessCPUTime):
            return None
        return lambda: ct.process_s

    @property
    def marks_pending(self) -> int:
        """Readings :meth:`mark` kept for the series that no poll has turned into samples yet."""
        return len(self._marks)

    def energy_j(self, device: Device) -> float | None:
        return None  # no counter: the series is exact (rectangles of the CPU time between polls)

    def close(self) -> None:
        pass


def from_settings(settings: Any) -> CPUModelSource:
    """The source with the inputs the settings give (bad values: one-line ConfigError)."""
    return CPUModelSource(resolve_inputs(getattr(settings, "extra", None) or {}),
                          poll_interval_s=getattr(settings, "sample_interval_s", None))


@hookimpl
def greentrack_register_sources(register: Callable[..., None]) -> None:
    # auto, but only where no measured source found anything (fallback)
    register("cpu-model", from_settings, priority=-50, auto=True, fallback=True)


__all__ = ["CPUModelSource", "ModelInputs", "ProcessCPUTime", "CPUInfo", "read_cpuinfo", "resolve_inputs",
           "match_cpu", "codecarbon_cpu_table"]
