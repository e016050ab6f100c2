"""Render a greentrack HTML report in headless Chromium and check the screenshot is a real page.

Without ``--html`` it first measures a few runs on the mock GPU (an fp32 and a bf16 fine-tune on
2 simulated GPUs, one with a non-Latin name, and a failed run) into a temporary database and
renders the report from them; ``--example PATH`` keeps that HTML (this is how
``reports/example-report.html`` is made).

    python benchmarks/html_screenshot.py [--html FILE] [--example reports/example-report.html]
                                         [--png /tmp/greentrack-report.png] [--width 1280]
                                         [--scenario aws:us-east-1 ...]

Needs Debian's ``chromium`` (``apt-get install -y chromium``). Prints the PNG path, its size and
how many distinct colours it holds (a blank or broken page has very few).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: Path, png_path: Path, width: int = 1200, height: int = 1600, timeout: float = 90) -> Path:
    """Render *html_path* with headless Chromium into *png_path*; raises RuntimeError when it cannot."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    png_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="greentrack-chromium-") as profile:
        p = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png_path}",
                            f"--window-size={width},{height}", html_path.resolve().as_uri()],
                           capture_output=True, text=True, timeout=timeout)
    if not png_path.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    return png_path


MEASURE = """<script>
addEventListener('load', () => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.right, e.scrollWidth, e.clientWidth]; };
  const out = {viewport: document.documentElement.clientWidth, page: document.documentElement.scrollWidth,
               wide: [...document.querySelectorAll('div.wide')].map(box),
               tags: [...document.querySelectorAll('table.runs td.tags')].map(box),
               names: [...document.querySelectorAll('table.runs td.name')].map(box),
               table: [...document.querySelectorAll('table.runs')].map(box)};
  document.body.setAttribute('data-layout', JSON.stringify(out));
});
</script>"""


def layout(html_path: Path, width: int = 1280, height: int = 900, timeout: float = 90) -> dict:
    """Lay the report out in headless Chromium at *width* pixels and measure it: the viewport, the page's
    scroll width, and the boxes ``[left, right, scrollWidth, clientWidth]`` of the runs table, its
    scrolling container and its name and tags cells. The report itself holds no script: a copy with a
    measuring script is laid out."""
    import html as _html
    import json
    import re

    exe = find_chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    text = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="greentrack-chromium-") as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(text.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
        p = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                            "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                           capture_output=True, text=True, timeout=timeout)
    m = re.search(r'data-layout="([^"]*)"', p.stdout)
    if not m:
        raise RuntimeError(f"chromium did not lay the page out (exit {p.returncode}): {p.stderr.strip()[-500:]}")
    return json.loads(_html.unescape(m.group(1)))


def colour_count(png_path: Path) -> tuple[tuple[int, int], int]:
    """``((width, height), distinct colours)`` of a PNG."""
    from PIL import Image

    with Image.open(png_path) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20)
        return rgb.size, (len(colours) if colours is not None else 1 << 20)


def mock_runs(db: Path) -> None:
    """A few real sessions on the mock backend: fp32 vs bf16 fine-tunes, and a failed run."""
    import greentrack

    os.environ["GREENTRACK_MOCK_GPUS"] = "1"
    try:
        with greentrack.session("bert-base", region="DE", backend="mock", db=db, tags={"precision": "fp32"}) as s:
            for _ in range(10):
                time.sleep(0.03)
                s.step(samples=32)
            raise RuntimeError("CUDA out of memory (simulated)")
    except RuntimeError:
        pass
    os.environ["GREENTRACK_MOCK_GPUS"] = "2"
    for name, precision, step_s, steps in (("llama-ft", "fp32", 0.05, 40), ("微调-llama · Ωmega", "bf16", 0.03, 40)):
        with greentrack.session(name, region="FR", backend="mock", db=db, flush_interval_s=0.5,
                                tags={"precision": precision, "technique": "full-ft"}) as s:
            with s.phase("warmup"):
                time.sleep(0.4)
            with s.phase("train"):
                for _ in range(steps):
                    time.sleep(step_s)
                    s.step(samples=16, tokens=16 * 512)
            with s.phase("eval"):
                time.sleep(0.8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=None, help="An existing report (default: build one from mock runs).")
    ap.add_argument("--example", type=Path, default=None, help="Keep the generated HTML at this path.")
    ap.add_argument("--png", type=Path, default=Path(tempfile.gettempdir()) / "greentrack-report.png")
    ap.add_argument("--scenario", action="append", default=[], help="Scenario to compare the newest run under.")
    ap.add_argument("--height", type=int, default=1600)
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    html_path = a.html
    if html_path is None:
        from greentrack.api import html_report, query_runs

        work = Path(tempfile.mkdtemp(prefix="greentrack-html-"))
        db = work / "runs.db"
        mock_runs(db)
        rows = query_runs(db=db, last=10)
        html_path = a.example or work / "report.html"
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(html_report(rows, db=db, detail=3, scenarios=a.scenario or None), encoding="utf-8")
        print(f"report: {html_path} ({html_path.stat().st_size / 1024:.0f} KiB, {len(rows)} runs)")
    t0 = time.perf_counter()
    png = screenshot(html_path, a.png, width=a.width, height=a.height)
    size, colours = colour_count(png)
    print(f"screenshot: {png} {size[0]}x{size[1]}, {colours} colours, chromium took {time.perf_counter() - t0:.1f}s")
    for w in (1280, 1400):
        lay = layout(html_path, width=w)
        over = [b for b in lay["wide"] if b[2] > b[3] + 1]
        print(f"layout at {w} px: page {lay['page']} px in a {lay['viewport']} px viewport; runs table "
              f"{'overflows its container' if over else 'fits'}; tags cells end at "
              f"{max((b[1] for b in lay['tags']), default=0):.0f} px")
    return 0 if colours > 50 else 1


if __name__ == "__main__":
    sys.exit(main())
