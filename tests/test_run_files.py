"""Files a run reads back: damaged or unwritable run files and metrics.csv across versions.

- A damaged ``metrics.csv`` (bytes that are not UTF-8, NUL bytes), ``config.json``,
  ``learning_curve.png`` or W&B dir with a directory or a file in its place: each is
  reported in one line, and the run (or its resume) goes on with what it can use.
- A ``metrics.csv`` that stops taking writes mid-run (a read-only bind mount over it; we
  run as root, so file modes would not stop a write): one warning, training goes on, the
  rows are held back in each checkpoint, and a resume writes them.
- ``metrics.csv`` across versions: every row is as wide as the header (the union of the
  columns of every version that wrote it), so ``csv``, pandas and ``eqmarl plot`` read it.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqmarl.eval.plots import read_metrics
from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from eqmarl.train.logger import CSV_COLUMNS, CsvLogger
from tests.conftest import TINY, launch_cmd, run_ok

FAST = [*TINY, "train.eval_every=0"]


def rows_of(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows through the ``csv`` module, strict UTF-8 (a damaged byte raises)."""
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    return header, rows


def assert_rectangular(path: Path) -> list[dict[str, str]]:
    """Every row exactly as wide as the header, for csv, pandas (if installed) and eqmarl plot."""
    header, rows = rows_of(path)
    assert all(len(r) == len(header) for r in rows), [len(r) for r in rows]
    assert len(set(header)) == len(header)
    try:
        import pandas as pd
    except ImportError:
        pass
    else:
        assert list(pd.read_csv(path).columns) == header
    cols = read_metrics(path)
    assert set(cols) == set(header) and all(len(v) == len(rows) for v in cols.values())
    return [dict(zip(header, r)) for r in rows]


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def row(iteration: int, width: int) -> list[object]:
    return [iteration, iteration * 200, *[f"{iteration}.5"] * (width - 2)]


# ---------------------------------------------------------------- metrics.csv in process
def test_resume_keeps_what_it_can_of_a_non_utf8_and_nul_damaged_metrics_csv(tmp_path, capfd) -> None:
    """Old main: UnicodeDecodeError (a traceback) reading metrics.csv back on resume."""
    path = tmp_path / "metrics.csv"
    write_rows(path, CSV_COLUMNS, [row(i, len(CSV_COLUMNS)) for i in (1, 2, 3)])
    data = path.read_bytes()
    data = data.replace(b"2,400,2.5", b"2,400,2\xff5", 1).replace(b"3,600,3.5", b"3,600,\x003.5", 1)
    path.write_bytes(data + b"\xfe\xfe garbage line\r\n")
    CsvLogger(path, resume_iteration=3).log({"iteration": 4, "env_steps": 800, "loss": 1.0})
    err = capfd.readouterr().err
    damage = [line for line in err.splitlines() if str(path) in line]
    assert len(damage) == 1 and "is damaged" in damage[0] and "not UTF-8" in damage[0], err
    rows = assert_rectangular(path)  # clean UTF-8 again
    assert [r["iteration"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[1]["wall_s"] == "" and rows[1]["steps_per_s"] == "2.5"  # the damaged cell is left empty
    assert rows[2]["wall_s"] == "" and rows[3]["loss"] == "1"


def test_a_metrics_csv_without_a_readable_header_is_moved_aside(tmp_path, capfd) -> None:
    """Not an eqmarl metrics file: kept aside, a new one started.  Old main: overwritten, its content lost."""
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"not,a,metrics,file\n1,2,3,4\n")
    CsvLogger(path, resume_iteration=5).log({"iteration": 6, "env_steps": 1200})
    assert (tmp_path / "metrics.csv.damaged").read_bytes() == b"not,a,metrics,file\n1,2,3,4\n"
    assert [r["iteration"] for r in assert_rectangular(path)] == ["6"]
    assert capfd.readouterr().err.count("has no readable header (no 'iteration' column): moved to") == 1


def test_eqmarl_plot_reads_a_damaged_metrics_csv(tmp_path, clean_env) -> None:
    """Old main: UnicodeDecodeError in ``eqmarl plot``."""
    path = tmp_path / "metrics.csv"
    write_rows(path, CSV_COLUMNS, [row(i, len(CSV_COLUMNS)) for i in (1, 2)])
    path.write_bytes(path.read_bytes().replace(b"2,400", b"2,4\xff0", 1))
    p = subprocess.run(
        [sys.executable, "-m", "eqmarl.cli", "plot", str(tmp_path)],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "is damaged" in p.stderr
    assert (tmp_path / "learning_curve.png").stat().st_size > 0


def test_an_unwritable_metrics_csv_holds_rows_back_until_it_can_be_written(tmp_path, capfd) -> None:
    """A directory in metrics.csv's place: warned once, nothing raised; the rows are written
    once it can be.  Old main: IsADirectoryError (a traceback)."""
    path = tmp_path / "metrics.csv"
    path.mkdir()
    log = CsvLogger(path, resume_iteration=0)
    for i in (1, 2, 3):
        log.log({"iteration": i, "env_steps": 200 * i})
    assert [r["iteration"] for r in log.held_rows()] == ["1", "2", "3"]
    err = capfd.readouterr().err
    assert err.count(f"cannot write {path} (Is a directory); training goes on") == 1, err
    path.rmdir()
    log.log({"iteration": 4, "env_steps": 800})
    assert [r["iteration"] for r in assert_rectangular(path)] == ["1", "2", "3", "4"]
    assert log.held_rows() == []
    # a new logger given the rows a checkpoint held back writes them in iteration order
    log = CsvLogger(path, resume_iteration=4)
    log.restore_rows([{"iteration": "5", "env_steps": "1000"}])
    assert [r["iteration"] for r in assert_rectangular(path)] == ["1", "2", "3", "4", "5"]


def test_a_metrics_csv_from_an_older_version_gets_the_union_header(tmp_path) -> None:
    """A file written before the last columns existed, with an obsolete column of its own:
    the resume rewrites it with the union header, old rows padded, obsolete cells kept.
    Old main: the obsolete column and its values are dropped."""
    path = tmp_path / "metrics.csv"
    old = [*CSV_COLUMNS[:-3], "obsolete"]
    write_rows(path, old, [[*row(i, len(old) - 1), f"x{i}"] for i in (1, 2, 3)])
    CsvLogger(path, resume_iteration=2).log({"iteration": 3, "env_steps": 600, "nonfinite_skips": 0.0})
    header, _ = rows_of(path)
    assert header[: len(CSV_COLUMNS)] == CSV_COLUMNS and header[len(CSV_COLUMNS) :] == ["obsolete"]
    rows = assert_rectangular(path)
    assert [r["obsolete"] for r in rows] == ["x1", "x2", ""]
    assert [r["nonfinite_skips"] for r in rows] == ["", "", "0"]


def test_rows_wider_than_the_header_are_named_and_the_file_repaired(tmp_path, clean_env) -> None:
    """Rows a newer version appended under an older, narrower header (e.g. a requeued job that
    started over in the same run dir).  Old main: ``eqmarl plot`` fails (TypeError), and a
    resume drops the extra cells."""
    path = tmp_path / "metrics.csv"
    narrow = CSV_COLUMNS[:-3]
    write_rows(path, narrow, [row(1, len(narrow)), row(2, len(CSV_COLUMNS)), row(3, len(CSV_COLUMNS))])
    p = subprocess.run(
        [sys.executable, "-m", "eqmarl.cli", "plot", str(tmp_path)],
        capture_output=True,
        text=True,
        env=clean_env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert read_metrics(path)["nonfinite_skips"][1:] == [2.5, 3.5]
    CsvLogger(path, resume_iteration=3)
    rows = assert_rectangular(path)
    assert [r["nonfinite_skips"] for r in rows] == ["", "2.5", "3.5"]


def test_a_new_metric_mid_run_widens_the_whole_file(tmp_path) -> None:
    """A metric no column exists for: the file is rewritten with the union header, earlier
    rows padded.  Old main: the metric never reaches metrics.csv."""
    path = tmp_path / "metrics.csv"
    log = CsvLogger(path)
    log.log({"iteration": 1, "env_steps": 200})
    log.log({"iteration": 2, "env_steps": 400, "new_metric": 0.25})
    log.log({"iteration": 3, "env_steps": 600})
    rows = assert_rectangular(path)
    assert rows_of(path)[0] == [*CSV_COLUMNS, "new_metric"]
    assert [r["new_metric"] for r in rows] == ["", "0.25", ""]


# ---------------------------------------------------------------- through the CLI
@pytest.mark.slow
def test_damaged_run_files_are_reported_in_one_line_each_and_resume_goes_on(tmp_path, clean_env) -> None:
    """metrics.csv with a non-UTF-8 and a NUL byte; a directory where config.json and
    learning_curve.png go; a file where the W&B dir goes.  Old main: a traceback (config.json
    first, then metrics.csv, the W&B dir and the PNG)."""
    run = tmp_path / "run"
    offline = ["logger.wandb_mode=offline"]
    run_ok(launch_cmd(*FAST, *offline, "train.max_iterations=2", f"hydra.run.dir={run}"), clean_env)
    run_id = load_checkpoint(resolve_checkpoint(run))["wandb_run_id"]
    metrics = run / "metrics.csv"
    lines = metrics.read_bytes().split(b"\n")
    lines[1] = lines[1][:12] + b"\xff" + lines[1][13:]
    lines[2] = lines[2][:12] + b"\x00" + lines[2][13:]
    metrics.write_bytes(b"\n".join(lines))
    for name in ("config.json", "learning_curve.png"):
        (run / name).unlink()
        (run / name).mkdir()
    shutil.rmtree(run / "wandb")
    (run / "wandb").write_text("not a directory\n")
    p = run_ok(launch_cmd(f"resume={run}", "train.max_iterations=4", *offline, "logger.progress=false"), clean_env)
    err = p.stderr
    assert "Traceback" not in err
    for what, said in (
        ("metrics.csv", "is damaged (bytes that are not UTF-8"),
        ("config.json", "(Is a directory); training goes on"),
        ("learning_curve.png", "no learning curve drawn"),
        ("wandb", "W&B is off for this run: cannot write"),
    ):
        said_lines = [line for line in err.splitlines() if f"{run}/{what}" in line]
        assert len(said_lines) == 1 and said in said_lines[0], (what, err[-3000:])
    assert f"continues W&B run {run_id}" in err
    assert [r["iteration"] for r in assert_rectangular(metrics)] == ["1", "2", "3", "4"]
    assert load_checkpoint(resolve_checkpoint(run))["wandb_run_id"] == run_id  # W&B continues later


def _mount_read_only(path: Path) -> None:
    p = subprocess.run(["mount", "--bind", "-o", "ro", str(path), str(path)], capture_output=True, check=False)
    if p.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root/CAP_SYS_ADMIN): {p.stderr.decode().strip()}")


@pytest.mark.slow
def test_metrics_csv_unwritable_mid_run_training_goes_on_and_resume_writes_the_rows(tmp_path, clean_env) -> None:
    """metrics.csv turns read-only after two rows (a read-only bind mount over it): one
    warning, the run finishes (exit 0) with the rows in its checkpoints; once writable, a
    resume writes them.  Old main: OSError (Read-only file system), a traceback, exit 1."""
    run = tmp_path / "run"
    cmd = launch_cmd(*FAST, "train.total_env_steps=2400", "train.checkpoint_every=3", f"hydra.run.dir={run}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env)
    metrics, mounted = run / "metrics.csv", False
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 rows
                _mount_read_only(metrics)
                mounted = True
                break
            time.sleep(0.02)
        assert mounted, "the run ended before metrics.csv had two rows"
        frozen = metrics.read_text()
        _, err = proc.communicate(timeout=240)
        assert metrics.read_text() == frozen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if mounted:
            subprocess.run(["umount", str(metrics)], check=False)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if str(metrics) in line]
    assert len(said) == 1 and f"cannot write {metrics} (Read-only file system); training goes on" in said[0], err
    on_disk = len(frozen.splitlines()) - 1
    held = load_checkpoint(resolve_checkpoint(run))["metrics_backlog"]
    assert [int(r["iteration"]) for r in held] == list(range(on_disk + 1, 13))
    run_ok(launch_cmd(f"resume={run}", "train.total_env_steps=2800", "logger.progress=false"), clean_env)
    rows = assert_rectangular(metrics)
    assert [int(r["iteration"]) for r in rows] == list(range(1, 15))
    assert "metrics_backlog" not in load_checkpoint(resolve_checkpoint(run))
