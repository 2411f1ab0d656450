"""How busy the host was while a run ran: the guard that tells a framework's cost from a machine.

A step time is only a framework's cost when nothing else took the cores. So the parent reads the
host twice per run, at its start and end, and records what other work did in between:

    host_other_cpu_share  CPU time of every process that is not this `bench` process or one of
                          its children, on the cores `bench` may use, over (wall time x cores)
    host_steal_share      the hypervisor's stolen time on those cores, over (wall time x cores)
    load_average_start/end  the 1-minute load average, per core

A run is tagged `contended` when other work took more than OTHER_SHARE_LIMIT of its cores or
the hypervisor stole more than STEAL_LIMIT. The report names such runs under the cost clauses
that rest on them. `bench`'s own worker slots are not "other work": they are the study itself.
The counters are the kernel's own (/proc/stat per core, and each process's CPU time including
its reaped children), so a sample costs a few milliseconds and nothing runs in between.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

# Other work above a fifth of the run's cores, or steal above a tenth: a 2-core run sharing its
# cores with one busy process measures ~0.5; an idle desktop with an editor and a shell ~0.01.
OTHER_SHARE_LIMIT = 0.20
STEAL_LIMIT = 0.10
CONTENDED_TAG = "contended"


@dataclass(frozen=True)
class HostSample:
    """The host's counters at one moment, for the cores `bench` may run on."""

    at: float  # time.monotonic()
    busy: float  # CPU seconds spent on those cores by anything (user, system, irq, ...)
    steal: float  # CPU seconds the hypervisor took from those cores
    ours: float  # CPU seconds of this process and every live or reaped child of it
    load: float  # the 1-minute load average per core


def usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(psutil.cpu_count() or 1))


def _own_cpu_seconds() -> float:
    """This process, its reaped children, and every live process under it (their own reaped
    children included): one number that only grows while the study runs."""
    me = psutil.Process()
    times = me.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # ended between listing and reading: its parent reaps it soon
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def sample(cores: list[int] | None = None) -> HostSample:
    """Read the host's counters now."""
    cores = cores if cores is not None else usable_cores()
    per_core = psutil.cpu_times(percpu=True)
    chosen = [per_core[c] for c in cores if c < len(per_core)]
    busy = sum(t.user + t.nice + t.system + t.irq + t.softirq for t in chosen)
    steal = sum(getattr(t, "steal", 0.0) for t in chosen)
    load = psutil.getloadavg()[0] / max(1, psutil.cpu_count() or 1)
    return HostSample(time.monotonic(), busy, steal, _own_cpu_seconds(), load)


def busy_metrics(start: HostSample, end: HostSample, cores: int) -> dict[str, float]:
    """What other work and the hypervisor took between two samples, as MLflow metrics."""
    capacity = max(end.at - start.at, 1e-9) * max(cores, 1)
    other = (end.busy - start.busy) - (end.ours - start.ours)
    return {
        "host_other_cpu_share": round(min(1.0, max(0.0, other / capacity)), 4),
        "host_steal_share": round(min(1.0, max(0.0, (end.steal - start.steal) / capacity)), 4),
        "load_average_start": round(start.load, 3),
        "load_average_end": round(end.load, 3),
    }


def contention(metrics: dict[str, float]) -> str | None:
    """Why a run's host counts as busy with other work, or None when it was not."""
    reasons = []
    if metrics.get("host_other_cpu_share", 0.0) > OTHER_SHARE_LIMIT:
        reasons.append(
            f"other work took {metrics['host_other_cpu_share']:.0%} of the cores "
            f"(limit {OTHER_SHARE_LIMIT:.0%})"
        )
    if metrics.get("host_steal_share", 0.0) > STEAL_LIMIT:
        reasons.append(
            f"the hypervisor stole {metrics['host_steal_share']:.0%} (limit {STEAL_LIMIT:.0%})"
        )
    return "; ".join(reasons) or None


class HostWatch:
    """One run's reading of the host: made when the job starts, `stop()` when it ends for its
    figures and tags (`contended`, with its reason, when the host was busy)."""

    def __init__(self) -> None:
        self.cores = usable_cores()
        self.started = sample(self.cores)

    def stop(self) -> tuple[dict[str, float], dict[str, str]]:
        metrics = busy_metrics(self.started, sample(self.cores), len(self.cores))
        reason = contention(metrics)
        return metrics, ({CONTENDED_TAG: reason} if reason else {})
