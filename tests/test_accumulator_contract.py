"""The energy accumulator's contract at its edges: each test kills mutants that the rest of the suite let live.

``Accumulator`` turns raw power samples into exact cumulative energy (what totals, phases and steps
are attributed from) and 10 Hz interval averages (what is stored). Its promises, checked here against
hand-computed values: zero-watt samples count; the compressed cumulative series stays within
``tolerance_j`` of the exact one at every raw sample; storage buckets are 0.1 s; a gap or the end of
the run closes the partial bucket; ``n_raw`` counts what was accepted.
"""

from __future__ import annotations

import random

import pytest
from oracles import trapezoid_j

from greentrack.measure import energy as E


def test_counter_that_did_not_move_is_zero_not_a_wrap_or_a_reset() -> None:
    """Kills ``end_j > start_j``: an unchanged counter read as a full RAPL wrap (or an NVML reset)."""
    assert E.counter_delta_j(5000.0, 5000.0) == (0.0, False)
    assert E.counter_delta_j(5000.0, 5000.0, wrap_j=262143.32885) == (0.0, False)


def test_zero_watt_samples_are_energy_samples() -> None:
    """Kills ``p <= 0`` in the sample filter: an idle reading of 0 W is data, not noise."""
    acc = E.Accumulator()
    for t, p in [(0.0, 0.0), (1.0, 0.0), (2.0, 100.0)]:
        acc.add(t, p)
    assert acc.n_raw == 3
    assert acc.cum_j == pytest.approx(50.0)  # 0 J, then the 0 -> 100 W ramp over 1 s
    assert acc.series_energy_j(0.0, 1.0) == 0.0


def test_n_raw_counts_exactly_the_accepted_samples() -> None:
    """Kills ``n_raw`` starting at 1 (or at 2 on the first sample), ``+= 1`` dropped or changed, and a repeated
    timestamp taken as a new sample (``t < last_t``): ``n_raw`` is stored as the device's ``n_samples`` and
    tells attribution whether a device was read at all."""
    acc = E.Accumulator()
    assert acc.n_raw == 0
    assert acc.series_energy_j(0.0, 10.0) == 0.0
    for t, p in [(0.0, 10.0), (0.1, 10.0), (0.05, 10.0), (0.2, float("nan")), (0.2, 10.0), (0.3, 10.0),
                 (0.3, 99.0)]:
        acc.add(t, p)
    assert acc.n_raw == 4  # the out-of-order, the NaN and the repeated-timestamp samples are not counted
    assert acc.last_p == 10.0 and acc.peak_w == 10.0


def test_peak_is_the_highest_accepted_sample() -> None:
    acc = E.Accumulator()
    for t, p in [(0.0, 120.0), (0.1, 80.0), (0.2, 300.0), (0.3, 299.0)]:
        acc.add(t, p)
    assert acc.peak_w == 300.0


def test_storage_buckets_are_a_tenth_of_a_second_by_default() -> None:
    """Kills a default ``resolution_s`` other than 0.1 (the stored series is 10 Hz, ~100 KB per GPU-hour) and a
    default door tolerance other than 0.1 J (the attribution series' promise per point)."""
    acc = E.Accumulator()
    assert acc.tolerance_j == 0.1
    for i in range(51):  # 1 s at 50 Hz
        acc.add(i * 0.02, 250.0)
    acc.close()
    pts = acc.take_pending()
    assert len(pts) == 10
    assert [round(t, 6) for t, _ in pts] == [round(0.1 * k, 6) for k in range(1, 11)]
    assert all(p == pytest.approx(250.0) for _, p in pts)


def test_a_bucket_is_closed_at_exactly_its_resolution() -> None:
    """Kills ``>`` for ``>=`` in the bucket test: a sample landing exactly on the bucket's end closes it."""
    acc = E.Accumulator(resolution_s=1.0)
    acc.add(0.0, 100.0)
    acc.add(0.999, 100.0)  # 1.0 x 0.999: the jitter allowance, exactly
    assert acc.take_pending() == [(0.999, pytest.approx(100.0))]


def _exact_cumulative(times: list[float], powers: list[float]) -> list[float]:
    return [trapezoid_j(times[: i + 1], powers[: i + 1]) for i in range(len(times))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compressed_series_stays_within_tolerance_at_every_raw_sample(seed: int) -> None:
    """The swinging door's promise, at every raw point of a bursty trace: kills a door started from a
    wrong anchor (energy or time), a wrong tolerance, or slopes compared the wrong way."""
    rng = random.Random(seed)
    times, powers = [], []
    t, p = 100.0, 80.0
    for _ in range(600):  # 12 s at 50 Hz: idle, bursts, ramps
        t += 0.02
        if rng.random() < 0.05:
            p = rng.choice([70.0, 350.0, 690.0])
        p = max(0.0, p + rng.uniform(-3.0, 3.0))
        times.append(t)
        powers.append(p)
    acc = E.Accumulator()
    for a, b in zip(times, powers):
        acc.add(a, b)
    exact = _exact_cumulative(times, powers)
    worst = max(abs(acc.cumulative_j(a) - c) for a, c in zip(times, exact))
    assert worst <= acc.tolerance_j + 1e-9
    assert len(acc.times) < len(times) / 2  # and it does compress


def test_the_newest_sample_counts_when_the_power_just_changed() -> None:
    """Kills ``cumulative_j`` reading the compressed series without its pending newest point: after 1 s at
    100 W and a drop to 0 W, the energy so far is 101 J (the last 20 ms ramp), not 100 J extended at 0 W."""
    acc = E.Accumulator()
    for i in range(51):
        acc.add(i * 0.02, 100.0)
    acc.add(1.02, 0.0)
    assert acc.cumulative_j(1.02) == pytest.approx(101.0)
    assert acc.series_energy_j(0.0, 1.02) == pytest.approx(101.0)


def test_a_point_exactly_at_the_tolerance_is_dropped() -> None:
    """Both bounds of the door are inclusive: kills ``lo < slope`` and ``slope < hi``.

    Cumulative energy 0, 10, then 19 (21): the line from 0 to the third point passes the second at
    9.5 (10.5), exactly 0.5 J from it, which a 0.5 J tolerance still allows: the second is dropped.
    """
    for p2, c2 in ((8.0, 19.0), (12.0, 21.0)):
        acc = E.Accumulator(tolerance_j=0.5)
        for t, p in [(0.0, 10.0), (1.0, 10.0), (2.0, p2)]:
            acc.add(t, p)
        assert acc.cumulative_j(2.0) == c2
        assert list(acc.times) == [0.0, 2.0] and list(acc.cums) == [0.0, c2]
        # one step further, the door is still open from t=0: a far point is then kept
        acc = E.Accumulator(tolerance_j=0.4)
        for t, p in [(0.0, 10.0), (1.0, 10.0), (2.0, p2)]:
            acc.add(t, p)
        acc.cumulative_j(2.0)
        assert list(acc.times) == [0.0, 1.0, 2.0]


def test_a_gap_closes_the_partial_bucket() -> None:
    """Kills a ``gap()`` that does not emit the bucket it interrupts (the stored series would average the
    power before the gap with the bridge over it) and conditions that fail on a fresh accumulator."""
    fresh = E.Accumulator()
    fresh.gap()  # nothing read yet: nothing to close, no error
    fresh.close()
    assert fresh.take_pending() == []
    acc = E.Accumulator()
    for i in range(13):  # 0 .. 0.24 s at 200 W
        acc.add(i * 0.02, 200.0)
    acc.gap()
    pts = acc.take_pending()
    assert [round(t, 6) for t, _ in pts] == [0.1, 0.2, 0.24]
    assert pts[-1][1] == pytest.approx(200.0)
    acc.gap()  # a second gap at once: the bucket is already closed
    assert acc.take_pending() == []
    # the device answers again 1 s later, at 400 W: the bridge over the gap is a bucket of its own
    acc.add(1.24, 400.0)
    acc.add(1.36, 400.0)
    pts = acc.take_pending()
    assert [(round(t, 6), round(w, 6)) for t, w in pts] == [(1.24, 300.0), (1.36, 400.0)]


def test_close_flushes_the_partial_bucket() -> None:
    """Kills a ``close()`` that loses the run's last fraction of a bucket (the stored series would end early)."""
    acc = E.Accumulator()
    for i in range(13):  # 0 .. 0.24 s at 300 W
        acc.add(i * 0.02, 300.0)
    acc.close()
    pts = acc.take_pending()
    assert [round(t, 6) for t, _ in pts] == [0.1, 0.2, 0.24]
    stored_j = sum(p * (t - (pts[i - 1][0] if i else 0.0)) for i, (t, p) in enumerate(pts))
    assert stored_j == pytest.approx(acc.cum_j) and acc.cum_j == pytest.approx(300.0 * 0.24)
    acc.close()
    assert acc.take_pending() == []


# ---- the pure functions: interpolation, stored averages, percentiles, reconciliation ----------------

def test_cumulative_at_holds_the_edge_powers_outside_the_span() -> None:
    """Kills the edge terms of ``cumulative_at``: the first time for the first power, the last cumulative
    value for the last power, a single point, and the documented default of holding nothing."""
    times, cums = [10.0, 11.0, 12.0], [0.0, 100.0, 250.0]
    assert E.cumulative_at(times, cums, 9.0, first_p=50.0, last_p=150.0) == -50.0
    assert E.cumulative_at(times, cums, 13.0, first_p=50.0, last_p=150.0) == 400.0
    assert E.cumulative_at(times, cums, 11.5, first_p=50.0, last_p=150.0) == 175.0
    assert E.cumulative_at(times, cums, 9.0) == 0.0 and E.cumulative_at(times, cums, 13.0) == 250.0
    assert E.cumulative_at([], [], 5.0, 10.0, 10.0) == 0.0
    assert E.cumulative_at([5.0], [0.0], 7.0, first_p=30.0, last_p=30.0) == 60.0  # one point: both held


def test_cumulative_from_averages_is_the_rectangles_of_the_stored_series() -> None:
    """Kills every operator of ``cumulative_from_averages`` (the regression check's energy per test)."""
    # interval averages: 100 W over (0, 1], 50 W over (1, 3], 400 W over (3, 3.5]; the first power is unused
    assert E.cumulative_from_averages([0.0, 1.0, 3.0, 3.5], [999.0, 100.0, 50.0, 400.0]) == [0.0, 100.0, 200.0,
                                                                                              400.0]
    assert E.cumulative_from_averages([2.0], [100.0]) == [0.0]


def test_percentile_interpolates_between_two_values_and_is_zero_for_none() -> None:
    """Kills ``len == 2`` for ``len == 1``, a non-zero empty percentile and the top index unclamped (q=100);
    p50 of the steps is the 50th."""
    assert E.percentile([], 50) == 0.0
    assert E.percentile([7.0], 95) == 7.0
    assert E.percentile([1.0, 3.0], 50) == 2.0
    assert E.percentile([1.0, 2.0, 3.0], 100) == 3.0 and E.percentile([1.0, 2.0, 3.0], 0) == 1.0
    s = E.step_stats([0.0, 100.0], samples=None, tokens=None)
    assert s["p50_j"] == 50.0 and s["p95_j"] == 95.0


def test_reconcile_scale_applies_to_series_under_one_joule() -> None:
    """Kills ``series_j <= 1``: a series of a fraction of a joule is scaled to its counter like any other."""
    assert E.reconcile_scale(0.5, 1.0) == 2.0
    assert E.reconcile_scale(0.0, 1.0) == 1.0 and E.reconcile_scale(-1.0, 1.0) == 1.0


# ---- interval means (RAPL, the CPU model): add_mean ------------------------------------------------------

def test_interval_means_are_rectangles_and_bad_ones_are_dropped() -> None:
    """Each sample is the mean power since the one before: 100 W over the first second, 10 W over the next
    two: 120 J (a trapezoid would give 75 + 110). 0 W counts; NaN, negative, infinite, repeated and
    out-of-order samples are dropped. Kills the integration's sign, operator and the filter's edges."""
    acc = E.Accumulator()
    for t, p in [(0.0, 50.0), (1.0, 100.0), (1.0, 999.0), (0.5, 999.0), (3.0, 10.0), (3.5, float("nan")),
                 (3.5, -1.0), (3.5, float("inf")), (4.0, 0.0), (4.5, 0.5)]:
        acc.add_mean(t, p)
    assert acc.cum_j == pytest.approx(100.0 + 20.0 + 0.0 + 0.25)
    assert acc.series_energy_j(0.0, 1.0) == pytest.approx(100.0)
    assert acc.series_energy_j(1.0, 3.0) == pytest.approx(20.0)
    assert acc.series_energy_j(3.0, 4.0) == 0.0
    assert acc.n_raw == 5 and acc.peak_w == 100.0 and acc.last_p == 0.5
    assert acc.head == (4.5, pytest.approx(120.25), 0.5)  # what the live figures read


def test_interval_means_stay_within_tolerance_in_the_compressed_series() -> None:
    """Kills the swinging door skipped for interval means: the attribution series must hold every sample's
    cumulative energy to within tolerance_j (0.1 J), whatever the power does."""
    rnd = random.Random(3)
    acc = E.Accumulator()
    t, exact = 0.0, [(0.0, 0.0)]
    acc.add_mean(0.0, 0.0)
    cum = 0.0
    for _ in range(400):
        dt = rnd.uniform(0.02, 0.3)
        p = rnd.choice([0.0, 35.0, 80.0, 250.0]) + rnd.uniform(0.0, 5.0)
        t += dt
        cum += p * dt
        acc.add_mean(t, p)
        exact.append((t, cum))
    for tt, c in exact:
        assert acc.cumulative_j(tt) == pytest.approx(c, abs=0.1 + 1e-9)
    assert len(acc.times) < len(exact)  # and it is compressed


def test_interval_means_are_stored_in_buckets_of_the_resolution() -> None:
    """A bucket closes at 0.999 x its resolution after the previous one (kills ``>``, the threshold scaled,
    ``t + bucket_t`` and the emit dropped)."""
    acc = E.Accumulator(resolution_s=1.0)
    acc.add_mean(0.0, 100.0)
    acc.add_mean(0.5, 200.0)
    assert acc.pending == []
    acc.add_mean(0.999, 300.0)  # exactly 0.999 x 1 s after the bucket's start
    ((t, p),) = acc.pending
    assert t == 0.999 and p == pytest.approx((100.0 + 300.0 * 0.499) / 0.999)
    acc.add_mean(1.5, 100.0)  # half a bucket after the new one's start (0.999 s)
    assert len(acc.pending) == 1


def test_the_first_sample_publishes_a_head_at_zero_joules() -> None:
    """The live figures read (t, cumulative J, W) of the newest sample: 0 J at the first (kills 1.0)."""
    acc = E.Accumulator()
    acc.add(5.0, 80.0)
    assert acc.head == (5.0, 0.0, 80.0)
    acc.add(6.0, 100.0)
    assert acc.head == (6.0, 90.0, 100.0)


# ---- data gaps: resume and end_in_gap -----------------------------------------------------------------------

def test_a_gap_holds_no_energy_and_the_series_resumes_at_the_next_sample() -> None:
    """gap() at the failed read, resume() at the first sample after: nothing integrated across the gap, the
    power after it held only from the resumed sample. Kills the resumed point not stored, the repeated or
    earlier timestamp accepted, n_raw and the peak not counted, and the head not moved."""
    acc = E.Accumulator()
    acc.add(0.0, 100.0)
    acc.add(1.0, 100.0)
    acc.gap()
    acc.resume(1.0, 500.0)  # not after the newest sample: ignored
    assert acc.n_raw == 2
    acc.resume(3.0, 200.0)
    acc.add(4.0, 200.0)
    assert acc.n_raw == 4 and acc.peak_w == 200.0
    assert acc.cumulative_j(1.0) == pytest.approx(100.0)
    assert acc.cumulative_j(2.0) == pytest.approx(100.0) and acc.cumulative_j(3.0) == pytest.approx(100.0)
    assert acc.series_energy_j(1.0, 3.0) == 0.0
    assert acc.series_energy_j(3.0, 4.0) == pytest.approx(200.0)
    assert acc.head == (4.0, pytest.approx(300.0), 200.0)
    acc.add(5.0, 50.0)
    acc.add(6.0, 400.0)
    exact = {0.0: 0.0, 1.0: 100.0, 2.0: 100.0, 3.0: 100.0, 4.0: 300.0, 5.0: 425.0, 6.0: 650.0}
    assert {t: acc.cumulative_j(t) for t in exact} == {t: pytest.approx(c, abs=0.1) for t, c in exact.items()}
    assert len(acc.times) == len(acc.cums)
    acc2 = E.Accumulator()
    acc2.add(0.0, 10.0)
    acc2.gap()
    acc2.resume(2.0, 40.0)
    assert acc2.head == (2.0, 0.0, 40.0) and acc2.peak_w == 40.0


def test_a_device_read_only_after_a_gap_holds_no_power_before_its_first_sample() -> None:
    """The first sample comes as a resume (the device was in a gap from the start): it dates the start, and
    nothing is extrapolated before it (first power 0, not the sample's). Kills the resume of an empty
    accumulator skipped, taken as a later sample, and its first power."""
    acc = E.Accumulator()
    acc.resume(2.0, 300.0)
    assert acc.n_raw == 1 and acc.first_t == 2.0 and acc.first_p == 0.0
    assert acc.cumulative_j(1.0) == 0.0
    acc.add(3.0, 300.0)
    assert acc.series_energy_j(0.0, 3.0) == pytest.approx(300.0)


def test_a_run_that_ends_in_a_gap_holds_no_power_after_the_last_sample() -> None:
    """Kills the tail power after end_in_gap() at 1 W instead of 0; a resume clears it."""
    acc = E.Accumulator()
    acc.add(0.0, 100.0)
    acc.add(1.0, 100.0)
    acc.end_in_gap()
    assert acc.series_energy_j(1.0, 5.0) == 0.0 and acc.series_energy_j(0.0, 5.0) == pytest.approx(100.0)
    acc.resume(2.0, 100.0)
    assert acc.series_energy_j(2.0, 3.0) == pytest.approx(100.0)
