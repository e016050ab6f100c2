"""The metric families, built from :class:`~greentrack_prometheus.state.Snapshot` objects at scrape time.

A custom ``prometheus_client`` collector: a scrape copies the values the exporter already holds
(the sampler's last flush, or the store's last read) and formats them. It never reads a device and
never runs on the training thread.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .state import Snapshot

RUN_LABELS = ("run", "run_id", "job_id", "rank", "host")

#: every metric name a scrape can show, as it appears in Prometheus (counters with ``_total``)
METRIC_NAMES = (
    "greentrack_energy_joules_total",
    "greentrack_co2e_grams_total",
    "greentrack_power_watts",
    "greentrack_steps_total",
    "greentrack_device_info",
    "greentrack_grid_intensity_grams_per_kwh",
    "greentrack_pue",
    "greentrack_run_start_time_seconds",
    "greentrack_run_end_time_seconds",
    "greentrack_store_up",
)

HELP = {
    "energy": "Energy drawn by the device during the run, measured (how: greentrack_device_info method), "
              "counted under the innermost phase open when it was drawn.",
    "co2e": "Operational CO2e of that energy, modelled: energy x PUE x grid intensity "
            "(the intensity, its source and year: greentrack_grid_intensity_grams_per_kwh).",
    "power": "Average power of the device over the sampler's last flush interval (measured).",
    "steps": "Training steps marked with session.step() so far.",
    "device": "A measured device: model, UUID, and the method of its energy (counter, buffer, instant, average, "
              "estimate).",
    "intensity": "Grid carbon intensity used for the run's CO2e, with its region and source (name, year).",
    "pue": "Power usage effectiveness applied to the run's energy for CO2e.",
    "start": "Start of the run, unix time.",
    "end": "End of the run, unix time (shown during the grace period after it ended).",
    "store_up": "1 when serve-metrics last read the greentrack store successfully, else 0.",
}


def families(snaps: Iterable[Snapshot], with_phase: bool = True) -> list[Metric]:
    """The metric families of *snaps* (without ``phase`` labels for the node-level endpoint)."""
    dev_labels = (*RUN_LABELS, "device", *(("phase",) if with_phase else ()))
    energy = CounterMetricFamily("greentrack_energy_joules", HELP["energy"], labels=dev_labels, unit="joules")
    co2e = CounterMetricFamily("greentrack_co2e_grams", HELP["co2e"], labels=dev_labels, unit="grams")
    power = GaugeMetricFamily("greentrack_power_watts", HELP["power"], labels=dev_labels, unit="watts")
    steps = CounterMetricFamily("greentrack_steps", HELP["steps"], labels=RUN_LABELS)
    info = GaugeMetricFamily("greentrack_device_info", HELP["device"],
                             labels=(*RUN_LABELS, "device", "model", "uuid", "method"))
    intensity = GaugeMetricFamily("greentrack_grid_intensity_grams_per_kwh", HELP["intensity"],
                                  labels=(*RUN_LABELS, "region", "source"))
    pue = GaugeMetricFamily("greentrack_pue", HELP["pue"], labels=RUN_LABELS)
    start = GaugeMetricFamily("greentrack_run_start_time_seconds", HELP["start"], labels=RUN_LABELS, unit="seconds")
    end = GaugeMetricFamily("greentrack_run_end_time_seconds", HELP["end"], labels=RUN_LABELS, unit="seconds")
    for s in snaps:
        lab = list(s.labels)
        for dev, ph, joules in s.energy:
            dl = [*lab, dev, *((ph,) if with_phase else ())]
            energy.add_metric(dl, joules)
            if s.co2e_g_per_j is not None:
                co2e.add_metric(dl, joules * s.co2e_g_per_j)
        for dev, ph, watts in s.power:
            power.add_metric([*lab, dev, *((ph,) if with_phase else ())], watts)
        if s.steps is not None:
            steps.add_metric(lab, s.steps)
        for d in s.devices:
            info.add_metric([*lab, d.key, d.model, d.uuid, d.method], 1.0)
        if s.intensity_g_per_kwh is not None:
            intensity.add_metric([*lab, s.region, s.intensity_source], s.intensity_g_per_kwh)
        pue.add_metric(lab, s.pue)
        if s.started_at is not None:
            start.add_metric(lab, s.started_at)
        if s.ended_at is not None:
            end.add_metric(lab, s.ended_at)
    return [energy, co2e, power, steps, info, intensity, pue, start, end]


class RunsCollector(Collector):
    """A ``prometheus_client`` collector over a function that returns the snapshots of one scrape.

    ``extra`` adds families of its own (the node-level endpoint's ``greentrack_store_up``).
    """

    def __init__(self, snapshots: Callable[[], list[Snapshot]], with_phase: bool = True,
                 extra: Callable[[], list[Metric]] | None = None) -> None:
        self._snapshots = snapshots
        self.with_phase = with_phase
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshots(), self.with_phase)
        if self._extra is not None:
            yield from self._extra()

    def describe(self) -> Iterator[Metric]:
        """The families without samples (what a registry checks for duplicate names)."""
        yield from families((), self.with_phase)


def store_up(ok: bool) -> Metric:
    """``greentrack_store_up``: whether the last read of the store worked."""
    g = GaugeMetricFamily("greentrack_store_up", HELP["store_up"])
    g.add_metric([], 1.0 if ok else 0.0)
    return g


def exposition(collector: Any) -> str:
    """The text a scrape of *collector* alone returns (Prometheus text format 0.0.4)."""
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return generate_latest(reg).decode("utf-8")
