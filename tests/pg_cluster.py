"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a Unix socket there, no TCP.

Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``; ``.ci/run`` installs it) or any
``initdb``/``pg_ctl`` on the PATH. PostgreSQL refuses to run as root: as root the cluster is
created and run as the ``postgres`` user (``runuser``). Each test gets its own schema in the one
database (``?options=-csearch_path=...`` in its URL), so tests never see each other's runs and no
database is created per test.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return found[-1]
    for cand in (f"/usr/local/bin/{name}", shutil.which(name)):
        if cand and os.path.exists(cand):
            return cand
    return None


class Cluster:
    """One running cluster; :meth:`url` of a fresh schema, :meth:`stop` / :meth:`start` for outage tests."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            raise FileNotFoundError("no initdb/pg_ctl (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="greentrack-pg-"))
        os.chmod(self.root, 0o755)
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C",
                   "--no-sync"])
        self.start()

    def _run(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.as_user + cmd, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-2000:]}{p.stdout[-500:]}")
        return p

    def start(self) -> None:
        opts = (f"-k {self.root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=400 -c shared_buffers=32MB")
        self._run([self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "-t", "60",
                   "start"])

    def stop(self, mode: str = "fast") -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], check=False)

    @property
    def base_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.root}"

    def url(self, schema: str | None = None) -> str:
        """The URL of a new, empty schema (the database a test's runs go to)."""
        import psycopg

        schema = schema or "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.base_url, autocommit=True) as c:
            c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        return f"{self.base_url}&options=-csearch_path%3D{schema}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
