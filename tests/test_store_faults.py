"""What greentrack guarantees when the storage misbehaves, tested with real processes and real file systems.

- a database locked by another process never holds stop() for more than the lock timeout, and
  nothing is lost: the run waits in the spool and the next session delivers it;
- a database deleted or replaced mid-run: one line, and the run is finished where it can be;
- disk full: one line, the run kept and finished from the spool once there is space
  (on a small tmpfs, in a private mount namespace);
- the database and the spool are private to their user; secrets never reach the database.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import greentrack
from greentrack.store import spool
from greentrack.store.redact import redact_args, redact_command
from greentrack.store.sqlite import Store

ROOT = Path(__file__).resolve().parent.parent

LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    c.execute("ROLLBACK")
""")


def hold_lock(tmp_path: Path, db: Path, seconds: float) -> subprocess.Popen:
    """Another process that takes the database's write lock and keeps it for *seconds*."""
    script = tmp_path / "locker.py"
    script.write_text(LOCKER)
    p = subprocess.Popen([sys.executable, str(script), str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def greentrack_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("greentrack:")]


def test_stop_returns_within_the_lock_timeout_while_another_process_holds_the_lock_and_nothing_is_lost(
        tmp_path, db_path, monkeypatch, capfd):
    monkeypatch.setenv("GREENTRACK_LOCK_TIMEOUT", "1")
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:200")
    Store(db_path).close()
    locker = hold_lock(tmp_path, db_path, 4.0)
    s = greentrack.Session("held", flush_interval_s=0.2, exact_edges=False).start()
    for _ in range(40):
        time.sleep(0.02)
        s.step()
    t0 = time.perf_counter()
    s.stop()
    took = time.perf_counter() - t0
    assert took < 2.5, took  # lock timeout (1 s) + one flush wait (0.5 s) + margin
    lines = greentrack_lines(capfd.readouterr().err)
    assert len(lines) == 1 and "locked by another process" in lines[0] and "kept in the spool" in lines[0], lines
    assert s.writer.spooled is not None and s.writer.spooled.exists()
    assert stat.S_IMODE(s.writer.spooled.stat().st_mode) == 0o600
    assert locker.wait(timeout=30) == 0
    with greentrack.session("next", exact_edges=False):
        time.sleep(0.05)
    assert "delivered 1 spooled run(s)" in capfd.readouterr().err
    run = Store(db_path).get_run(s.id)
    assert run["status"] == "finished" and run["steps"] == 40
    assert run["energy_j"] == pytest.approx(s.result.energy_j)
    t, _p = Store(db_path).read_series(s.id)["gpu0"]
    assert t[0] - run["started_at"] < 0.3 and run["ended_at"] - t[-1] < 0.3  # no gap: the chunks were kept
    assert not s.writer.spooled.exists()


def test_a_lock_released_before_the_end_costs_no_line_and_no_spool(tmp_path, db_path, monkeypatch, capfd):
    monkeypatch.setenv("GREENTRACK_MOCK", "constant:200")
    Store(db_path).close()
    locker = hold_lock(tmp_path, db_path, 1.0)
    with greentrack.session("briefly-held", flush_interval_s=0.2, exact_edges=False) as s:
        time.sleep(1.6)
    assert locker.wait(timeout=30) == 0
    assert greentrack_lines(capfd.readouterr().err) == []
    assert s.writer.spooled is None and spool.entries() == []
    run = Store(db_path).get_run(s.id)
    assert run["status"] == "finished"
    t, _p = Store(db_path).read_series(s.id)["gpu0"]
    assert t[0] - run["started_at"] < 0.3


MIDRUN = textwrap.dedent("""
    import json, os, sys, time, greentrack
    db = os.environ["GREENTRACK_DB"]
    s = greentrack.Session("moved", flush_interval_s=0.2, exact_edges=False).start()
    time.sleep(0.8)
    deadline = time.monotonic() + 20
    while not s.writer.state["begun"] and time.monotonic() < deadline:  # the sampler thread writes the run's
        time.sleep(0.05)  # row to the file first, however late a loaded machine lets it: then the file goes
    for suffix in ("", "-wal", "-shm"):
        if sys.argv[1] == "replace" and suffix == "":
            os.rename(db, db + ".old")
        elif os.path.exists(db + suffix):
            os.unlink(db + suffix)
    if sys.argv[1] == "replace":
        with open(db, "wb") as fh:
            fh.write(b"not a database " * 100)
    time.sleep(0.8)
    s.stop()
    print(json.dumps({"id": s.id, "energy_j": s.result.energy_j, "spooled": str(s.writer.spooled or "")}))
""")


def _midrun(tmp_path: Path, mode: str) -> tuple[dict, list[str]]:
    script = tmp_path / "midrun.py"
    script.write_text(MIDRUN)
    Store(tmp_path / "greentrack.db").close()
    p = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, GREENTRACK_MOCK="constant:100"))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout), greentrack_lines(p.stderr)


def test_a_database_deleted_mid_run_is_said_once_and_the_whole_run_is_in_the_new_file(tmp_path, db_path):
    out, lines = _midrun(tmp_path, "delete")
    assert len(lines) == 1 and "was deleted during run" in lines[0] and "continues in the file now at" in lines[0]
    run = Store(db_path).get_run(out["id"])
    assert run["status"] == "finished" and run["energy_j"] == pytest.approx(out["energy_j"])
    t, _p = Store(db_path).read_series(out["id"])["gpu0"]
    assert t[0] - run["started_at"] < 0.3, "what was written before the deletion was salvaged"
    assert out["spooled"] == ""


def test_a_database_replaced_mid_run_keeps_the_run_in_the_spool_until_the_file_is_fixed(tmp_path, db_path, cli):
    out, lines = _midrun(tmp_path, "replace")
    assert any("was replaced by another file during run" in x for x in lines)
    assert any("kept in the spool" in x for x in lines) and len(lines) <= 3
    assert Path(out["spooled"]).exists()
    assert cli("report").returncode == 2  # the junk file is refused with one line
    db_path.unlink()
    shutil.copy(str(db_path) + ".old", db_path)  # the user puts the database back
    p = cli("doctor", "--deliver")
    assert p.returncode == 0 and f"delivered run {out['id']}" in p.stderr
    run = Store(db_path).get_run(out["id"])
    assert run["status"] == "finished" and run["energy_j"] == pytest.approx(out["energy_j"])
    t, _p = Store(db_path).read_series(out["id"])["gpu0"]
    assert t[0] - run["started_at"] < 0.3
    assert not Path(out["spooled"]).exists()


def _namespace_ok() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_mount = pytest.mark.skipif(not _namespace_ok(), reason="needs 'unshare -rm' (a private mount namespace) "
                                 "to mount a small tmpfs")

DISK_FULL = textwrap.dedent("""
    set -e
    mount -t tmpfs -o size=1m tmpfs "$MNT"
    export GREENTRACK_DB="$MNT/gt.db"
    python3 "$SCRIPT" begin          # a run starts with room, the disk fills mid-run, space comes back before the end
    python3 "$SCRIPT" full-at-stop   # the disk is full when the run ends: spooled
    rm -f "$MNT/filler"
    python3 "$SCRIPT" next           # the next session delivers the spooled run
    python3 -m greentrack report --format json > "$OUT/report.json"
""")

DISK_SCRIPT = textwrap.dedent("""
    import json, os, sys, time, greentrack
    mnt = os.environ["MNT"]
    def fill():
        with open(os.path.join(mnt, "filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
    phase = sys.argv[1]
    s = greentrack.Session(phase, flush_interval_s=0.2, exact_edges=False).start()
    time.sleep(0.3)
    if phase in ("begin", "full-at-stop"):
        fill()
    time.sleep(0.5)
    deadline = time.monotonic() + 20
    while phase == "begin" and s.writer.state["error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)  # a flush (every 0.2 s) meets the full disk while the run goes on, however late
    if phase == "begin":
        os.unlink(os.path.join(mnt, "filler"))
        time.sleep(0.3)
    s.stop()
    with open(os.path.join(os.environ["OUT"], phase + ".json"), "w") as fh:
        json.dump({"id": s.id, "energy_j": s.result.energy_j, "spooled": str(s.writer.spooled or "")}, fh)
""")


@needs_mount
def test_disk_full_is_said_once_and_the_run_is_finished_from_the_spool_when_space_comes_back(tmp_path):
    mnt, out = tmp_path / "mnt", tmp_path / "out"
    mnt.mkdir()
    out.mkdir()
    (tmp_path / "disk.py").write_text(DISK_SCRIPT)
    (tmp_path / "full.sh").write_text(DISK_FULL)
    env = dict(os.environ, MNT=str(mnt), OUT=str(out), SCRIPT=str(tmp_path / "disk.py"),
               GREENTRACK_MOCK="constant:100")
    p = subprocess.run(["unshare", "-rm", "bash", str(tmp_path / "full.sh")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = greentrack_lines(p.stderr)
    begin, at_stop, nxt = (json.loads((out / f"{n}.json").read_text()) for n in ("begin", "full-at-stop", "next"))
    full_lines = [x for x in lines if "disk full" in x]
    assert any(begin["id"] in x for x in full_lines), lines  # said, while the run went on
    assert any(at_stop["id"] in x and "kept in the spool" in x for x in full_lines), lines
    assert any("delivered 1 spooled run(s)" in x and at_stop["id"] in x for x in lines), lines
    assert begin["spooled"] == "" and at_stop["spooled"] != "" and nxt["spooled"] == ""
    runs = {r["id"]: r for r in json.loads((out / "report.json").read_text())["runs"]}
    for rec in (begin, at_stop, nxt):
        assert runs[rec["id"]]["status"] == "finished"
        assert runs[rec["id"]]["energy_j"] == pytest.approx(rec["energy_j"])


def test_a_new_database_and_its_folder_are_private(tmp_path, monkeypatch):
    db = tmp_path / "new" / "folder" / "gt.db"
    monkeypatch.setenv("GREENTRACK_DB", str(db))
    with greentrack.session("private"):
        time.sleep(0.05)
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    for suffix in ("", "-wal", "-shm"):
        f = Path(str(db) + suffix)
        if f.exists():
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_the_spool_is_private_and_a_spooled_run_is_delivered_once(tmp_path, db_path):
    from greentrack.store.records import RunRow, StoredRun

    Store(db_path).close()
    sr = StoredRun(run=RunRow(id="feedbeef0001", name="late", status="finished", started_at=1.8e9, ended_at=1.8e9 + 5))
    path = spool.write(sr, str(db_path), "test")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    claimed = path.with_name(path.name + f"{spool.CLAIM}{os.getpid()}")
    os.replace(path, claimed)  # a live process is delivering it: nobody else touches it
    assert spool.entries() == []
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    os.replace(claimed, path.with_name(path.name + f"{spool.CLAIM}{dead.stdout.strip()}"))
    entries = spool.entries()  # the claim of a dead process is taken back
    assert [e.run_id for e in entries] == ["feedbeef0001"]
    for _ in range(2):
        for e in spool.entries():
            assert spool.deliver(e, lambda loc: Store(loc), timeout_s=1) == (str(db_path), None)
    assert spool.entries() == []
    assert [r["id"] for r in Store(db_path).list_runs()] == ["feedbeef0001"]


@pytest.mark.parametrize("args, stored", [
    (["train.py", "--api-key=abc", "--lr", "3"], ["train.py", "--api-key=***", "--lr", "3"]),
    (["train.py", "--hf-token", "abc", "--x"], ["train.py", "--hf-token", "***", "--x"]),
    (["train.py", "--password", "--verbose"], ["train.py", "--password", "--verbose"]),
    (["env", "HF_TOKEN=abc", "AWS_SECRET_ACCESS_KEY=x", "PATH=/bin"], ["env", "HF_TOKEN=***",
                                                                        "AWS_SECRET_ACCESS_KEY=***", "PATH=/bin"]),
    (["git", "clone", "https://me:pw@host/r.git"], ["git", "clone", "https://me:***@host/r.git"]),
    (["train.py", "--DB_PASSWORD=x", "-secret", "y"], ["train.py", "--DB_PASSWORD=***", "-secret", "***"]),
])
def test_secret_values_are_redacted_from_command_lines(args, stored):
    assert redact_args(args) == stored


def test_a_short_option_named_by_a_pattern_has_its_value_redacted():
    """A two-character option (``-t``) is an option like any other: its value is masked when a pattern
    names it; a lone ``-`` (standard input) is an argument, not an option."""
    assert redact_args(["run", "-t", "abc", "-", "x"], ("t",)) == ["run", "-t", "***", "-", "x"]
    assert redact_args(["run", "-", "abc"], ("*",)) == ["run", "-", "abc"]


def test_redaction_patterns_are_configurable(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENTRACK_REDACT", "*wandb*")
    assert redact_command("t.py --wandb-id 7 --api-key k") == "t.py --wandb-id '***' --api-key k"
    monkeypatch.setenv("GREENTRACK_REDACT", "none")
    assert redact_command("t.py --api-key k https://a:b@h") == "t.py --api-key k https://a:b@h"
    monkeypatch.delenv("GREENTRACK_REDACT")
    (tmp_path / "pyproject.toml").write_text('[tool.greentrack]\nredact = ["*cookie*"]\n')
    assert redact_command("t.py --cookie c --token t") == "t.py --cookie '***' --token t"


def test_secrets_in_a_wrapped_command_never_reach_the_database_file(cli, cli_process, db_path):
    p = cli_process("run", "--", sys.executable, "-c", "import sys; print(len(sys.argv))", "--api-key=SUPERSECRET1",
            "--token", "SUPERSECRET2", env={"GREENTRACK_BACKEND": "mock"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "4"  # the program still got its real arguments
    raw = b"".join(Path(str(db_path) + s).read_bytes() for s in ("", "-wal") if Path(str(db_path) + s).exists())
    assert b"SUPERSECRET" not in raw
    cmd = json.loads(cli("report", "--format", "json").stdout)["runs"][0]["command"]
    assert "--api-key=***" in cmd and "--token '***'" in cmd


# the shortcuts that keep regular expressions out of the common path agree with the full rules -----
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def test_a_redaction_pattern_matches_as_fnmatch_matches():
    """A ``*word*`` pattern is a substring test (no regular expression compiled); every pattern matches
    exactly the names ``fnmatch.fnmatchcase`` matches: all names and patterns of up to 4 characters over
    an alphabet of letters and glob characters (small, so every edge is reached, and deterministic)."""
    import fnmatch
    import itertools

    from greentrack.store.redact import _glob

    alphabet = "ab*?[]"
    words = ["".join(w) for n in range(5) for w in itertools.product(alphabet, repeat=n)]
    # and longer patterns whose middle holds every glob character, with names holding them as text
    words += ["*?*[]*", "*[]?*a*", "*a?*[b]*", "*]?*[*"]
    names = [w for w in words if len(w) <= 3] + ["key", "api-key", "a\nb", "?*[]", "x?*[]y", "a]b?*["]
    for pat in words:
        for name in names:
            assert _glob(name, pat) is fnmatch.fnmatchcase(name, pat), (name, pat)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.lists(st.sampled_from(list("-=@:/ aKtp\n")) | st.sampled_from(
    ["--api-key", "token", "https://", "me:pw@h", "HF_TOKEN=", "=", "-"]), max_size=5).map("".join), max_size=5))
def test_redaction_with_and_without_its_shortcuts_agrees(words):
    """Words without ``=`` or ``@`` skip the regular expressions: the result is what the rules give when
    every word goes through them (the rules as written before the shortcuts)."""
    import fnmatch
    import re

    from greentrack.store.redact import DEFAULT_PATTERNS, MASK, redact_args

    def secret(name):
        n = name.lstrip("-").lower()
        return bool(n) and any(fnmatch.fnmatchcase(n, p) for p in DEFAULT_PATTERNS)

    def reference(args):
        out, mask_next = [], False
        for a in args:
            if mask_next:
                mask_next = False
                if not a.startswith("-") or a == "-":
                    out.append(MASK)
                    continue
            m = re.match(r"^(-{1,2}[^=\s]+)=(.*)$", a, re.DOTALL)
            if m and secret(m.group(1)):
                out.append(f"{m.group(1)}={MASK}")
                continue
            if a.startswith("-") and len(a) > 1 and "=" not in a and secret(a):
                out.append(a)
                mask_next = True
                continue
            m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", a, re.DOTALL)
            if m and secret(m.group(1)):
                out.append(f"{m.group(1)}={MASK}")
                continue
            out.append(re.sub(r"([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)",
                              lambda m: m.group(1) + MASK + m.group(3), a, flags=re.IGNORECASE))
        return out

    assert redact_args(words, DEFAULT_PATTERNS) == reference(words)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(["a", " ", "\n", "\t", "\x1b", "\x7f", "\x85", "\u00a0", "\u200e", "\u202e",
                                     "\u2066", "\u2028", "é", ":", "/", "x1", "+.-"]), max_size=8).map("".join))
def test_printable_text_skips_the_escaping_rules_and_gets_what_they_give(text):
    """one_line, terminal_safe and csv_cell return printable text as it is (str.isprintable, no regular
    expression); the result is always what the escaping rules give; url_scheme answers as its pattern does."""
    import re

    from greentrack.settings import url_scheme
    from greentrack.units import _CONTROL, _CONTROL_BUT_NEWLINE, _escape, csv_cell, one_line, terminal_safe

    assert one_line(text) == re.sub(_CONTROL, _escape, text)
    assert terminal_safe(text) == re.sub(_CONTROL_BUT_NEWLINE, _escape, text)
    assert csv_cell(text).removeprefix("'") == re.sub(_CONTROL_BUT_NEWLINE, _escape, text)
    for value in (text, "postgresql" + text, "sqlite:" + text):
        m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(//|$)", value)
        assert url_scheme(value) == (m.group(1).lower() if m else None)
