"""greentrack study on the mock backend: every setting, interleaved, stored, compared; and the arithmetic."""

from __future__ import annotations

import json
import time

import pytest

import greentrack
from greentrack.errors import GreentrackError
from greentrack.study.runner import Rep, summarise
from greentrack.study.settings import BY_NAME, STANDARD, select

torch = pytest.importorskip("torch")


def _rep(setting: str, rep: int, j_step: float, samples: int, tokens: int, s_per_step: float) -> Rep:
    return Rep(setting, rep, f"r{setting}{rep}", 10, 10 * s_per_step, 10 * j_step, j_step, j_step / samples,
               j_step / tokens, j_step / s_per_step, 1 / s_per_step, samples / s_per_step, tokens / s_per_step,
               None, "counter")


def test_savings_are_per_sample_for_training_and_per_token_for_generation():
    sts = [BY_NAME[n] for n in ("fp32", "bf16", "bf16-batch-x2", "gen-teacher", "gen-student")]
    reps = [_rep("fp32", 0, 10.0, 8, 800, 0.1), _rep("fp32", 1, 12.0, 8, 800, 0.1), _rep("fp32", 2, 11.0, 8, 800, 0.1),
            _rep("bf16", 0, 6.0, 8, 800, 0.05), _rep("bf16", 1, 5.0, 8, 800, 0.05),
            _rep("bf16-batch-x2", 0, 11.0, 16, 1600, 0.1),
            _rep("gen-teacher", 0, 4.0, 8, 128, 0.1), _rep("gen-student", 0, 1.0, 8, 128, 0.04)]
    rows = {r.setting: r for r in summarise(sts, reps, "fp32")}
    assert rows["fp32"].j_per_step == 11.0 and (rows["fp32"].j_per_step_min, rows["fp32"].j_per_step_max) == (10, 12)
    assert rows["bf16"].j_per_step == 5.5 and rows["bf16"].saving_pct == pytest.approx(50.0)  # 5.5/8 vs 11/8
    assert rows["bf16"].speedup == pytest.approx(2.0)
    # twice the batch: 11 J a step for 16 samples = 0.6875 J/sample against 1.375: half the energy per sample
    assert rows["bf16-batch-x2"].saving_pct == pytest.approx(50.0)
    assert rows["gen-teacher"].saving_pct == pytest.approx(0.0)  # the teacher is the generation baseline
    assert rows["gen-student"].saving_pct == pytest.approx(75.0) and rows["gen-student"].speedup == pytest.approx(2.5)


def test_unknown_setting_is_one_line_with_suggestions():
    with pytest.raises(GreentrackError, match=r"unknown study setting 'bf61'.*did you mean: bf16"):
        select("fp32,bf61")
    assert [s.name for s in select("quick")] == ["fp32", "bf16", "bf16-lora-r8", "bf16-ckpt", "gen-teacher",
                                                 "gen-student"]


def test_the_whole_study_runs_on_the_mock_backend(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    out = tmp_path / "study.json"
    t0 = time.perf_counter()
    r = cli("study", "--size", "tiny", "--reps", "2", "--seconds", "0.2", "--json", str(out))
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert elapsed < 120, f"the CI study took {elapsed:.0f} s"  # a guard against blow-ups; figures in docs/study.md
    assert "SIMULATED power" in r.stdout
    doc = json.loads(out.read_text())
    ran = {row["setting"] for row in doc["rows"] if not row["skipped"]}
    skipped = {row["setting"]: row["skipped"] for row in doc["rows"] if row["skipped"]}
    assert ran | set(skipped) == {s.name for s in STANDARD}
    assert "fp8" in skipped and "compute capability" in skipped["fp8"]  # no GPU here: says why
    assert {"bf16-lora-r8", "bf16-lora-r64"} <= ran  # peft is a test dependency
    # interleaved: the second repetition starts with the second setting
    order = [(r_["rep"], r_["setting"]) for r_ in doc["reps"]]
    firsts = [s for rep, s in order if rep == 0][:1] + [s for rep, s in order if rep == 1][:1]
    assert firsts[0] != firsts[1]
    for row in doc["rows"]:
        if not row["skipped"]:
            assert row["reps"] == 2 and row["j_per_step"] > 0 and row["steps_per_s"] > 0
    runs = greentrack.runs(tags={"study": doc["study_id"]})
    assert len(runs) == 2 * len(ran)
    assert set(runs["tags"].map(lambda t: t["setting"])) == ran
    # the stored study compared as one table, and in the HTML report with its chart
    d = cli("diff", "--study", doc["study_id"])
    assert d.returncode == 0 and "fp32 (baseline)" in d.stdout and "energy saved" in d.stdout
    h = cli("report", "--study", doc["study_id"], "--format", "html", "-o", str(tmp_path / "s.html"))
    assert h.returncode == 0, h.stderr
    page = (tmp_path / "s.html").read_text()
    assert f"Study {doc['study_id']}" in page and "energy against time per setting" in page


def test_tune_falls_back_to_a_study_where_limits_cannot_change(cli, tmp_path, monkeypatch):
    """No NVML here: greentrack tune says so plainly and compares batch size and precision instead."""
    pytest.importorskip("pynvml")
    monkeypatch.setenv("GREENTRACK_BACKEND", "mock")
    monkeypatch.setenv("GREENTRACK_GPU_STATE", str(tmp_path / "state.json"))
    r = cli("tune", "--size", "tiny", "--reps", "1", "--seconds", "0.1")
    try:
        import pynvml

        pynvml.nvmlInit()
        pytest.skip("this machine has NVML: the refusal path is tested against the stand-in")
    except Exception:
        pass
    assert r.returncode == 0, r.stderr
    assert "GPU power limits cannot be changed here" in r.stderr
    assert "bf16-batch-x2" in r.stdout and "fp32" in r.stdout
    r2 = cli("tune", "--no-fallback", "--reps", "1")
    assert r2.returncode == 2 and r2.stderr.count("\n") == 1 and "cannot be changed here" in r2.stderr
