"""Stop requests by SIGINT and SIGTERM, from the first line of ``launch.py`` to the last.

``launch.py`` calls :func:`install` before it imports anything else, so a signal is never
lost, never kills the process without a word and never ends in a traceback:

- **Before a run starts** (imports, hydra's composition, a sweep's submission) a signal
  stops the process at once: the handler raises :class:`StopRequested`, a
  ``BaseException`` (no ``except Exception`` swallows it), which ``launch.py`` turns into
  one line and exit code ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).
- **From :func:`defer` on** (hydra's callback calls it before the run dir is made) the
  handler only records the request and says so; the launcher calls :func:`check` where
  stopping leaves nothing half-written (no half-written config, no stale lock), and the
  trainer takes a pending request over when it starts (it then trains nothing).  While
  training runs, the trainer's own handler defers the stop to the end of the iteration.
- **A second signal aborts** at once (``SystemExit(128 + signal)``; ``finally`` blocks
  still release the run dir's lock), unless :func:`set_abort_on_repeat` turned that off
  (a SLURM job, where SLURM may send SIGTERM more than once).

Standard library only: it is imported before torch, hydra or the config.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from eqmarl.core.log import get_logger

log = get_logger("launch")

# the signals that stop a run (a cluster job keeps its preemption signal, USR2, for itself)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(BaseException):
    """A stop signal arrived: unwind to the launcher, which exits with ``128 + signum``.

    Args:
        signum: the signal (SIGINT or SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(signum)}")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class _State:
    """The process's stop state (one per process)."""

    def __init__(self) -> None:
        self.installed = False
        self.deferred = False
        self.abort_on_repeat = True
        self.requested: int | None = None


_state = _State()


def _handler(signum: int, frame: Any) -> None:
    name = signal_name(signum)
    again = "Ctrl-C" if signum == signal.SIGINT else name
    if _state.requested is not None:
        if not _state.abort_on_repeat:
            log.info(f"{name} again: still stopping at the next safe point")
            return
        log.info(f"{name} again: aborting")
        raise SystemExit(128 + signum)
    _state.requested = signum
    if not _state.deferred:
        log.info(f"stop requested ({name}): stopping now")
        raise StopRequested(signum)
    log.info(f"stop requested ({name}): stopping before training starts ({again} again to abort)")


def install() -> None:
    """Route SIGINT and SIGTERM to this module (``launch.py``'s first statement).

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handler)
    if not _state.installed:
        # at exit Python puts its own handlers back (a late Ctrl-C would kill the process by
        # the signal, -2, instead of the exit code already decided): ignore them from there on
        atexit.register(_ignore_at_exit)
    _state.installed = True


def _ignore_at_exit() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _state.installed


def defer() -> None:
    """From now on a signal is recorded and acted on at the next :func:`check`.

    Installs the handlers if :func:`install` did not (a job that submitit started).

    Raises:
        StopRequested: a signal arrived before (and something swallowed its exception).
    """
    if not _state.installed:
        install()
    _state.deferred = True
    check()


def set_abort_on_repeat(flag: bool) -> None:
    """Whether a second signal aborts (default) or is only noted (a SLURM job)."""
    _state.abort_on_repeat = flag


def requested() -> int | None:
    """The signal that asked this process to stop (None while none did)."""
    return _state.requested


def note(signum: int) -> None:
    """Record a stop another handler received (the trainer's), so a repeat aborts here too."""
    if _state.requested is None:
        _state.requested = int(signum)


def check() -> None:
    """Stop here if a signal asked to.

    Raises:
        StopRequested: with the signal that arrived.
    """
    if _state.requested is not None:
        raise StopRequested(_state.requested)


@contextlib.contextmanager
def exit_on_stop() -> Iterator[None]:
    """Turn a :class:`StopRequested` that arrives before any run started (imports, hydra's
    composition, a sweep's submission) into one line and exit code ``128 + signal``."""
    try:
        yield
    except StopRequested as e:
        print(f"eqmarl: {e} before any run started: nothing was saved or changed", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


def reset() -> None:
    """Forget any request and go back to stopping at once (tests that run launches in process)."""
    _state.requested = None
    _state.deferred = False
    _state.abort_on_repeat = True
