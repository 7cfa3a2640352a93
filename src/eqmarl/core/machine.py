"""What machine a figure was measured on: the CPU's model name and core count.

Benchmarks record :func:`machine_info` beside every timing figure, so figures taken on
different machines (the project's CPU VMs are not always the same model) are not compared
by mistake.  ``platform.processor()`` is empty on most Linux systems, so the model name is
read from ``/proc/cpuinfo`` there.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPUs this process may run on (its affinity: a SLURM task's ``cpus_per_task``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, object]:
    """The CPU model, the cores this process may use and the machine's architecture."""
    return {"cpu": cpu_model(), "cores": usable_cores(), "arch": platform.machine()}
