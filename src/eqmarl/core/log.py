"""eqmarl's messages: one standard-library logger, ``eqmarl``, rank-aware, on stderr.

Every module logs through :func:`get_logger` (``eqmarl`` or a child such as
``eqmarl.train``).  Lines read ``[eqmarl] warning: ...`` (``[eqmarl] ...`` at info level);
in a job of several ranks they carry the rank, ``[eqmarl rank 3] warning: ...``, so a
SLURM log that interleaves ranks can be filtered with ``grep 'rank 3\\]'`` and by level
with ``grep '\\] warning:'``.  The rank is read from the launcher's environment
(``RANK``, else ``SLURM_PROCID``; the count from ``WORLD_SIZE``, else ``SLURM_NTASKS``).

``EQMARL_LOG_LEVEL`` (``debug``, ``info``, ``warning``, ``error``; default ``info``) sets
the level.  Messages go to stderr, so stdout carries only a command's own output (the
JSON of ``--json`` commands, the CLI's tables).  An application that configures logging
itself can remove the handler (:data:`HANDLER_NAME`) or set ``propagate``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

LOGGER_NAME = "eqmarl"
HANDLER_NAME = "eqmarl-stderr"
LEVEL_ENV = "EQMARL_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error")


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process from the launcher's environment (``(0, 1)`` alone)."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    world = os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS") or "1"
    try:
        return int(rank), int(world)
    except ValueError:
        return 0, 1


class _Formatter(logging.Formatter):
    """``[eqmarl] <level>: <message>`` (no level word at info), the rank added in multi-rank jobs."""

    def format(self, record: logging.LogRecord) -> str:
        rank, world = process_rank()
        tag = f"[eqmarl rank {rank}]" if world > 1 else "[eqmarl]"
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{tag} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (so redirections and captures see it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.set_name(HANDLER_NAME)
        self.setFormatter(_Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream: that flushes the old stream, which may be closed
        super().emit(record)


def _level() -> int:
    name = os.environ.get(LEVEL_ENV, "info").strip().lower()
    return getattr(logging, name.upper()) if name in LEVELS else logging.INFO


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``eqmarl`` logger (or its child ``eqmarl.<name>``), its stderr handler set up once.

    Args:
        name: a child's name (``train``, ``launch``...), or None for ``eqmarl`` itself.
    """
    root = logging.getLogger(LOGGER_NAME)
    if not any(h.get_name() == HANDLER_NAME for h in root.handlers):
        root.addHandler(_StderrHandler())
        root.setLevel(_level())
        root.propagate = False
    return root.getChild(name) if name else root


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[TextIO]:
    """Send everything written to stdout inside the block to stderr; yield the real stdout.

    Both levels are redirected: ``sys.stdout`` (Python's ``print``, and loggers that bind
    ``sys.stdout`` while the block runs, such as DeepSpeed's at import) and file descriptor
    1 (C libraries, child processes, and printers holding the original stream).  What a
    command means to be read by programs (the JSON of ``--json``) is written to the yielded
    stream, so stdout carries exactly that, whatever dependencies print at import.
    Nested use is fine.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    real = os.fdopen(os.dup(saved), "w", closefd=True)
    os.dup2(2, 1)
    python_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        yield real
    finally:
        sys.stderr.flush()
        sys.stdout = python_stdout
        os.dup2(saved, 1)
        os.close(saved)
        real.close()


def json_main(main: Callable[[], Any]) -> None:
    """Run a machine-readable program: ``main()`` returns its result, printed as the one
    JSON document on stdout; whatever else is written while it runs (progress lines,
    dependencies' chatter, child processes) goes to stderr.

    Args:
        main: the program; returns a JSON-serialisable object, or a string already in JSON.
    """
    import json

    with stdout_to_stderr() as stdout:
        result = main()
        print(result if isinstance(result, str) else json.dumps(result), file=stdout, flush=True)
