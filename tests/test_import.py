"""`import greentrack` stays light: no pandas, numpy, pynvml, codecarbon, sqlite-utils or click."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "numpy", "pynvml", "codecarbon", "sqlite_utils", "click", "pluggy", "matplotlib")


def _loaded(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_is_light():
    assert _loaded("import greentrack") == set()


def test_a_session_loads_neither_pandas_nor_sqlite_utils(tmp_path):
    code = ("import os, greentrack\n"
            f"os.environ['GREENTRACK_DB'] = {str(tmp_path / 'x.db')!r}\n"
            "from greentrack.store.sqlite import Store\nStore(os.environ['GREENTRACK_DB'])\n"  # schema exists
            "import sys\nfor m in [m for m in sys.modules if m.startswith(('sqlite_utils', 'click'))]:\n"
            "    del sys.modules[m]\n"
            "with greentrack.session('light', backend='mock'):\n    pass\n")
    loaded = _loaded(code)
    assert "pandas" not in loaded and "numpy" not in loaded
    assert "sqlite_utils" not in loaded and "codecarbon" not in loaded


def test_public_api():
    import greentrack

    for name in greentrack.__all__:
        assert getattr(greentrack, name) is not None
    assert callable(greentrack.session) and callable(greentrack.track)


def test_session_stays_callable_after_importing_its_module(tmp_path):
    """Importing the module behind greentrack.session() leaves the function (and the module) intact."""
    code = ("import os\nos.environ['GREENTRACK_DB'] = %r\nos.environ['GREENTRACK_BACKEND'] = 'mock'\n"
            "from greentrack.measure.tracker import Session\nimport greentrack\n"
            "import greentrack.measure.tracker as m\nassert m.Session is Session and callable(greentrack.session)\n"
            "with greentrack.session('x', exact_edges=False) as s:\n    pass\n"
            "print(s.result.status, isinstance(s, Session))\n") % str(tmp_path / "c.db")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["finished", "True"]


def test_the_view_items_are_made_only_when_a_hook_reads_them(tmp_path):
    """A session the pytest plugin starts creates no DeviceInfo or PhaseMark dataclass (about half a
    millisecond each at its start) until something reads ``run.devices`` or ``run.phases``; both are still
    importable from greentrack.measure.view."""
    code = ("import dataclasses, os\n"
            f"os.environ['GREENTRACK_DB'] = {str(tmp_path / 'v.db')!r}\n"
            "made = []\norig = dataclasses._process_class\n"
            "def timed(cls, *a, **k):\n    made.append(cls.__qualname__)\n    return orig(cls, *a, **k)\n"
            "dataclasses._process_class = timed\n"
            "from greentrack.measure.tracker import Session\n"
            "s = Session('v', backend='cpu-model', background=False)\ns.start()\ns.edge()\n"
            "s.mark_phase('t', 1.0, 2.0)\n"
            "s.stop()\nbefore = [m for m in made if m in ('DeviceInfo', 'PhaseMark')]\n"
            "from greentrack.measure.view import DeviceInfo, PhaseMark\n"
            "devices, phases = s.view.devices, s.view.phases\n"
            "assert isinstance(devices[0], DeviceInfo) and devices[0].key == 'cpu-model', devices\n"
            "assert phases == (PhaseMark('t', 1.0, 2.0),), phases\n"
            "print(before, sorted(m for m in made if m in ('DeviceInfo', 'PhaseMark')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[0] == "[] ['DeviceInfo', 'PhaseMark']", out.stdout + out.stderr
