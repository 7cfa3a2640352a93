"""Metrics sinks: CSV, Weights & Biases, progress bar.  Only rank 0 creates a Logger.

W&B runs online when an API key is configured, else offline (files under
``<run_dir>/wandb``; upload later with ``eqmarl sync``); ``logger.wandb_mode`` or
``WANDB_MODE`` force a mode, ``logger.wandb_mode=disabled`` turns it off.  Charts are keyed on ``env_steps``.
A server that does not answer within ``logger.wandb_init_timeout_s`` turns the run offline (a warning says so);
one that goes away later makes ``finish`` give up after ``logger.wandb_finish_timeout_s`` (the run's files stay,
``eqmarl sync`` uploads them).  The API key is read by wandb from the environment; it is never written by eqmarl.

Beyond the charts, a W&B run gets: the config as flat keys (``model.name``, ``env.surround_sides``:
filter and group by them) with the job's facts (``job.*``, from the launcher); runs-table summary fields
(``final_``/``best_eval_return``, ``..._eval_win_rate``, ``env_steps_per_s``, ``wall_s``, ``stop_reason``);
evaluation episodes as media (``eval_episode``, ``logger.media_every``); alerts, each also a summary field
``alert/<name>`` (``run.alert`` does nothing offline); and, with ``logger.log_checkpoints``, the final
policy as a model artifact.  :func:`read_wandb_run` reads an offline run's records back.

The run files a sink writes may be damaged or refuse writes (full or read-only disk, a directory in a file's
place): each problem is reported in one line and training goes on (:class:`CsvLogger`, :class:`WandbLogger`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

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


# what a byte that is not UTF-8 (or a NUL byte) reads as in a damaged metrics.csv
DAMAGED = "\ufffd"
# rows held back while metrics.csv cannot be written (the oldest beyond this are dropped)
MAX_HELD_ROWS = 10_000


@dataclass
class MetricsTable:
    """A ``metrics.csv`` read back, whatever eqmarl version wrote it and whatever damage it took.

    Attributes:
        columns: the header's names, then names for cells beyond it (rows wider than the
            header, from a version with more columns): the next :data:`CSV_COLUMNS` where the
            header is a prefix of them, else ``column_<n>``; a damaged name is guessed the same way.
        rows: each readable row as ``{column: cell text}`` (cells past a short row absent,
            damaged cells empty), in file order.
        problems: what was damaged, one phrase each (empty: nothing).
    """

    columns: list[str]
    rows: list[dict[str, str]]
    problems: list[str]


def read_metrics_table(path: Path) -> MetricsTable:
    """Read a ``metrics.csv`` of any eqmarl version, and what can be read of a damaged one.

    Bytes that are not UTF-8 and NUL bytes make their cells empty; a line the ``csv``
    module cannot parse is dropped; rows shorter than the header are kept.

    Args:
        path: the file.

    Raises:
        OSError: it cannot be read (missing, a directory, an I/O error).
    """
    data = Path(path).read_bytes()
    problems: list[str] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        text = data.decode("utf-8", errors="replace")
        problems.append(f"bytes that are not UTF-8 (the first at byte {e.start})")
    if "\x00" in text:
        text = text.replace("\x00", DAMAGED)
        problems.append("NUL bytes")
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    parsed: list[tuple[int, list[str]]] = []
    unparsable = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed.append((number, next(csv.reader([line]))))
        except csv.Error:
            unparsable.append(number)
    if not parsed:
        return MetricsTable([], [], problems)
    (_, header), body = parsed[0], parsed[1:]
    columns = _column_names(header, max([len(header)] + [len(cells) for _, cells in body]))
    if any(not name or DAMAGED in name for name in header):
        problems.append("damaged column names (guessed from their position)")
    rows, damaged_cells, damaged_lines = [], 0, []
    for number, cells in body:
        bad = sum(DAMAGED in c for c in cells)
        if bad:
            damaged_cells += bad
            damaged_lines.append(number)
        rows.append({name: "" if DAMAGED in c else c for name, c in zip(columns, cells)})
    if damaged_cells:
        problems.append(f"{_count(damaged_cells, 'damaged cell')} (line {_lines(damaged_lines)}; left empty)")
    if unparsable:
        problems.append(f"{_count(len(unparsable), 'unreadable line')} (line {_lines(unparsable)}; dropped)")
    return MetricsTable(columns, rows, problems)


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _lines(numbers: list[int], most: int = 3) -> str:
    """``3, 7, 9`` (and ``, ...`` past ``most``)."""
    return ", ".join(map(str, numbers[:most])) + (", ..." if len(numbers) > most else "")


def _column_names(header: list[str], width: int) -> list[str]:
    """Names for ``width`` cells under ``header`` (see :class:`MetricsTable`), all distinct."""
    readable = [(i, h) for i, h in enumerate(header) if h and DAMAGED not in h]
    aligned = all(i < len(CSV_COLUMNS) and CSV_COLUMNS[i] == h for i, h in readable)
    names: list[str] = []
    for i in range(width):
        h = header[i] if i < len(header) else ""
        if h and DAMAGED not in h:
            name = h
        elif aligned and i < len(CSV_COLUMNS):
            name = CSV_COLUMNS[i]
        else:
            name = f"column_{i + 1}"
        names.append(name if name not in names else f"{name}_{i + 1}")
    return names


def row_iteration(row: dict[str, str]) -> int | None:
    """A metrics row's ``iteration`` (None: missing or unreadable)."""
    try:
        value = float(row.get("iteration") or "nan")
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None


def file_problem(error: OSError, path: Path) -> str:
    """``<file> (<reason>)`` for a run file the OS refused (the file the error names, the target
    of a rename first, else ``path``)."""
    named = [f for f in (error.filename2, error.filename) if isinstance(f, str)]
    where = named[0] if named else path
    return f"{where} ({error.strerror or error})"


class CsvLogger:
    """``metrics.csv``: one row per logged iteration, readable by ``csv``, pandas and ``eqmarl plot``.

    Columns: :data:`CSV_COLUMNS`, then any other column the file already has (written by
    another eqmarl version), then any metric not among them, in the order they appear.
    Whenever the set of columns grows, the file is rewritten atomically with the union
    header and the earlier rows padded with empty cells, so every row is exactly as wide
    as the header.

    On resume the rows after ``resume_iteration`` are dropped (the resumed run logs them
    again), rows of the same iteration are kept once, and a damaged file is read as far
    as it goes (:func:`read_metrics_table`), reported in one line and rewritten cleanly; a
    file with no readable header is moved aside to ``metrics.csv.damaged``.

    A file that cannot be written (full or read-only disk, a directory in its place) is
    reported once and training goes on: the rows are held back (:meth:`held_rows`; the
    trainer keeps them in each checkpoint) and written as soon as the file can be written
    again, by this run or by ``resume=``.

    Args:
        path: the file.
        resume_iteration: the checkpoint's iteration when resuming (None: a fresh run,
            which keeps no row of an earlier attempt in the same run dir).
    """

    def __init__(self, path: Path, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.columns = list(CSV_COLUMNS)
        self._keep_upto: int | None = resume_iteration or 0  # rows after it are redone (None: keep all)
        self._rewrite = True  # the file must be written whole (first time, new columns, after a failure)
        self._held: list[dict[str, str]] = []  # rows not written yet
        self._dropped = 0  # held rows dropped beyond MAX_HELD_ROWS
        self._failure: str | None = None  # why the last write failed; None: the file is up to date
        self._reported_failure = False
        self._reported_damage = False
        self._flush()

    def log(self, metrics: dict[str, float]) -> None:
        new = [k for k in metrics if k not in self.columns]
        if new:  # a metric this file has no column for: rewrite with the union header
            self.columns += new
            self._rewrite = True
        self._hold([{c: "" if metrics.get(c) is None else _fmt(metrics[c]) for c in self.columns}])
        self._flush()

    def held_rows(self) -> list[dict[str, str]]:
        """The rows not written yet (the file could not be written), oldest first."""
        return list(self._held)

    def restore_rows(self, rows: list[dict[str, str]]) -> None:
        """Write rows an earlier attempt could not (from its checkpoint), in iteration order."""
        if rows:
            self.columns += [c for r in rows for c in r if c not in self.columns]
            self._hold(rows)
            self._rewrite = True
            self._flush()

    def close(self) -> None:
        """Say so if held-back rows had to be dropped (beyond :data:`MAX_HELD_ROWS`)."""
        if self._dropped:
            log.warning(
                f"{self.path}: {self._dropped} rows were dropped while it could not be written "
                f"(only the last {MAX_HELD_ROWS} are held back)"
            )

    # -- writing -------------------------------------------------------------------------
    def _hold(self, rows: list[dict[str, str]]) -> None:
        self._held += rows
        excess = len(self._held) - MAX_HELD_ROWS
        if excess > 0:
            del self._held[:excess]
            self._dropped += excess

    def _flush(self) -> None:
        """Write the held rows (the whole file when due); a refused write holds them back."""
        try:
            if self._rewrite or not self.path.is_file():
                self._rewrite_file()
            elif self._held:
                self._append(self._held)
        except OSError as e:
            self._rewrite = True  # the next write starts from what is on disk, whatever this one left
            self._failed(e)
            return
        if self._failure is not None:
            log.info(f"{self.path} can be written again: the rows held back are in it now")
            self._failure = None
        self._held.clear()

    def _failed(self, error: OSError) -> None:
        self._failure = error.strerror or str(error)
        if not self._reported_failure:
            self._reported_failure = True
            log.warning(
                f"cannot write {file_problem(error, self.path)}; training goes on, metrics still go to W&B (when "
                f"on) and each checkpoint, and the rows are written once {self.path.name} can be written again "
                f"(by this run or by resume={self.path.parent})"
            )

    def _rewrite_file(self) -> None:
        """Write the file whole, atomically: its readable rows (up to the resume point), then
        the held ones; the union of both's columns."""
        from eqmarl.train.checkpoint import atomic_write_bytes

        rows: dict[int, dict[str, str]] = {}
        if os.path.lexists(self.path):
            for row in self._read_back():
                it = row_iteration(row)
                if it is not None and (self._keep_upto is None or it <= self._keep_upto):
                    rows[it] = row
        unplaced = []  # held rows without an iteration: after the others, as logged
        for row in self._held:
            it = row_iteration(row)
            if it is None:
                unplaced.append(row)
            else:
                rows[it] = row
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns)
        writer.writerows([r.get(c, "") for c in self.columns] for r in [*(rows[i] for i in sorted(rows)), *unplaced])
        atomic_write_bytes(self.path, buf.getvalue().encode())
        self._keep_upto = None
        self._rewrite = False

    def _read_back(self) -> list[dict[str, str]]:
        """The rows on disk, their columns joined to :attr:`columns`; damage reported once."""
        table = read_metrics_table(self.path)  # unreadable: OSError, nothing is overwritten
        if table.columns and "iteration" not in table.columns:
            aside = _free_name(self.path.with_name(self.path.name + ".damaged"))
            os.replace(self.path, aside)
            log.warning(f"{self.path} has no readable header (no 'iteration' column): moved to {aside}")
            return []
        if table.problems and not self._reported_damage:
            self._reported_damage = True
            log.warning(f"{self.path} is damaged ({'; '.join(table.problems)}): continuing with its readable rows")
        self.columns += [c for c in table.columns if c not in self.columns]
        return table.rows

    def _append(self, rows: list[dict[str, str]]) -> None:
        """Append ``rows`` in one write; a failed write is cut back off (where the disk lets it)."""
        buf = io.StringIO()
        csv.writer(buf).writerows([r.get(c, "") for c in self.columns] for r in rows)
        data = buf.getvalue().encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)


def _free_name(path: Path) -> Path:
    """``path``, or ``path`` with ``.1``, ``.2``, ... appended: the first that does not exist."""
    candidate, n = path, 0
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as flat dotted keys (``{"model": {"name": "e2gn2"}}`` -> ``{"model.name": "e2gn2"}``),
    so W&B filters and groups by each key; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_config(value, name + "."))
        else:
            out[name] = value
    return out


class EpisodeMedia(Protocol):
    """What the trainer asks of the evaluation media (``logger.media_every``;
    :class:`eqmarl.eval.render.EvalMedia`)."""

    def start(self, evaluation: int, last: bool) -> Callable[..., None] | None:
        """The ``on_step`` hook for the ``evaluation``-th evaluation (None: not drawn)."""
        ...

    def finish(self, iteration: int, env_steps: int) -> float | None:
        """Draw and log what was recorded; the seconds it took (None: nothing)."""
        ...


# summary fields of the runs table: the final and best value of these metrics (where logged)
SUMMARY_BEST = ("eval_return", "eval_win_rate")
# W&B alert levels by name
ALERT_LEVELS = ("INFO", "WARN", "ERROR")


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


# written into an online W&B run's dir when its upload did not finish: `eqmarl sync` uploads it
NOT_UPLOADED_MARKER = "eqmarl-not-uploaded"


def wandb_runs_to_sync(run_dirs: list[str] | list[Path]) -> list[Path]:
    """The W&B run dirs under ``run_dirs`` that ``eqmarl sync`` uploads: every offline run,
    and every online run whose upload did not finish (:data:`NOT_UPLOADED_MARKER`)."""
    runs = []
    for d in map(Path, run_dirs):
        runs += sorted(d.rglob("offline-run-*"))
        runs += sorted(m.parent for m in d.rglob(f"run-*/{NOT_UPLOADED_MARKER}"))
    return runs


class WandbLogger:
    """A W&B run that continues across resumes (same id).

    Online, the server gets ``cfg.wandb_init_timeout_s`` seconds to answer; a server that
    does not (unreachable, refusing, hanging) turns the run offline with a warning: its
    files go to ``<run_dir>/wandb`` under the same run id, and ``eqmarl sync <run dir>``
    uploads them later.  ``offline_fallback`` says whether that happened.

    At the end, :meth:`finish` waits at most ``cfg.wandb_finish_timeout_s`` for the upload
    (a server that went away after the start would block it for good); past that the run's
    files stay on disk, marked for ``eqmarl sync``, with a warning.

    A W&B dir that cannot be written (``<run_dir>/wandb`` a file, a read-only disk) turns
    W&B off for the run with a warning; :attr:`run_id` is kept, so a resume continues the
    same W&B run.  So does a ``log`` call that raises: training never stops for W&B.
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
        self.run_dir = Path(run_dir)
        mode = resolve_wandb_mode(cfg.wandb_mode)
        # chosen here, so an offline fallback keeps the id the online run would have had
        run_id = run_id or new_wandb_run_id()
        self.run_id: str = run_id
        self.offline_fallback = False
        self.finish_timeout_s = float(cfg.wandb_finish_timeout_s)
        # a wandb with Settings.finish_timeout bounds finish() itself; older ones: a thread (see _finish)
        self._bounded = {"finish_timeout", "finish_timeout_raises"} <= set(getattr(wandb.Settings, "model_fields", {}))
        bound: dict[str, Any] = (
            {"finish_timeout": self.finish_timeout_s, "finish_timeout_raises": True} if self._bounded else {}
        )

        def init(mode: str, **settings: Any):
            return wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                group=cfg.group,
                job_type=cfg.job_type,
                tags=list(cfg.tags) or None,
                config=flat_config(config_dict),
                dir=str(run_dir),
                mode=cast(WandbMode, mode),
                id=run_id,
                resume="allow",
                name=name,
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True, **bound, **settings),
            )

        self.run: Any = None
        self._online = False
        self._files = self.run_dir / "wandb"  # the run's own dir under it, once started
        try:
            self.run = self._start(init, mode, cfg)
        except OSError as e:  # the W&B dir: not a directory, read-only, ...
            with contextlib.suppress(Exception):
                wandb.teardown()
            log.warning(
                f"W&B is off for this run: cannot write {file_problem(e, self.run_dir / 'wandb')}; metrics still go "
                f"to metrics.csv and the checkpoint; once it is writable, resume={run_dir} continues W&B run {run_id}"
            )
            return
        self._online = self.run.settings.mode == "online"
        self._files = Path(self.run.dir).parent  # the run's own dir under <run_dir>/wandb
        self.run.define_metric("env_steps")
        self.run.define_metric("*", step_metric="env_steps")
        self.run_id = self.run.id

    def add_facts(self, facts: dict[str, Any]) -> None:
        """The job's facts as config keys; a resumed run's change (nodes, requeues): the newest are kept."""
        if self.run is not None:
            self._call(lambda: self.run.config.update(facts, allow_val_change=True), "config")

    def _start(self, init: Any, mode: str, cfg: Any) -> Any:
        """``init(mode)``; online, a server that does not answer in time: offline under the same id."""
        wandb = self._wandb
        if mode != "online":
            return init(mode)
        try:
            return init(mode, init_timeout=float(cfg.wandb_init_timeout_s))
        except wandb.errors.Error as e:  # CommError (no answer in time), server errors
            wandb.teardown()  # the failed run still holds its id in the wandb service
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning(
                f"W&B did not start online within logger.wandb_init_timeout_s="
                f"{cfg.wandb_init_timeout_s:g} s ({reason}); continuing offline as run {self.run_id}, "
                f"files in {self.run_dir / 'wandb'}; upload later with: eqmarl sync {self.run_dir}"
            )
            self.offline_fallback = True
            return init("offline")

    def log(self, metrics: dict[str, float]) -> None:
        self._send({k: v for k, v in metrics.items() if v is not None and not _isnan(v)})

    def log_image(self, key: str, path: Path) -> None:
        if self.run is not None:
            self._send({key: self._wandb.Image(str(path))})

    def log_video(self, key: str, path: Path, caption: str, env_steps: int) -> None:
        """A GIF (or video file) as W&B media at ``env_steps`` (copied into the run at once)."""
        if self.run is not None:
            self._send({key: self._wandb.Video(str(path), caption=caption), "env_steps": env_steps})

    def summary(self, fields: dict[str, Any]) -> None:
        """Set runs-table summary fields."""
        if self.run is not None:
            self._call(lambda: self.run.summary.update(fields), "summary")

    def alert(self, name: str, text: str, level: str = "ERROR") -> None:
        """A W&B alert (Slack/email where the user enabled them; nothing offline) and the
        summary field ``alert/<name>`` with the same text, which offline runs keep too."""
        if self.run is None:
            return
        self.summary({f"alert/{name}": text})
        title = f"eqmarl {name}: {self.run.name or self.run_id}"[:63]  # W&B wants titles under 64 characters
        levels = self._wandb.AlertLevel  # type: ignore[attr-defined]  # re-exported, not in its stubs
        self._call(lambda: self.run.alert(title=title, text=text, level=getattr(levels, level)), "alert")

    def log_artifact(self, name: str, root: Path, metadata: dict[str, Any], aliases: list[str]) -> None:
        """Every file under ``root`` as the model artifact ``name`` (staged by W&B at once)."""
        if self.run is None:
            return
        wandb = self._wandb

        def log_it() -> None:
            art = wandb.Artifact(name, type="model", metadata=metadata)
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                art.add_file(str(f), name=f.relative_to(root).as_posix())
            self.run.log_artifact(art, aliases=aliases)

        self._call(log_it, "artifact")

    def _call(self, fn: Callable[[], Any], what: str) -> None:
        """``fn()``; a W&B failure is said in one line and training goes on."""
        try:
            fn()
        except Exception as e:
            log.warning(f"W&B {what} not recorded ({type(e).__name__}: {e})")

    def _send(self, data: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.log(data)
        except Exception as e:  # a sink never stops training; say it once, send no more
            log.warning(f"W&B stopped taking metrics ({type(e).__name__}: {e}); metrics still go to metrics.csv")
            self._finish()
            self.run = None

    def finish(self) -> None:
        """End the run, waiting at most ``wandb_finish_timeout_s`` for the upload."""
        if self.run is not None:
            self._finish()
            self.run = None

    def _finish(self) -> None:
        failed: list[BaseException] = []

        def finish() -> None:
            try:
                self.run.finish()
            except BaseException as e:  # reported below, in this thread or the caller's
                failed.append(e)

        if self._bounded:
            finish()
            done = True
        else:
            thread = threading.Thread(target=finish, name="wandb-finish", daemon=True)
            thread.start()
            thread.join(self.finish_timeout_s)
            done = not thread.is_alive()
        if not done or any(isinstance(e, TimeoutError) for e in failed):
            self._not_finished()
        elif failed:
            log.warning(f"W&B run {self.run_id} did not finish cleanly ({type(failed[0]).__name__}: {failed[0]})")

    def _not_finished(self) -> None:
        """Past the finish timeout: mark an online run for `eqmarl sync` and say so."""
        if self._online:
            with contextlib.suppress(OSError):
                (self._files / NOT_UPLOADED_MARKER).write_text(f"{self.run_id}\n")
        log.warning(
            f"W&B did not finish {'uploading ' if self._online else ''}run {self.run_id} within "
            f"logger.wandb_finish_timeout_s={self.finish_timeout_s:g} s (is the server reachable?); its files stay "
            f"in {self._files}; upload later with: eqmarl sync {self.run_dir}"
        )


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _best_so_far(path: Path, resume_iteration: int | None) -> dict[str, float]:
    """The best of :data:`SUMMARY_BEST` in ``metrics.csv`` up to ``resume_iteration`` ({}: a fresh run)."""
    if not resume_iteration:
        return {}
    try:
        table = read_metrics_table(path)
    except OSError:
        return {}
    best: dict[str, float] = {}
    for row in table.rows:
        it = row_iteration(row)
        if it is None or it > resume_iteration:
            continue
        for key in SUMMARY_BEST:
            try:
                v = float(row.get(key) or "nan")
            except ValueError:
                continue
            if math.isfinite(v):
                best[key] = max(v, best.get(key, v))
    return best


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
    """Fans metrics out to the configured sinks.

    A sink's file that cannot be written is reported once and training goes on (see
    :class:`CsvLogger` and :class:`WandbLogger`).
    """

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
        facts: dict[str, Any] | None = None,
    ) -> None:
        self.csv = CsvLogger(Path(run_dir) / "metrics.csv", resume_iteration) if cfg.csv else None
        self.wandb = None
        if cfg.wandb_mode != "disabled":
            self.wandb = WandbLogger(cfg, Path(run_dir), config_dict, wandb_run_id, run_name)
            if facts:
                self.wandb.add_facts(facts)
        self.progress = Progress(total_env_steps, start_env_steps, cfg.progress)
        # the best of SUMMARY_BEST so far (a resumed run: from metrics.csv up to the checkpoint)
        self._best: dict[str, float] = _best_so_far(Path(run_dir) / "metrics.csv", resume_iteration)
        self._media_s = 0.0

    @property
    def media_enabled(self) -> bool:
        """W&B takes media (it is on and its run started)."""
        return self.wandb is not None and self.wandb.run is not None

    @property
    def wandb_run_id(self) -> str | None:
        return None if self.wandb is None else self.wandb.run_id

    def log(self, metrics: dict[str, float]) -> None:
        if self.csv is not None:
            self.csv.log(metrics)
        if self.wandb is not None:
            self.wandb.log(metrics)
            self.wandb.summary(self._summary_fields(metrics))
        self.progress.update(int(metrics["env_steps"]), metrics)

    def _summary_fields(self, metrics: dict[str, float]) -> dict[str, Any]:
        """The runs table's fields after ``metrics``: final and best evaluation, throughput, wall time."""
        out: dict[str, Any] = {}
        for key in SUMMARY_BEST:
            v = metrics.get(key)
            if v is None or _isnan(v):
                continue
            self._best[key] = max(v, self._best.get(key, v))
            out[f"final_{key}"], out[f"best_{key}"] = v, self._best[key]
        wall = metrics.get("wall_s")
        if wall:
            out["wall_s"] = wall
            out["env_steps_per_s"] = metrics["env_steps"] / wall
        if metrics.get("media_s") is not None:
            self._media_s += metrics["media_s"]
            out["media_s_total"] = self._media_s
        return out

    def log_video(self, path: Path, caption: str, env_steps: int) -> None:
        """An evaluation episode's GIF as the W&B media ``eval_episode``."""
        if self.wandb is not None:
            self.wandb.log_video("eval_episode", path, caption, env_steps)

    def summary(self, fields: dict[str, Any]) -> None:
        """Runs-table summary fields (``stop_reason``, ...)."""
        if self.wandb is not None:
            self.wandb.summary(fields)

    def alert(self, name: str, text: str, level: str = "ERROR") -> None:
        """A W&B alert, kept as the summary field ``alert/<name>`` too (alerts do nothing offline)."""
        if self.wandb is not None:
            self.wandb.alert(name, text, level)

    def log_policy(self, checkpoint: Path, aliases: list[str]) -> str | None:
        """The checkpoint's policy (config + weights, the layout ``eqmarl eval`` loads) as the W&B
        model artifact ``policy-<run id>``.

        Returns:
            the artifact's name (None: W&B is off).
        """
        if self.wandb is None or self.wandb.run is None:
            return None
        import tempfile

        from eqmarl.train.checkpoint import export_policy

        name = f"policy-{self.wandb.run_id}"
        with tempfile.TemporaryDirectory(prefix="eqmarl-artifact-") as tmp:
            meta = export_policy(checkpoint, Path(tmp))
            self.wandb.log_artifact(name, Path(tmp), meta, aliases)
        return name

    def held_rows(self) -> list[dict[str, str]]:
        """``metrics.csv`` rows not written yet (the file could not be written); the trainer
        keeps them in its checkpoints."""
        return [] if self.csv is None else self.csv.held_rows()

    def restore_rows(self, rows: list[dict[str, str]]) -> None:
        """Write the rows a checkpoint held back (:meth:`held_rows` of the run before)."""
        if self.csv is not None:
            self.csv.restore_rows(rows)

    def log_image(self, key: str, path: Path) -> None:
        if self.wandb is not None:
            self.wandb.log_image(key, path)

    def close(self) -> None:
        self.progress.close()
        if self.csv is not None:
            self.csv.close()
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


@dataclass
class WandbRunRecords:
    """What a W&B run file (``run-*.wandb``) holds, as eqmarl's tests and tools read it back.

    Attributes:
        config: the config keys and values (the last value of each).
        group: the run's group.
        summary: the summary fields (the last value of each; nested keys joined by ``.``).
        history: every ``run.log`` row, in order.
        alerts: ``{"title", "text", "level"}`` of each ``run.alert``.
        artifacts: ``{"name", "type", "aliases", "metadata", "files": {path: size}}`` of each
            logged artifact.
    """

    config: dict[str, Any]
    group: str
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    alerts: list[dict[str, str]]
    artifacts: list[dict[str, Any]]


def _newest_run_file(run_file: Path) -> Path:
    run_file = Path(run_file)
    if run_file.is_dir():
        files = sorted(run_file.rglob("run-*.wandb"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise FileNotFoundError(f"no run-*.wandb under {run_file}")
        return files[-1]
    return run_file


def _items(updates: Any) -> dict[str, Any]:
    import json

    return {(u.key or ".".join(u.nested_key)): json.loads(u.value_json) for u in updates}


def read_wandb_run(run_file: Path) -> WandbRunRecords:
    """Read a W&B run file back (offline runs: nothing else holds their config and summary).

    Args:
        run_file: a ``run-*.wandb`` file, or a directory searched for the newest one.
    """
    import json

    from wandb.proto import wandb_internal_pb2

    out = WandbRunRecords({}, "", {}, [], [], [])
    for payload in _wandb_records(_newest_run_file(run_file)):
        rec = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf, no stubs
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.config.update(_items(rec.run.config.update))
            out.group = rec.run.run_group
        elif kind == "config":
            out.config.update(_items(rec.config.update))
        elif kind == "summary":
            out.summary.update(_items(rec.summary.update))
        elif kind == "history":
            out.history.append(_items(rec.history.item))
        elif kind == "alert":
            out.alerts.append({"title": rec.alert.title, "text": rec.alert.text, "level": rec.alert.level})
        elif kind == "artifact":
            a = rec.artifact
            out.artifacts.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata or "{}"),
                    "files": {c.path: c.size for c in a.manifest.contents},
                }
            )
    return out


def read_wandb_history(run_file: Path) -> list[dict[str, Any]]:
    """Every ``history`` row (what ``run.log`` wrote) in a W&B run file, in order.

    Args:
        run_file: a ``run-*.wandb`` file, or a directory searched for the newest one.
    """
    return read_wandb_run(run_file).history
