"""Checkpoints: atomic writes, keep the latest N, find the newest readable one.

Layout inside a run directory::

    checkpoints/ckpt_000120.pt    one file per save (iteration number)
    checkpoints/latest            name of the newest complete checkpoint

A file is written to a temporary name, flushed to disk and renamed, so a crash or a
preemption mid-write never leaves a truncated checkpoint under a real name; like every
file of a run it is created with mode 0o666 less the umask (:mod:`eqmarl.core.files`).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import torch

from eqmarl.core.files import atomic_write
from eqmarl.core.log import get_logger

log = get_logger("train")

_NAME = re.compile(r"ckpt_(\d+)\.pt$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same dir + fsync + rename).

    The file gets the permissions of an ordinary file (0o666 less the umask; see
    :mod:`eqmarl.core.files`).

    Raises:
        OutputWriteError: an ``OSError`` naming ``path``; ``path`` is as it was.
    """
    atomic_write(path, data)


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full or read-only disk); the earlier ones are intact."""


def save_checkpoint(run_dir: Path, iteration: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Save ``state`` as ``checkpoints/ckpt_<iteration>.pt``; keep the newest ``keep`` files.

    Raises:
        CheckpointWriteError: the disk refused the write (no space, read-only, file size
            limit).  Nothing was replaced or pruned: the previous checkpoint and ``latest``
            are as they were (the message names them).
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    buf = io.BytesIO()
    torch.save(state, buf)
    path = ckpt_dir / f"ckpt_{iteration:06d}.pt"
    before = list_checkpoints(ckpt_dir)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        prev = f"the previous checkpoint {before[-1]} is intact" if before else "no earlier checkpoint exists"
        err = CheckpointWriteError(
            f"checkpoint not saved: cannot write {path} ({e.strerror or e}); {prev}. "
            f"Free space on that disk or make {ckpt_dir} writable"
        )
        err.errno = e.errno
        raise err from e
    try:
        atomic_write_bytes(ckpt_dir / "latest", path.name.encode())
    except OSError as e:  # the new file is complete; resume picks the newest file, not `latest`
        log.warning(f"saved {path} but could not update {ckpt_dir / 'latest'}: {e}")
        return path
    for old in list_checkpoints(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoint files in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    files = [p for p in ckpt_dir.iterdir() if _NAME.search(p.name)]
    return sorted(files, key=lambda p: int(_NAME.search(p.name).group(1)))  # type: ignore[union-attr]


def resolve_checkpoint(target: str | Path) -> Path:
    """A checkpoint file from a file path, a run directory or its ``checkpoints/`` dir.

    For a directory, the newest checkpoint that loads is returned (a damaged newest file
    falls back to the one before, saying on stderr which file it skipped and why).

    Raises:
        FileNotFoundError: nothing loadable there.
    """
    p = Path(target)
    if p.is_file():
        return p
    ckpt_dir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    skipped = []
    for cand in reversed(list_checkpoints(ckpt_dir)):
        try:
            torch.load(cand, map_location="cpu", weights_only=False)
        except Exception as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
            log.warning(f"skipping checkpoint {cand}: it does not load ({why})")
            skipped.append(cand.name)
            continue
        if skipped:
            log.info(f"using the newest readable checkpoint {cand}")
        return cand
    why = f" (unreadable: {', '.join(skipped)})" if skipped else ""
    raise FileNotFoundError(f"resume={str(target)!r}: no readable checkpoint in {ckpt_dir}{why}")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=False)


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to."""
    checkpoint = Path(checkpoint).resolve()
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


# what a policy export keeps of a checkpoint: what `eqmarl eval`/`render`/`xplay` load (no optimizer, RNG, envs)
POLICY_KEYS = ("format", "config", "policy", "value_norm", "iteration", "env_steps", "wall_s", "last_eval")


def export_policy(checkpoint: Path, dest: Path) -> dict[str, Any]:
    """Write ``checkpoint``'s policy as a run directory that ``eqmarl eval`` loads: ``dest/config.json``
    and ``dest/checkpoints/ckpt_<iteration>.pt`` (+ ``latest``) with :data:`POLICY_KEYS` only.

    The policy is the checkpoint's plain (consolidated) state dict, whatever the learner.

    Returns:
        metadata: iteration, env steps, env and model names, the last evaluation.
    """
    import json
    import math

    state = load_checkpoint(checkpoint)
    slim = {k: state[k] for k in POLICY_KEYS if k in state}
    iteration = int(slim.get("iteration", 0))
    name = f"ckpt_{iteration:06d}.pt"
    buf = io.BytesIO()
    torch.save(slim, buf)
    atomic_write_bytes(Path(dest) / "checkpoints" / name, buf.getvalue())
    atomic_write_bytes(Path(dest) / "checkpoints" / "latest", name.encode())
    cfg = slim.get("config") or {}
    atomic_write_bytes(Path(dest) / "config.json", json.dumps(cfg, indent=2).encode())
    return {
        "iteration": iteration,
        "env_steps": int(slim.get("env_steps", 0)),
        "env": (cfg.get("env") or {}).get("name"),
        "model": (cfg.get("model") or {}).get("name"),
        "last_eval": {
            k: v for k, v in (slim.get("last_eval") or {}).items() if isinstance(v, (int, float)) and math.isfinite(v)
        },
    }
