"""The Python API: budgets validated like the CLI, ``fn.last_result`` of @track, and the page documenting them."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

import greentrack
from greentrack.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


@pytest.mark.parametrize("kw", [{"budget_kwh": -1}, {"budget_kwh": math.nan}, {"budget_kwh": math.inf},
                                {"budget_co2e_kg": -0.1}, {"budget_co2e_kg": "lots"}, {"budget_kwh": True}])
@pytest.mark.parametrize("strict", [False, True])
def test_bad_budgets_are_one_line_errors(kw, strict):
    with pytest.raises(ConfigError) as exc:
        greentrack.Session("b", strict=strict, **kw)
    msg = str(exc.value)
    assert "must be a finite number >= 0" in msg and "\n" not in msg
    with pytest.raises(ConfigError):
        greentrack.track("b", **kw)


def test_good_budgets_are_kept_as_floats():
    s = greentrack.Session("b", budget_kwh=0, budget_co2e_kg="0.5")
    assert s.budget_kwh == 0.0 and s.budget_co2e_kg == 0.5


def test_last_result_is_set_after_each_call_even_a_failed_one():
    @greentrack.track("decorated", backend="mock", region="FR")
    def train(fail: bool = False) -> int:
        time.sleep(0.05)
        if fail:
            raise RuntimeError("diverged")
        return 7

    assert train.last_result is None
    assert train() == 7
    first = train.last_result
    assert first.status == "finished" and first.name == "decorated" and first.energy_j > 0
    with pytest.raises(RuntimeError):
        train(fail=True)
    assert train.last_result.status == "failed" and train.last_result.run_id != first.run_id


def test_python_api_page_documents_last_result_budgets_and_progress():
    text = DOCS.read_text(encoding="utf-8")
    for needle in ("fn.last_result", "budget_kwh", "budget_co2e_kg", "budget_exceeded", "greentrack_budget_exceeded",
                   "progress=True", "live_energy_j", "strict"):
        assert needle in text, needle
