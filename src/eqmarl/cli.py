"""``eqmarl`` console entry: helpers around runs (training itself is ``python launch.py``).

eqmarl doctor [--json] [--require sc2,gpu,...]   what is installed (the image's self-check)
eqmarl install-sc2 --accept-license [--dest DIR]   StarCraft II 4.10 + SMACv2 maps
eqmarl plot RUN_DIR...        learning curve PNG of each run (metrics.csv)
eqmarl sync RUN_DIR...        upload offline W&B runs (wraps ``wandb sync``)
eqmarl plot-curves DIR... --out fig.png --threshold X   mean +- s.e. over seeds per model
eqmarl xplay RUN_DIR...       self-play/cross-play matrix of checkpoints (+ test-time EQC)
eqmarl eval RUN [env.k=v...]  a checkpoint on other env settings: win rate, return (JSON)
eqmarl render RUN             one deterministic episode as a GIF
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def plot(run_dirs: list[str]) -> int:
    from eqmarl.eval.plots import plot_learning_curve

    plotted = 0
    for d in run_dirs:
        csv = Path(d) / "metrics.csv"
        if not csv.exists():  # e.g. a dir hydra made for a failed launch: note it, go on
            print(f"eqmarl plot: skipping {d}: not a run dir (no metrics.csv)", file=sys.stderr)
            continue
        print(plot_learning_curve(csv, Path(d) / "learning_curve.png", title=Path(d).name))
        plotted += 1
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
    from eqmarl.eval.crossplay import evaluate_crossplay, format_table, write_outputs

    try:
        result = evaluate_crossplay(args.run_dirs, args.games, args.eqc, args.greedy, args.seed, args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"eqmarl xplay: {e}", file=sys.stderr)
        return 2
    print(format_table(result))
    for kind, path in write_outputs(result, args.out).items():
        print(f"[eqmarl] {kind}: {path}")
    return 0


def plot_curves(args: argparse.Namespace) -> int:
    """``eqmarl plot-curves``: sample-efficiency figure and env steps to a threshold (JSON)."""
    import json

    from eqmarl.core.log import stdout_to_stderr
    from eqmarl.eval.plots import find_runs, group_runs, plot_sample_efficiency, threshold_summary

    thresholds: dict[str, float] = {}
    for t in args.threshold or []:
        task, _, value = t.rpartition("=")
        try:
            thresholds[task or "*"] = float(value)
        except ValueError:
            print(f"eqmarl plot-curves: --threshold {t!r}; allowed: a number or TASK=NUMBER", file=sys.stderr)
            return 2
    groups = group_runs(find_runs([Path(d) for d in args.dirs], args.metric))
    if not groups:
        print("eqmarl plot-curves: no runs (metrics.csv + config.json) under " + ", ".join(args.dirs), file=sys.stderr)
        return 2
    with stdout_to_stderr() as stdout:  # stdout: only the JSON
        png = plot_sample_efficiency(groups, Path(args.out), thresholds, args.metric)
        summary = threshold_summary(groups, thresholds, [float(x) for x in args.at or []])
        out_json = Path(args.json) if args.json else png.with_suffix(".json")
        out_json.write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary), file=stdout)
    print(f"[eqmarl] figure: {png}; summary: {out_json}", file=sys.stderr)
    return 0


def eval_cmd(args: argparse.Namespace) -> int:
    """``eqmarl eval``: print and write the JSON of a checkpoint's evaluation (stdout: only the JSON)."""
    import json

    from eqmarl.config import ConfigError
    from eqmarl.core.log import stdout_to_stderr
    from eqmarl.eval.evaluate import evaluate_run

    with stdout_to_stderr() as stdout:
        try:
            result = evaluate_run(args.run, args.overrides, args.episodes, args.seed, args.device, not args.sample)
        except (FileNotFoundError, ValueError, ConfigError) as e:
            print(f"eqmarl eval: {e}", file=sys.stderr)
            return 2
        text = json.dumps(result, indent=2)
        print(text, file=stdout)
    out = Path(args.out) if args.out else Path(args.run) / ("eval_" + ("_".join(args.overrides) or "train") + ".json")
    if out.parent.is_dir():
        out.write_text(text + "\n")
        print(f"[eqmarl] {out}", file=sys.stderr)
    return 0


def render_cmd(args: argparse.Namespace) -> int:
    from eqmarl.config import ConfigError
    from eqmarl.eval.render import render_run

    try:
        result = render_run(args.run, args.out, args.overrides, args.seed, args.fps, args.steps)
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"eqmarl render: {e}", file=sys.stderr)
        return 2
    print(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="eqmarl", description="eqmarl helpers (train with: python launch.py)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("doctor", help="show what is installed (the image's self-check)")
    d.add_argument("--json", action="store_true", help="one JSON object")
    d.add_argument("--require", default="", help="comma-separated checks that must pass (exit 1 naming the missing)")
    sub.add_parser(
        "install-sc2", help="install StarCraft II 4.10 and the SMACv2 maps (--help: options)", add_help=False
    )
    p = sub.add_parser("plot", help="learning curve PNG for run directories")
    p.add_argument("run_dirs", nargs="+")
    s = sub.add_parser("sync", help="upload offline W&B runs found under run directories")
    s.add_argument("run_dirs", nargs="+")
    s.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before giving up (exit 124; the files stay); default 600"
    )
    x = sub.add_parser("xplay", help="self-play/cross-play matrix of trained runs (zero-shot coordination)")
    x.add_argument("run_dirs", nargs="+", help="run directories, sweep directories or checkpoint files")
    x.add_argument("--games", type=int, default=1000, help="games per pairing")
    x.add_argument("--eqc", default=None, help="also evaluate with test-time EQC over this group (e.g. C5, C9)")
    x.add_argument("--greedy", action="store_true", help="most likely actions instead of samples")
    x.add_argument("--seed", type=int, default=0, help="env and sampling seed")
    x.add_argument("--device", default="cpu")
    x.add_argument("--out", default="xplay", help="directory for crossplay.json/.csv/.png")
    c = sub.add_parser(
        "plot-curves", help="return vs env steps per model (mean, s.e. over seeds); steps to a threshold"
    )
    c.add_argument("dirs", nargs="+", help="sweep or run directories (searched for metrics.csv + config.json)")
    c.add_argument("--out", default="curves.png", help="figure path (the JSON summary goes beside it)")
    c.add_argument("--threshold", action="append", help="return threshold: X, or TASK=X per task (repeatable)")
    c.add_argument("--metric", default="eval_return", help="metrics.csv column to plot")
    c.add_argument("--at", action="append", type=float, help="also report mean/s.e. at these env steps (repeatable)")
    c.add_argument("--json", default=None, help="summary path (default: --out with .json)")
    e = sub.add_parser("eval", help="a checkpoint on other env settings (env.key=value): win rate, return")
    e.add_argument("run", help="run directory or checkpoint file")
    e.add_argument("overrides", nargs="*", help="env.key=value (e.g. env.surround_sides=right env.n_units=8)")
    e.add_argument("--episodes", type=int, default=500)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--sample", action="store_true", help="sample actions instead of the most likely ones")
    e.add_argument("--out", default=None, help="JSON path (default: RUN/eval_<overrides>.json)")
    r = sub.add_parser("render", help="one deterministic episode as a GIF")
    r.add_argument("run", help="run directory or checkpoint file")
    r.add_argument("overrides", nargs="*", help="env.key=value")
    r.add_argument("--out", default="episode.gif")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--fps", type=int, default=8)
    r.add_argument("--steps", type=int, default=None, help="only the episode's first N steps")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["install-sc2"]:
        from eqmarl.install_sc2 import main as install_sc2

        return install_sc2(argv[1:])
    args, extra = ap.parse_known_args(argv)
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
