"""How many CPU threads torch uses for training (``train.threads``).

``train.threads=0`` (the default) uses every core this process may run on, but only where
OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``, which eqmarl sets before torch
loads, with a ~10 us spin first: ``GOMP_SPINCOUNT``, see ``eqmarl/__init__.py``): with
threads that spin for milliseconds, two processes sharing the cores slow each other down
15-36 times (docs/results/threads_contention.json).  Where the policy could not be set (torch was
imported before eqmarl, with no ``OMP_WAIT_POLICY`` in the environment) ``0`` means one
thread, with a note.  ``N > 0`` is taken as given.

Even with sleeping threads, two threads on two cores lose to one thread while another
process keeps one of those cores busy: every operator waits at its barrier for the thread
that shares a core.  So ``0`` also adapts (:class:`AdaptiveThreads`): after each training
iteration it reads how much CPU other processes used on this process's cores during it
(``/proc/stat`` minus this process's own CPU time) and trains the next iteration on the
cores they left free (at least one).  The thread count does not change the arithmetic of
the default runs (the same metrics bit for bit at one and two threads, MPE and SMAX), so
adapting changes only the speed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from eqmarl.core.log import get_logger
from eqmarl.core.machine import usable_cores

log = get_logger("train")


def passive_waiting() -> bool:
    """Whether OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE`` when torch loaded it)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def resolve_threads(requested: int) -> int:
    """The intra-op thread count for ``train.threads=requested`` (see the module docstring)."""
    if requested > 0:
        return requested
    if passive_waiting():
        return usable_cores()
    log.info(
        "train.threads=0 uses one thread here: OMP_WAIT_POLICY is not PASSIVE (torch was loaded before eqmarl "
        "could set it); set OMP_WAIT_POLICY=PASSIVE in the environment to train on every core"
    )
    return 1


def set_threads(requested: int) -> int:
    """Apply :func:`resolve_threads` to torch; returns the thread count in use."""
    n = resolve_threads(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _cpu_busy_s(cpus: set[int]) -> float | None:
    """Seconds the CPUs ``cpus`` have spent busy since boot (``/proc/stat``; None elsewhere).

    Busy is user, nice, system, irq and softirq time; idle, I/O wait and a hypervisor's
    steal are not.
    """
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            f = [int(x) for x in rest.split()]
            ticks += f[0] + f[1] + f[2] + f[5] + f[6]  # user nice system (idle iowait) irq softirq
    return ticks / os.sysconf("SC_CLK_TCK")


class AdaptiveThreads:
    """``train.threads``: a fixed count, or (``0``) every usable core that no other process
    keeps busy, re-decided after each iteration (see the module docstring).

    Args:
        requested: ``train.threads``.
    """

    # another process counts as holding a core once it used 0.6 of one on average
    ROUND_UP = 0.4

    def __init__(self, requested: int) -> None:
        self.max_threads = set_threads(requested)
        self.current = self.max_threads
        try:
            self.cpus = os.sched_getaffinity(0)
        except AttributeError:  # pragma: no cover - not Linux
            self.cpus = set()
        self.adaptive = requested == 0 and self.max_threads > 1 and _cpu_busy_s(self.cpus) is not None
        self._noted = False
        self.last_others: float | None = None  # what the last step() read
        self._sample = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall s, this process's CPU s, its cores' busy s), or None where unreadable."""
        busy = _cpu_busy_s(self.cpus)
        return None if busy is None else (time.perf_counter(), time.process_time(), busy)

    def start(self) -> None:
        """Begin measuring (the first iteration's other-process load)."""
        if self.adaptive:
            self._sample = self._read()

    def others(self) -> float | None:
        """Cores' worth of CPU other processes used on this process's cores since the last
        :meth:`start` or :meth:`step` (None where it cannot be read)."""
        return self._others_until(self._read())

    def _others_until(self, now: tuple[float, float, float] | None) -> float | None:
        if now is None or self._sample is None:
            return None
        wall = now[0] - self._sample[0]
        if wall <= 0:
            return None
        return max(0.0, (now[2] - self._sample[2]) - (now[1] - self._sample[1])) / wall

    def step(self) -> int:
        """After an iteration: the thread count for the next one (applied to torch)."""
        if not self.adaptive:
            return self.current
        now = self._read()  # one /proc/stat read per iteration: the end of this window, the start of the next
        others = self.last_others = self._others_until(now)
        self._sample = now
        if others is None:
            return self.current
        n = min(self.max_threads, max(1, len(self.cpus) - math.floor(others + self.ROUND_UP)))
        if n != self.current:
            torch.set_num_threads(n)
            if n < self.max_threads and not self._noted:
                self._noted = True
                log.info(
                    f"train.threads=0: other processes use {others:.1f} of this process's {len(self.cpus)} cores; "
                    f"training on {n} thread(s) while they do (re-decided after every iteration)"
                )
            self.current = n
        return n
