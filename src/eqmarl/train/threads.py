"""How many CPU threads torch uses for training (``train.threads``).

``train.threads=0`` (the default) uses every core this process may run on, which halves
an update on two cores, but only where OpenMP's idle threads sleep
(``OMP_WAIT_POLICY=PASSIVE``, which eqmarl sets before torch loads): with spinning
threads, two processes sharing the cores slow each other down 15-36 times
(docs/results/threads_contention.json).  Where the policy could not be set (torch was
imported before eqmarl, with no ``OMP_WAIT_POLICY`` in the environment) ``0`` means one
thread, with a note.  ``N > 0`` is taken as given.
"""

from __future__ import annotations

import os

import torch

from eqmarl.core.log import get_logger

log = get_logger("train")


def passive_waiting() -> bool:
    """Whether OpenMP's idle threads sleep (``OMP_WAIT_POLICY=PASSIVE`` when torch loaded it)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity: a SLURM task's ``cpus_per_task``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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
