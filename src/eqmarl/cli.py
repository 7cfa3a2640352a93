"""``eqmarl`` console entry: helpers around runs (training itself is ``python launch.py``).

eqmarl doctor [--json] [--require sc2,gpu,...]   what is installed (the image's self-check)
eqmarl install-sc2 --accept-license [--dest DIR]   StarCraft II 4.10 + SMACv2 maps
eqmarl plot RUN_DIR...        learning curve PNG of each run (metrics.csv)
eqmarl sync RUN_DIR...        upload offline W&B runs (wraps ``wandb sync``)
eqmarl plot-curves DIR... --out fig.png --threshold X   mean +- s.e. over seeds per model
eqmarl xplay RUN_DIR... [env.k=v...]  self-play/cross-play matrix of checkpoints (+ test-time EQC)
eqmarl eval RUN [env.k=v...]  a checkpoint on other env settings: win rate, return (JSON); RUN may
                              be wandb:<entity>/<project>/<artifact>[:alias] (logger.log_checkpoints)
eqmarl render RUN [env.k=v...]  one deterministic episode as a GIF

Every command checks its arguments before it runs: a bad one exits 2 with one line
naming it and the allowed values (``eqmarl eval: argument --episodes: 0; allowed: an
integer in [1, 1000000]``), and so does an ``env.*`` override the run's env refuses
(naming its full key).  Outputs are written atomically with the permissions of ordinary
files (:mod:`eqmarl.core.files`); a missing output directory is created; an output that
cannot be written (read-only or full disk) exits 1 with one line naming it, leaving no
partial file.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eqmarl.core.files import OutputWriteError, unwritable_reason, write_stdout


class _Parser(argparse.ArgumentParser):
    """argparse with eqmarl's one-line errors: ``eqmarl <cmd>: argument X: ...``, exit 2."""

    def error(self, message: str) -> Any:  # argparse's signature returns NoReturn
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# ------------------------------------------------------------------ argument types
def _bad(value: Any, allowed: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{value}; allowed: {allowed}")


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (no upper bound when ``hi`` is None)."""
    allowed = f"an integer in [{lo}, {hi}]" if hi is not None else f"an integer >= {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _bad(repr(text), allowed) from None
        if value < lo or (hi is not None and value > hi):
            raise _bad(value, allowed)
        return value

    return parse


def _finite_float(text: str, allowed: str, ok: Callable[[float], bool]) -> float:
    """``text`` as a finite float for which ``ok`` holds, else the argparse error naming ``allowed``."""
    try:
        value = float(text)
    except ValueError:
        raise _bad(repr(text), allowed) from None
    if not (math.isfinite(value) and ok(value)):
        raise _bad(text, allowed)
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    return _finite_float(text, "a finite number > 0", lambda v: v > 0)


def step_count(text: str) -> float:
    """An argparse type: a finite number of env steps >= 0."""
    return _finite_float(text, "a finite number of env steps >= 0", lambda v: v >= 0)


def threshold(text: str) -> tuple[str, float]:
    """An argparse type: ``X`` or ``TASK=X`` with a finite number ``X`` -> ``(task or "*", X)``."""
    task, _, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _bad(repr(text), "a finite number X, or TASK=X (e.g. simple_spread=-100)")
    return task or "*", number


def existing_path(text: str) -> str:
    """An argparse type: a path that exists."""
    if not text or not Path(text).exists():
        raise _bad(repr(text), "an existing path (no such file or directory)")
    return text


def run_path(text: str) -> str:
    """An argparse type: a run directory or a checkpoint file (the run of eval, render)."""
    from eqmarl.train.checkpoint import list_checkpoints

    p = Path(text)
    if not text or not p.exists():
        raise _bad(repr(text), "a run directory or a checkpoint file (no such file or directory)")
    if p.is_dir() and not (list_checkpoints(p / "checkpoints") or list_checkpoints(p)):
        raise _bad(repr(text), "a run directory with checkpoints/ckpt_*.pt, or a checkpoint file (none there)")
    return text


def eval_source(text: str) -> str:
    """An argparse type: :func:`run_path`, or a W&B policy artifact ``wandb:<entity>/<project>/<artifact>[:alias]``."""
    from eqmarl.eval.runs import ARTIFACT_FORM, ARTIFACT_PREFIX, parse_artifact_ref

    if text.startswith(ARTIFACT_PREFIX):
        try:
            parse_artifact_ref(text)
        except ValueError:
            raise _bad(repr(text), ARTIFACT_FORM) from None
        return text
    return run_path(text)


def device(text: str) -> str:
    """An argparse type: a torch device this machine has (cpu, cuda, cuda:<index>)."""
    if text == "cpu":
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise _bad(repr(text), "cpu, cuda, cuda:<index>") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise _bad(text, "cpu (no CUDA device is visible)")
        if dev.index is not None and dev.index >= n:
            raise _bad(text, "cpu, cuda, " + ", ".join(f"cuda:{i}" for i in range(n)))
    elif dev.type != "cpu":
        raise _bad(text, "cpu, cuda, cuda:<index>")
    return text


def output_file(suffixes: tuple[str, ...] = ()) -> Callable[[str], Path]:
    """An argparse type: a file to write (not a directory; ``suffixes``: its allowed endings)."""

    def parse(text: str) -> Path:
        p = Path(text)
        if not text or text.endswith(("/", "\\")) or p.is_dir():
            raise _bad(repr(text), "a file path (this is a directory)")
        if suffixes and p.suffix.lower() not in suffixes:
            raise _bad(repr(text), "a file name ending in " + ", ".join(suffixes))
        return p

    return parse


def output_dir(text: str) -> Path:
    """An argparse type: a directory to write into (created if missing; not an existing file)."""
    p = Path(text)
    if not text or (p.exists() and not p.is_dir()):
        raise _bad(repr(text), "a directory (this is a file)")
    return p


def figure_file(text: str) -> Path:
    """An argparse type: a figure path whose suffix matplotlib writes (png, pdf, svg...)."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = tuple("." + f for f in sorted(FigureCanvasBase.get_supported_filetypes()))
    return output_file(formats)(text)


def requirements(text: str) -> str:
    """An argparse type: comma-separated names of ``eqmarl doctor``'s checks."""
    from eqmarl.doctor import REQUIREMENTS

    unknown = [r for r in (x.strip() for x in text.split(",")) if r and r not in REQUIREMENTS]
    if unknown:
        raise _bad(",".join(unknown), ", ".join(REQUIREMENTS))
    return text


def _check_writable(flag: str, path: Path) -> None:
    """Refuse an output that cannot be written before the work that makes it (a failed write: exit 1)."""
    why = unwritable_reason(path)
    if why is not None:
        raise OutputWriteError(f"{flag} {path}", OSError(0, why))


def _split_overrides(items: list[str]) -> tuple[list[str | Path], list[str]]:
    """``xplay``'s positionals: existing paths, and ``key=value`` overrides."""
    paths: list[str | Path] = []
    overrides: list[str] = []
    for item in items:
        key = item.partition("=")[0]
        is_override = "=" in item and not Path(item).exists() and "/" not in key
        (overrides if is_override else paths).append(item)
    return paths, overrides


# ---------------------------------------------------------------------- commands
def plot(run_dirs: list[str]) -> int:
    """``eqmarl plot``: ``learning_curve.png`` in each run dir (dirs without ``metrics.csv`` skipped)."""
    from eqmarl.eval.plots import plot_learning_curve

    plotted, failed = 0, 0
    for d in run_dirs:
        csv = Path(d) / "metrics.csv"
        if not csv.exists():  # e.g. a dir hydra made for a failed launch: note it, go on
            print(f"eqmarl plot: skipping {d}: not a run dir (no metrics.csv)", file=sys.stderr)
            continue
        try:
            write_stdout(str(plot_learning_curve(csv, Path(d) / "learning_curve.png", title=Path(d).name)))
        except (ValueError, TypeError) as e:
            print(f"eqmarl plot: skipping {d}: unreadable metrics.csv ({e})", file=sys.stderr)
            continue
        except OutputWriteError as e:
            if e.path == "stdout":
                raise
            print(f"eqmarl plot: {e}", file=sys.stderr)
            failed += 1
            continue
        plotted += 1
    if failed:
        return 1
    if not plotted:
        print("eqmarl plot: no run dir (with metrics.csv) among " + ", ".join(run_dirs), file=sys.stderr)
        return 2
    return 0


def sync(run_dirs: list[str], extra: list[str], timeout: float = 600.0) -> int:
    """Upload the offline W&B runs under ``run_dirs`` (and online ones whose upload did not finish)
    with ``wandb sync`` of this Python's wandb.

    ``extra`` options go to ``wandb sync``.  A sync that has not finished after ``timeout``
    seconds is stopped (with the processes it started): exit 124, the run files stay.
    """
    import os
    import signal

    if not 0 < timeout < float("inf"):
        print(f"eqmarl sync: --timeout={timeout}; allowed: a finite number of seconds > 0", file=sys.stderr)
        return 2
    from eqmarl.train.logger import wandb_runs_to_sync

    found = wandb_runs_to_sync(run_dirs)  # offline runs, and online ones whose upload did not finish
    runs = [str(p) for p in found]
    if not runs:
        print("eqmarl sync: no offline W&B runs under " + ", ".join(run_dirs), file=sys.stderr)
        return 2
    if any(not p.name.startswith("offline-") for p in found):
        extra = ["--include-online", *extra]  # wandb sync skips online runs unless told
    # the wandb package this eqmarl runs with, not whichever `wandb` comes first on PATH
    proc = subprocess.Popen([sys.executable, "-m", "wandb", "sync", *extra, *runs], start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # wandb sync and the wandb-core service it started
        proc.wait()
        server = os.environ.get("WANDB_BASE_URL", "the W&B server")
        print(
            f"eqmarl sync: not finished after --timeout={timeout:g} s (is {server} reachable?); "
            f"nothing was deleted: run `eqmarl sync {' '.join(run_dirs)}` again later, "
            "with a larger --timeout for big runs",
            file=sys.stderr,
        )
        return 124
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 130


def xplay(args: argparse.Namespace) -> int:
    """``eqmarl xplay``: the SP/XP table on stdout; ``crossplay.json/.csv/.png`` in ``--out``."""
    from eqmarl.config import ConfigError
    from eqmarl.eval.crossplay import evaluate_crossplay, format_table, write_outputs

    run_dirs, overrides = _split_overrides(args.run_dirs)
    missing = [str(p) for p in run_dirs if not Path(p).exists()]
    if missing or not run_dirs:
        what = repr(missing[0]) if missing else "no run directory"
        print(
            f"eqmarl xplay: argument run_dirs: {what}; allowed: run directories, sweep directories or checkpoint "
            "files (then env.key=value overrides)",
            file=sys.stderr,
        )
        return 2
    for name in ("json", "csv", "png"):
        _check_writable("--out", args.out / f"crossplay.{name}")
    try:
        result = evaluate_crossplay(
            run_dirs, args.games, args.eqc, args.greedy, args.seed, args.device, overrides=overrides
        )
    except ConfigError as e:
        if e.key.startswith("--"):
            print(f"eqmarl xplay: argument {e.key}: {e.value}; allowed: {e.allowed}", file=sys.stderr)
        else:
            print(f"eqmarl xplay: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"eqmarl xplay: {e}", file=sys.stderr)
        return 2
    write_stdout(format_table(result))
    for kind, path in write_outputs(result, args.out).items():
        print(f"[eqmarl] {kind}: {path}", file=sys.stderr)
    return 0


def plot_curves(args: argparse.Namespace) -> int:
    """``eqmarl plot-curves``: sample-efficiency figure and env steps to a threshold (JSON)."""
    from eqmarl.core.files import atomic_write, json_text
    from eqmarl.core.log import stdout_to_stderr
    from eqmarl.eval.plots import find_runs, group_runs, metric_columns, plot_sample_efficiency, threshold_summary

    thresholds = dict(args.threshold or [])
    runs = find_runs([Path(d) for d in args.dirs], args.metric)
    if not runs:
        print("eqmarl plot-curves: no runs (metrics.csv + config.json) under " + ", ".join(args.dirs), file=sys.stderr)
        return 2
    columns = metric_columns(runs)
    if args.metric not in columns:
        print(f"eqmarl plot-curves: argument --metric: {args.metric}; allowed: {', '.join(columns)}", file=sys.stderr)
        return 2
    out_json = args.json or args.out.with_suffix(".json")
    _check_writable("--out", args.out)
    _check_writable("--json", out_json)
    groups = group_runs(runs)
    with stdout_to_stderr() as stdout:  # stdout: only the JSON
        summary = threshold_summary(groups, thresholds, args.at or [])
        png = plot_sample_efficiency(groups, args.out, thresholds, args.metric)
        atomic_write(out_json, json_text(summary) + "\n")
        write_stdout(json_text(summary, indent=None), stdout)
    print(f"[eqmarl] figure: {png}; summary: {out_json}", file=sys.stderr)
    return 0


def default_eval_out(run: str, overrides: list[str]) -> Path:
    """``eqmarl eval``'s default JSON: ``<run dir>/eval_<overrides or train>.json`` (a safe file name)."""
    import hashlib
    import re

    from eqmarl.train.checkpoint import run_dir_of

    p = Path(run)
    run_dir = p if p.is_dir() else run_dir_of(p)
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", "_".join(overrides) or "train")
    if len(name) > 120:  # a file name has at most 255 bytes
        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:12]
    return run_dir / f"eval_{name}.json"


def eval_cmd(args: argparse.Namespace) -> int:
    """``eqmarl eval``: print and write the JSON of a checkpoint's evaluation (stdout: only the JSON)."""
    from eqmarl.config import ConfigError
    from eqmarl.core.files import atomic_write, json_text
    from eqmarl.core.log import stdout_to_stderr
    from eqmarl.eval.evaluate import evaluate_run
    from eqmarl.eval.runs import ARTIFACT_PREFIX, download_artifact

    artifact = args.run.startswith(ARTIFACT_PREFIX)
    if not artifact:
        out = args.out or default_eval_out(args.run, args.overrides)
        _check_writable("--out", out)
    with stdout_to_stderr() as stdout:
        try:
            run = str(download_artifact(args.run)) if artifact else args.run
            if artifact:  # where it was downloaded is known only now
                out = args.out or default_eval_out(run, args.overrides)
                _check_writable("--out", out)
            result = evaluate_run(run, args.overrides, args.episodes, args.seed, args.device, not args.sample)
        except (FileNotFoundError, ValueError, ConfigError) as e:
            print(f"eqmarl eval: {e}", file=sys.stderr)
            return 2
        if artifact:
            result = {**result, "run": args.run, "downloaded_to": run}
        text = json_text(result)
        atomic_write(out, text + "\n")  # first the file: a failed write exits 1 with nothing on stdout
        write_stdout(text, stdout)
    print(f"[eqmarl] {out}", file=sys.stderr)
    return 0


def render_cmd(args: argparse.Namespace) -> int:
    """``eqmarl render``: the GIF at ``--out``; its summary on stdout."""
    from eqmarl.config import ConfigError
    from eqmarl.eval.render import render_run

    _check_writable("--out", args.out)
    try:
        result = render_run(args.run, args.out, args.overrides, args.seed, args.fps, args.steps)
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"eqmarl render: {e}", file=sys.stderr)
        return 2
    write_stdout(str(result))
    return 0


# ------------------------------------------------------------------------ parser
def _examples(*lines: str) -> str:
    """An ``--help`` epilog: the lines under ``examples:``, indented."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``eqmarl`` parser: one subparser per command, every argument typed and checked."""
    from eqmarl.config import MAX_ENVS, MAX_SEED

    seed = int_in(0, MAX_SEED)
    ap = _Parser(
        prog="eqmarl",
        description=textwrap.fill(
            "eqmarl helpers: evaluate, render, compare and plot trained runs; check this machine or image; "
            "install StarCraft II; upload W&B runs.  Training itself: python launch.py [overrides].",
            88,
        ),
        epilog=_examples(
            "python launch.py hydra.run.dir=runs/first      # train the default (MPE simple_spread, E2GN2)",
            "eqmarl eval runs/first --episodes 20            # evaluate it",
            "eqmarl doctor                                   # what this machine or image can run",
            "eqmarl COMMAND --help                           # each command's options and examples",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, *examples: str) -> argparse.ArgumentParser:
        """A subcommand: its one-line summary, what it does, and examples (in its --help)."""
        return sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, 88),
            epilog=_examples(*examples),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    d = command(
        "doctor",
        "show what is installed (the image's self-check)",
        "Check what this machine or image can run: StarCraft II and its maps, pysc2/smacv2, CUDA and NCCL, "
        "the JAX platform, the Hanabi engine, W&B mode, the SLURM client.",
        "eqmarl doctor",
        "eqmarl doctor --json | jq .checks.sc2          # one JSON object on stdout",
        "eqmarl doctor --require sc2,gpu                 # exit 1 naming what is missing",
    )
    d.add_argument("--json", action="store_true", help="one JSON object")
    d.add_argument(
        "--require", default="", type=requirements, help="comma-separated checks that must pass (exit 1 if missing)"
    )
    sub.add_parser(
        "install-sc2", help="install StarCraft II 4.10 and the SMACv2 maps (--help: options)", add_help=False
    )  # its own parser: eqmarl.install_sc2
    p = command(
        "plot",
        "learning curve PNG for run directories",
        "Draw each run's train and eval return against env steps into <run dir>/learning_curve.png.",
        "eqmarl plot runs/first",
        "eqmarl plot outputs/*/*                         # every run under outputs/ (non-runs are skipped)",
    )
    p.add_argument("run_dirs", nargs="+", type=existing_path, help="run directories (others are skipped)")
    s = command(
        "sync",
        "upload offline W&B runs found under run directories",
        "Upload the W&B runs under run or sweep directories (offline runs, and online runs that did not "
        "finish); other options go to wandb sync.",
        "eqmarl sync multirun/2026-11-21/10-00-00       # a sweep's runs, from a login node",
        "eqmarl sync runs/first --timeout 120",
    )
    s.add_argument("run_dirs", nargs="+", type=existing_path)
    s.add_argument(
        "--timeout", type=positive_float, default=600.0, help="seconds before giving up (exit 124; the files stay)"
    )
    x = command(
        "xplay",
        "self-play/cross-play matrix of trained runs (zero-shot coordination)",
        "Play every ordered pairing of trained runs (seat 0: the row's run) and report self-play (diagonal) "
        "and cross-play (off-diagonal) with standard errors, raw and with test-time EQC (--eqc); writes "
        "crossplay.json, .csv and a heatmap.",
        "eqmarl xplay multirun/2026-11-21/10-00-00 --games 5000 --eqc C9 --out xplay/",
        "eqmarl xplay runs/lever-0 runs/lever-1 --games 1000",
    )
    x.add_argument(
        "run_dirs", nargs="+", help="run directories, sweep directories or checkpoint files; then env.key=value"
    )
    x.add_argument("--games", type=int_in(1, MAX_ENVS), default=1000, help="games per pairing")
    x.add_argument("--eqc", default=None, help="also evaluate with test-time EQC over this group (e.g. C5, C9)")
    x.add_argument("--greedy", action="store_true", help="most likely actions instead of samples")
    x.add_argument("--seed", type=seed, default=0, help="env and sampling seed")
    x.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:<index>")
    x.add_argument("--out", type=output_dir, default=Path("xplay"), help="directory for crossplay.json/.csv/.png")
    c = command(
        "plot-curves",
        "return vs env steps per model (mean, s.e. over seeds); steps to a threshold",
        "Group runs by task and model.name, draw a metrics.csv column against env steps (mean and standard "
        "error over seeds) and report, per model, the env steps at which each seed reaches a threshold.",
        "eqmarl plot-curves multirun/mpe_sample_efficiency/2026-11-21_10-00-00 --out curves.png \\",
        "    --threshold simple_spread=-100 --threshold simple_tag=5 --at 120000",
        "eqmarl plot-curves multirun/smax --metric eval_win_rate --out smax.png",
    )
    c.add_argument("dirs", nargs="+", type=existing_path, help="sweep or run directories (with metrics.csv)")
    c.add_argument("--out", type=figure_file, default=Path("curves.png"), help="figure path (.png, .pdf, .svg...)")
    c.add_argument("--threshold", action="append", type=threshold, help="X, or TASK=X per task (repeatable)")
    c.add_argument("--metric", default="eval_return", help="metrics.csv column to plot")
    c.add_argument("--at", action="append", type=step_count, help="also report mean/s.e. at these env steps")
    c.add_argument("--json", type=output_file(), default=None, help="summary path (default: --out with .json)")
    e = command(
        "eval",
        "a checkpoint on other env settings (env.key=value): win rate, return",
        "Evaluate a run's newest checkpoint (or a checkpoint file, or a policy a run logged to W&B with "
        "logger.log_checkpoints=true), optionally on other env settings, and print one JSON document on stdout "
        "(also written to --out).",
        "eqmarl eval runs/first --episodes 20",
        "eqmarl eval runs/smax env.surround_sides=right --episodes 500   # unseen start positions",
        "eqmarl eval runs/smax env.n_units=8 env.n_enemies=8             # another team size",
        "eqmarl eval wandb:me/eqmarl/policy-1a2b3c4d:final               # a W&B artifact (online)",
    )
    e.add_argument(
        "run",
        type=eval_source,
        help="run directory, checkpoint file, or W&B policy artifact wandb:<entity>/<project>/<artifact>[:alias] "
        "(logger.log_checkpoints=true; online only)",
    )
    e.add_argument("overrides", nargs="*", help="env.key=value (e.g. env.surround_sides=right env.n_units=8)")
    e.add_argument("--episodes", type=int_in(1, MAX_ENVS), default=500)
    e.add_argument("--seed", type=seed, default=0)
    e.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:<index>")
    e.add_argument("--sample", action="store_true", help="sample actions instead of the most likely ones")
    e.add_argument("--out", type=output_file(), default=None, help="JSON path (default: RUN/eval_<overrides>.json)")
    r = command(
        "render",
        "one deterministic episode as a GIF",
        "Render one deterministic episode of a trained run (MPE, SMAX) as a GIF.",
        "eqmarl render runs/first --out episode.gif",
        "eqmarl render runs/smax env.surround_sides=right --out right.gif --fps 4",
    )
    r.add_argument("run", type=run_path, help="run directory or checkpoint file")
    r.add_argument("overrides", nargs="*", help="env.key=value")
    r.add_argument("--out", type=output_file((".gif",)), default=Path("episode.gif"), help="the GIF's path")
    r.add_argument("--seed", type=seed, default=0)
    r.add_argument("--fps", type=int_in(1, 100), default=8, help="frames per second")
    r.add_argument("--steps", type=int_in(1), default=None, help="only the episode's first N steps")
    return ap


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse a command line (not install-sc2's); exits 2 with one line for a bad argument.

    Options and ``env.key=value`` overrides may come in any order; unknown options are
    refused, except ``sync``'s, which go to ``wandb sync``.
    """
    ap = build_parser()
    if not argv or argv[0] not in _commands(ap):
        return ap.parse_args(argv), []  # --help, or the error naming the commands
    sp = _commands(ap)[argv[0]]
    if argv[0] == "sync":
        args, extra = sp.parse_known_args(argv[1:])
    else:
        args, extra = sp.parse_intermixed_args(argv[1:]), []
    args.cmd = argv[0]
    return args, extra


def _commands(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def main(argv: list[str] | None = None) -> int:
    """``eqmarl``: exit 0 done, 1 a failed command or write (one line), 2 bad input (one line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # argparse exits (2: a bad argument, 0: --help); callers in this process get the code
        if argv[:1] == ["install-sc2"]:
            from eqmarl.install_sc2 import main as install_sc2

            return install_sc2(argv[1:])
        args, extra = parse(argv)
    except SystemExit as e:
        return 0 if e.code is None else e.code if isinstance(e.code, int) else 2
    try:
        return _dispatch(args, extra)
    except OutputWriteError as e:  # what was written before is in place; this file is not, not even in part
        print(f"eqmarl {args.cmd}: {e}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    if args.cmd == "eval":
        return eval_cmd(args)
    if args.cmd == "render":
        return render_cmd(args)
    if args.cmd == "doctor":
        from eqmarl.doctor import main as doctor_main

        return doctor_main(args.json, args.require)
    if args.cmd == "plot":
        return plot(args.run_dirs)
    if args.cmd == "plot-curves":
        return plot_curves(args)
    if args.cmd == "xplay":
        return xplay(args)
    return sync(args.run_dirs, extra, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
