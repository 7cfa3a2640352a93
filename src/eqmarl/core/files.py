"""Writing output files: atomically, with the permissions of ordinary files.

Every file eqmarl writes itself — a run's ``config.json``, its checkpoints and
``checkpoints/latest``, ``learning_curve.png``, and the outputs of ``eqmarl eval``,
``render``, ``xplay``, ``plot`` and ``plot-curves`` — goes through :func:`atomic_output`:
the bytes go to a temporary file beside the destination (``.<name>.<random>.tmp``), which
is flushed to disk and then renamed over the destination.  A crash, a full disk or a
read-only mount never leaves a partial file under the real name, and an earlier file of
that name stays as it was.  A failure raises :class:`OutputWriteError`, whose message is
one line naming the path and the reason.

Permissions: the temporary file is created like ``open(path, "w")`` creates a file, with
mode ``0o666`` masked by the process umask (``0o644`` under the usual umask ``022``,
``0o600`` under ``077``), so every file of a run has the same permissions as
``metrics.csv`` and hydra's files.  ``tempfile.mkstemp`` is not used: it always makes
``0o600``.

What a command prints on stdout goes through :func:`write_stdout`, so a full disk or a
closed pipe behind a redirection is an :class:`OutputWriteError` too; its JSON through
:func:`json_text` (strict JSON: a NaN is ``null``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

# the mode a new file is created with, before the umask (what open() uses)
FILE_MODE = 0o666


class OutputWriteError(OSError):
    """An output could not be written; nothing was left under its name.

    Args:
        path: the destination (or ``"stdout"``).
        cause: the error of the failed step.
    """

    def __init__(self, path: str | Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = str(path)
        self.reason = cause.strerror or str(cause) or type(cause).__name__

    def __str__(self) -> str:
        return f"cannot write {self.path} ({self.reason})"


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """Create a new empty file beside ``name`` in ``directory`` (mode 0o666 less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = directory / f".{name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, FILE_MODE), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {directory / name}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s content to; renamed to ``path`` when the block ends.

    Missing parent directories are created.  If the block raises, the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: the destination.

    Raises:
        OutputWriteError: a step of the write failed (read-only or full disk, a parent
            that is not a directory...); the message names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path.parent, path.name)
    except OSError as e:
        raise OutputWriteError(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputWriteError):
            raise OutputWriteError(path, e) from e
        raise
    with contextlib.suppress(OSError):  # the file is in place; some file systems cannot fsync a dir
        _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` with :func:`atomic_output`; returns ``path``.

    Args:
        path: the destination.
        data: the whole content.

    Raises:
        OutputWriteError: the write failed; ``path`` is as it was.
    """
    with atomic_output(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def unwritable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be created, seen before anything is written (None: it looks writable).

    Checks the nearest existing ancestor: a non-directory, a read-only mount, no write
    permission.  A full disk shows only when writing.

    Args:
        path: a file to be written (its missing parent directories will be created).
    """
    target = Path(path).absolute()
    if target.is_dir():
        return "it is a directory"
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a directory"
    try:
        if os.statvfs(parent).f_flag & os.ST_RDONLY:
            return f"{parent} is on a read-only file system"
    except OSError:
        pass
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to write in {parent}"
    return None


def write_stdout(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` and a newline to stdout (or ``stream``) now, unbuffered.

    Args:
        text: the output.
        stream: the real stdout when it is redirected (:func:`eqmarl.core.log.stdout_to_stderr`).

    Raises:
        OutputWriteError: stdout refused the bytes (a full disk, a closed pipe).
    """
    out = stream or sys.stdout
    try:
        out.flush()
        try:
            fd = out.fileno()
        except io.UnsupportedOperation:  # not a file descriptor (a test's captured stdout)
            out.write(text + "\n")
            out.flush()
            return
        data = (text + "\n").encode()
        while data:  # straight to the descriptor: nothing stays buffered to fail again at exit
            data = data[os.write(fd, data) :]
    except OSError as e:
        raise OutputWriteError("stdout", e) from e


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON of ``obj``: NaN and infinite numbers (a standard error of one episode) are ``null``.

    Args:
        obj: a JSON-serialisable object.
        indent: as :func:`json.dumps`.
    """
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)
