"""Metrics sinks: CSV, Weights & Biases, progress bar.  Only rank 0 creates a Logger.

W&B runs online when an API key is configured, else offline (files under
``<run_dir>/wandb``; upload later with ``eqmarl sync``); ``logger.wandb_mode`` or
``WANDB_MODE`` force a mode, ``logger.wandb_mode=disabled`` turns it off.  Charts are keyed on ``env_steps``.
A server that does not answer within ``logger.wandb_init_timeout_s`` turns the run offline (a warning says so).
The API key is read by wandb from the environment; it is never written by eqmarl.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, Literal, cast

from eqmarl.core.log import get_logger

log = get_logger("train")

# Columns of metrics.csv, in order; a metric not in this list is appended after them.
CSV_COLUMNS = [
    "iteration",
    "env_steps",
    "wall_s",
    "steps_per_s",
    "train_return",
    "eval_return",
    "eval_return_se",
    "eval_length",
    "loss",
    "pg_loss",
    "v_loss",
    "entropy",
    "approx_kl",
    "clipfrac",
    "explained_var",
    "grad_norm",
    "lr",
    "rollout_s",
    "update_s",
    # SMACv2: win rate of the training episodes that ended, and of the evaluation
    "win_rate",
    "eval_win_rate",
    "eval_win_rate_se",
    # games or env worker processes restarted after a crash or a hang during the iteration
    "env_restarts",
    # of those, env workers killed for not answering within their timeout (hung)
    "env_timeouts",
    # optimizer steps skipped for a non-finite loss or gradient (eqmarl.train.nonfinite)
    "nonfinite_skips",
]


class CsvLogger:
    """Appends one row per log call to ``metrics.csv`` (fixed header)."""

    def __init__(self, path: Path, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.columns = list(CSV_COLUMNS)
        if resume_iteration is not None and self.path.exists():
            self._truncate_after(resume_iteration)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)

    def _truncate_after(self, iteration: int) -> None:
        """Drop rows logged after the checkpoint we resume from (they will be redone)."""
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if r.get("iteration") and int(float(r["iteration"])) <= iteration]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)

    def log(self, metrics: dict[str, float]) -> None:
        row = ["" if metrics.get(c) is None else _fmt(metrics[c]) for c in self.columns]
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(row)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def wandb_key_configured() -> bool:
    """True when W&B has an API key: ``WANDB_API_KEY`` or a ``wandb login`` netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
        return any("wandb" in host for host in netrc.netrc(path).hosts)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def new_wandb_run_id() -> str:
    """A fresh W&B run id (8 random lowercase letters and digits, like wandb's own)."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


WandbMode = Literal["online", "offline", "disabled"]


def resolve_wandb_mode(mode: str) -> str:
    """``auto`` -> ``online`` with a key, else ``offline``; ``WANDB_MODE`` wins over the config."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    if mode == "auto":
        return "online" if wandb_key_configured() else "offline"
    return mode


class WandbLogger:
    """A W&B run that continues across resumes (same id).

    Online, the server gets ``cfg.wandb_init_timeout_s`` seconds to answer; a server that
    does not (unreachable, refusing, hanging) turns the run offline with a warning: its
    files go to ``<run_dir>/wandb`` under the same run id, and ``eqmarl sync <run dir>``
    uploads them later.  ``offline_fallback`` says whether that happened.
    """

    def __init__(
        self,
        cfg,
        run_dir: Path,
        config_dict: dict[str, Any],
        run_id: str | None,
        name: str | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError as e:  # pragma: no cover
            raise ImportError("logger.wandb_mode needs wandb: pip install wandb (or logger.wandb_mode=disabled)") from e
        self._wandb = wandb
        mode = resolve_wandb_mode(cfg.wandb_mode)
        # chosen here, so an offline fallback keeps the id the online run would have had
        run_id = run_id or new_wandb_run_id()
        self.offline_fallback = False

        def init(mode: str, **settings: Any):
            return wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                group=cfg.group,
                job_type=cfg.job_type,
                tags=list(cfg.tags) or None,
                config=config_dict,
                dir=str(run_dir),
                mode=cast(WandbMode, mode),
                id=run_id,
                resume="allow",
                name=name,
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True, **settings),
            )

        if mode != "online":
            self.run = init(mode)
        else:
            try:
                self.run = init(mode, init_timeout=float(cfg.wandb_init_timeout_s))
            except wandb.errors.Error as e:  # CommError (no answer in time), server errors
                wandb.teardown()  # the failed run still holds its id in the wandb service
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                log.warning(
                    f"W&B did not start online within logger.wandb_init_timeout_s="
                    f"{cfg.wandb_init_timeout_s:g} s ({reason}); continuing offline as run {run_id}, "
                    f"files in {Path(run_dir) / 'wandb'}; upload later with: eqmarl sync {run_dir}"
                )
                self.run = init("offline")
                self.offline_fallback = True
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")
        self.run_id: str = self.run.id

    def log(self, metrics: dict[str, float]) -> None:
        self.run.log({k: v for k, v in metrics.items() if v is not None and not _isnan(v)})

    def log_image(self, key: str, path: Path) -> None:
        self.run.log({key: self._wandb.Image(str(path))})

    def finish(self) -> None:
        self.run.finish()


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


class Progress:
    """tqdm bar over env steps with steps/s and the latest returns."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", unit_scale=True, dynamic_ncols=True)

    def update(self, env_steps: int, metrics: dict[str, float]) -> None:
        if self.bar is None:
            return
        self.bar.update(env_steps - self.bar.n)
        post = {}
        for key, label in (("train_return", "ret"), ("eval_return", "eval")):
            v = metrics.get(key)
            if v is not None and not _isnan(v):
                post[label] = f"{v:.1f}"
        if post:
            self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Logger:
    """Fans metrics out to the configured sinks."""

    def __init__(
        self,
        cfg,
        run_dir: Path,
        config_dict: dict[str, Any],
        total_env_steps: int,
        start_env_steps: int = 0,
        resume_iteration: int | None = None,
        wandb_run_id: str | None = None,
        run_name: str | None = None,
    ) -> None:
        self.csv = CsvLogger(Path(run_dir) / "metrics.csv", resume_iteration) if cfg.csv else None
        self.wandb = None
        if cfg.wandb_mode != "disabled":
            self.wandb = WandbLogger(cfg, Path(run_dir), config_dict, wandb_run_id, run_name)
        self.progress = Progress(total_env_steps, start_env_steps, cfg.progress)

    @property
    def wandb_run_id(self) -> str | None:
        return None if self.wandb is None else self.wandb.run_id

    def log(self, metrics: dict[str, float]) -> None:
        if self.csv is not None:
            self.csv.log(metrics)
        if self.wandb is not None:
            self.wandb.log(metrics)
        self.progress.update(int(metrics["env_steps"]), metrics)

    def log_image(self, key: str, path: Path) -> None:
        if self.wandb is not None:
            self.wandb.log_image(key, path)

    def close(self) -> None:
        self.progress.close()
        if self.wandb is not None:
            self.wandb.finish()


# ------------------------------------------------------------------ reading runs back
_WANDB_BLOCK = 32768
_WANDB_HEADER = 7  # record header: crc32 (4), length (2, little-endian), type (1)


def _wandb_records(path: Path):
    """Raw protobuf payloads of a W&B ``.wandb`` file (a LevelDB-style record log)."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (no ':W&B' header)")
    pos, pending = 7, b""
    while pos + _WANDB_HEADER <= len(data):
        left_in_block = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if left_in_block < _WANDB_HEADER:  # block tail padding
            pos += left_in_block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        rtype = data[pos + 6]
        if rtype == 0 and length == 0:
            pos += left_in_block
            continue
        chunk = data[pos + _WANDB_HEADER : pos + _WANDB_HEADER + length]
        pos += _WANDB_HEADER + length
        if rtype == 1:  # full
            yield chunk
        elif rtype == 2:  # first
            pending = chunk
        elif rtype == 3:  # middle
            pending += chunk
        elif rtype == 4:  # last
            yield pending + chunk
            pending = b""


def read_wandb_history(run_file: Path) -> list[dict[str, Any]]:
    """Every ``history`` row (what ``run.log`` wrote) in a W&B run file, in order.

    Args:
        run_file: a ``run-*.wandb`` file, or a directory searched for the newest one.
    """
    import json

    from wandb.proto import wandb_internal_pb2

    run_file = Path(run_file)
    if run_file.is_dir():
        files = sorted(run_file.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise FileNotFoundError(f"no run-*.wandb under {run_file}")
        run_file = files[-1]
    rows = []
    for payload in _wandb_records(run_file):
        rec = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf, no stubs
        rec.ParseFromString(payload)
        if rec.WhichOneof("record_type") == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or ".".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows
