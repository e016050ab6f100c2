"""greentrack-prometheus scraped by a real Prometheus server (Debian's ``prometheus`` package).

The fixture runs the ``prometheus`` binary itself (never the system service) with a generated
configuration, a scrape interval of 1 s and a storage folder of its own, on free localhost ports.
The tests query its HTTP API as Grafana would. They are skipped only when the binary is absent
(``.ci/run`` installs it: ``apt-get install prometheus``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import install_plugin

pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (.ci/run installs it)")
PROMETHEUS = shutil.which("prometheus") or (os.path.exists("/usr/bin/prometheus") and "/usr/bin/prometheus")
if not PROMETHEUS:
    pytest.skip("the prometheus binary is not installed (Debian: apt-get install prometheus)", allow_module_level=True)

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from greentrack.store import Store  # noqa: E402

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "greentrack-prometheus"


def free_port(consecutive: int = 1) -> int:
    """A localhost port with *consecutive* - 1 free ones after it."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        try:
            for p in range(base, base + consecutive):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free ports")


class Prometheus:
    """A Prometheus server of the test's own, and its HTTP API."""

    def __init__(self, root: Path, targets: dict[str, list[int]]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = "".join(f"  - job_name: {name}\n    static_configs:\n      - targets: [{', '.join(repr(f'127.0.0.1:{p}') for p in ports)}]\n"  # noqa: E501
                       for name, ports in targets.items())
        cfg = root / "prometheus.yml"
        cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                       "scrape_configs:\n" + jobs)
        self.log = open(root / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=root)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("prometheus did not start: " + (root / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)

    def api(self, path: str, **params: object) -> dict:
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, q: str, at: float | None = None) -> list[dict]:
        return self.api("query", query=q, **({"time": f"{at:.3f}"} if at is not None else {}))["result"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin(PLUGIN_DIR, tmp_path_factory.mktemp("prometheus-install"))


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"ranks": free_port(2), "node": free_port()}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]):
    p = Prometheus(tmp_path_factory.mktemp("prometheus"),
                   {"ranks": [ports["ranks"], ports["ranks"] + 1], "node": [ports["node"]]})
    yield p
    p.stop()


def base_env(site: Path, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GREENTRACK_PROMETHEUS_") and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
               GREENTRACK_BACKEND="mock", GREENTRACK_FLUSH_INTERVAL="0.5", GREENTRACK_DB=str(db))
    env.update(extra)
    return env


RANK = """
import json, sys, time
import greentrack
with greentrack.session("ddp-train", region="FR") as s:
    with s.phase("train"):
        end = time.time() + float(sys.argv[1])
        while time.time() < end:
            time.sleep(0.02)
            s.step()
    with s.phase("eval"):
        time.sleep(float(sys.argv[2]))
print(json.dumps({"id": s.id}), flush=True)
"""


def test_two_ranks_of_one_job_add_up_in_prometheus(prom: Prometheus, site: Path, ports: dict[str, int],
                                                   tmp_path: Path) -> None:
    job = f"job-{os.getpid()}-{time.time_ns() % 10**6}"
    db = tmp_path / "runs.db"
    watts = {0: 200.0, 1: 350.0}
    procs = []
    for rank in (0, 1):
        env = base_env(site, db, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", GREENTRACK_JOB_ID=job,
                       GREENTRACK_MOCK=f"constant:{watts[rank]:g}", GREENTRACK_MOCK_GPUS="2",
                       GREENTRACK_PROMETHEUS_PORT=str(ports["ranks"]), GREENTRACK_PROMETHEUS_ADDR="127.0.0.1",
                       GREENTRACK_PROMETHEUS_LINGER="15")
        procs.append(subprocess.Popen([sys.executable, "-c", RANK, "4", "3"], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=90)  # each process lingers until Prometheus has scraped its final values
        assert p.returncode == 0, err
        assert err == "", err
        ids.append(json.loads(out.strip().splitlines()[-1])["id"])
    store = Store(db)
    stored = {str(rank): store.get_run(rid) for rank, rid in zip((0, 1), ids)}
    assert {r["job_id"] for r in stored.values()} == {job}

    raw = prom.query(f'greentrack_energy_joules_total{{job_id="{job}"}}[5m]')
    assert raw, "Prometheus scraped nothing"
    by_rank: dict[str, list[dict]] = {}
    for series in raw:
        m = series["metric"]
        assert m["job"] == "ranks" and m["run"] == "ddp-train" and m["host"] == os.uname().nodename
        assert m["device"] == f"gpu{m['rank']}"  # under a launcher, each rank measures its own GPU
        assert m["run_id"] == stored[m["rank"]]["id"]
        by_rank.setdefault(m["rank"], []).append(series)
    assert sorted(by_rank) == ["0", "1"]

    # increase() of each rank's energy over its run, evaluated at that rank's last scrape: the counters start
    # at 0 and end flat, so Prometheus has nothing to extrapolate (a single evaluation time for both targets
    # would extrapolate one of them by up to a scrape interval of its average rate)
    total = 0.0
    last_seen = 0.0
    for rank, series in by_rank.items():
        t_first = min(float(v[0]) for s in series for v in s["values"])
        t_last = max(float(v[0]) for s in series for v in s["values"])
        last_seen = max(last_seen, t_last)
        window = math.ceil(t_last - t_first) + 5
        (res,) = prom.query(f'sum(increase(greentrack_energy_joules_total{{job_id="{job}", rank="{rank}"}}'
                            f'[{window}s]))', at=t_last)
        got = float(res["value"][1])
        samples = [(s["metric"]["phase"], [(round(float(t) - t_first, 2), v) for t, v in s["values"]]) for s in series]
        assert got == pytest.approx(stored[rank]["energy_j"], rel=0.02), (rank, samples)
        total += got
        phases = {r["metric"]["phase"]: float(r["value"][1]) for r in prom.query(
            f'sum by (phase) (increase(greentrack_energy_joules_total{{job_id="{job}", rank="{rank}"}}'
            f'[{window}s]))', at=t_last)}
        assert {"train", "eval"} <= set(phases) <= {"train", "eval", "(none)"}
        for p in stored[rank]["phases"]:  # each phase's energy, split at its edges (within 0.1 s of power)
            tol = 0.1 * watts[int(rank)] + 0.02 * p["energy_j"]
            assert phases[p["name"]] == pytest.approx(p["energy_j"], abs=tol), (rank, p["name"], samples)
    job_total = sum(r["energy_j"] for r in stored.values())
    assert total == pytest.approx(job_total, rel=0.02)

    # every query of the Grafana dashboard answers for this job
    dash = json.loads((PLUGIN_DIR / "src/greentrack_prometheus/dashboards/greentrack.json").read_text())
    started = min(r["started_at"] for r in stored.values())
    window = math.ceil(last_seen - started) + 5
    for panel in dash["panels"]:
        for target in panel["targets"]:
            q = (target["expr"].replace("$job", job).replace("$host", ".*").replace("$run", ".*")
                 .replace("$__rate_interval", "4s").replace("$__range", f"{window}s"))
            if target.get("instant"):
                res = prom.query(q, at=last_seen)
            else:
                res = prom.api("query_range", query=q, start=f"{started:.3f}", end=f"{last_seen:.3f}",
                               step="1")["result"]
            assert res, (panel["title"], q)


NODE_RUN = """
import json, sys, time
import greentrack
with greentrack.session(sys.argv[1]) as s:
    time.sleep(float(sys.argv[2]))
print(json.dumps({"id": s.id}), flush=True)
"""


def scrape(url: str) -> dict[str, dict]:
    """``{run_id: {"energy": J, "power": W, "steps": n}}`` and ``store_up`` of one scrape of the node endpoint."""
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    runs: dict[str, dict] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "greentrack_store_up":
                runs["store_up"] = {"value": s.value}
            elif s.name in ("greentrack_energy_joules_total", "greentrack_power_watts"):
                rec = runs.setdefault(s.labels["run_id"], {"energy": 0.0, "power": 0.0})
                rec["energy" if "energy" in s.name else "power"] += s.value
                assert "phase" not in s.labels
    return runs


def test_serve_metrics_reports_every_session_of_the_host_and_drops_ended_ones(
        prom: Prometheus, site: Path, ports: dict[str, int], tmp_path: Path) -> None:
    db = tmp_path / "node.db"
    grace = 2.0
    env = base_env(site, db, GREENTRACK_MOCK="constant:300")
    server = subprocess.Popen([sys.executable, "-m", "greentrack", "serve-metrics", "--addr", "127.0.0.1",
                               "--port", str(ports["node"]), "--grace", str(grace)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert f"serving http://127.0.0.1:{ports['node']}/metrics" in line, line + server.stderr.read()
        url = f"http://127.0.0.1:{ports['node']}/metrics"
        durations = {"node-a": 3.5, "node-b": 8.0, "node-c": 8.0}
        procs = {name: subprocess.Popen([sys.executable, "-c", NODE_RUN, name, str(d)], env=env, cwd=tmp_path,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name, d in durations.items()}
        seen: dict[str, list[tuple[float, dict]]] = {}
        all_three_in_prometheus = False
        gone: dict[str, float] = {}
        ended: dict[str, dict] = {}
        ids: dict[str, str] = {}
        deadline = time.time() + 60
        scrapes = down = 0
        while time.time() < deadline:
            now = time.time()
            snap = scrape(url)
            scrapes += 1
            # a read that meets three sessions' writes on a loaded machine can give up once (store_up 0,
            # said by the endpoint itself); the next scrape must read the store again
            if snap.pop("store_up") != {"value": 1.0}:
                down += 1
                assert down <= max(1, scrapes // 10), f"the store was unreadable in {down} of {scrapes} scrapes"
                continue
            for rid, rec in snap.items():
                seen.setdefault(rid, []).append((now, rec))
            for name, p in procs.items():
                if name not in ids and p.poll() is not None:
                    out, err = p.communicate()
                    assert p.returncode == 0, err
                    ids[name] = json.loads(out.strip().splitlines()[-1])["id"]
                    ended[name] = Store(db).get_run(ids[name])
            for name, rid in ids.items():
                if name not in gone and rid in seen and rid not in snap:
                    gone[name] = now
            if not all_three_in_prometheus and len(seen) == 3:
                res = prom.query('count(count by (run_id) (greentrack_energy_joules_total{job="node"}))')
                all_three_in_prometheus = bool(res) and res[0]["value"][1] == "3"
            if len(gone) == 3:
                break
            time.sleep(0.25)
        assert all_three_in_prometheus, "Prometheus never saw the three runs at once"
        assert len(gone) == 3, f"not dropped: {set(durations) - set(gone)}"
        for name, run in ended.items():
            rid = run["id"]
            obs = seen[rid]
            energies = [rec["energy"] for _, rec in obs]
            assert energies == sorted(energies)  # monotonic
            during = [rec["power"] for t, rec in obs if rec["power"] > 0]
            assert during and during[-1] == pytest.approx(300.0, rel=0.05)  # power from two flushes of the store
            t_last, last = obs[-1]  # the ended run, within its grace period: its final value, no power
            assert t_last > run["ended_at"] + 1.0
            assert last["energy"] == pytest.approx(run["energy_j"], rel=1e-9) and last["power"] == 0.0
            assert grace <= gone[name] - run["ended_at"] <= grace + 3.0, name
        assert gone["node-a"] < min(gone["node-b"], gone["node-c"])  # dropped while the others still ran
        deadline = time.time() + 10
        while prom.query('greentrack_energy_joules_total{job="node"}') and time.time() < deadline:
            time.sleep(0.5)  # Prometheus marks the series stale at its next scrape
        assert not prom.query('greentrack_energy_joules_total{job="node"}')
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0 and "serve-metrics stopped" in out and err == "", err
