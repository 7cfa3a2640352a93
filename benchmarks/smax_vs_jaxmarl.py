#!/usr/bin/env python
"""eqmarl against JaxMARL's own MAPPO at equal training wall time on the same SMAX battles.

    python benchmarks/smax_vs_jaxmarl.py run --script <JaxMARL>/baselines/MAPPO/mappo_rnn_smax.py \
        --out docs/results/smax_vs_jaxmarl [--experiment smacv2_generalization] [--models e2gn2] \
        [--seeds 0 1 2] [--minutes 10] [--jaxmarl-scenario eqmarl_left]
    python benchmarks/smax_vs_jaxmarl.py summary --out docs/results/smax_vs_jaxmarl [--plot]

``run`` trains, one process at a time (never side by side: both want the 2 cores), for each
seed: each eqmarl model with ``python launch.py experiment=<experiment> model=<m> seed=<s>``
(the preset's defaults, whatever they are; its ``wall_s`` includes the SMAX compile), stopped
once its ``metrics.csv`` passes ``--minutes`` of ``wall_s``; then JaxMARL's MAPPO-RNN through
``benchmarks/jaxmarl_mappo_smax.py`` (its default config, unmodified; its clock starts after
its compile, which is reported beside it).  A side whose result exists is skipped, so a
stopped ``run`` resumes.  Each run's load averages are recorded.

``summary`` prints one JSON object (and writes ``summary.json``): the training win rate
(episodes won / episodes ended in the rollout, both sides) at 1, 3, 5, 7 and 10 minutes and
at fixed env steps, each the mean of the updates ending in the 30 s (or 20k env steps)
before the mark, per seed and as a mean over seeds; ``--plot`` also draws ``curves.png``
(the seeds' mean against wall time and against env steps, each seed thin).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
MARKS_MIN = (1, 3, 5, 7, 10)
MARKS_STEPS = (100_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_000_000, 1_200_000)
WINDOW_S = 30.0
WINDOW_STEPS = 20_000


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _eqmarl_rows(metrics: Path) -> list[dict[str, float]]:
    """A run's metrics.csv as rows (eqmarl's own reader: a row being written reads as what it holds)."""
    from eqmarl.eval.plots import read_metrics

    if not metrics.exists():
        return []
    m = read_metrics(metrics)
    cols = (m.get(k, []) for k in ("env_steps", "wall_s", "win_rate", "train_return"))
    return [
        {"env_steps": int(n), "wall_s": w, "win_rate": r, "return": t}
        for n, w, r, t in zip(*cols)
        if not (math.isnan(n) or math.isnan(w))
    ]


def run_eqmarl(out: Path, experiment: str, model: str, seed: int, minutes: float, extra: list[str]) -> None:
    res = out / f"eqmarl_{model}_s{seed}.json"
    if res.exists():
        print(f"skip {res} (exists)", file=sys.stderr)
        return
    run_dir = out / "runs" / f"eqmarl_{model}_s{seed}"
    if run_dir.exists():
        raise SystemExit(f"{run_dir} holds an unfinished run: remove it to run this side again")
    cmd = [
        sys.executable, "launch.py", f"experiment={experiment}", f"model={model}", f"seed={seed}",
        "logger.wandb_mode=disabled", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip
    load_before = _load()
    log = (out / "runs" / f"eqmarl_{model}_s{seed}.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    t0 = time.time()
    rows: list[dict[str, float]] = []
    while proc.poll() is None:
        time.sleep(2.0)
        rows = _eqmarl_rows(run_dir / "metrics.csv")
        if rows and rows[-1]["wall_s"] >= minutes * 60.0:
            break
        if time.time() - t0 > minutes * 60.0 + 600:  # a run that never logs: stop it
            break
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rows = _eqmarl_rows(run_dir / "metrics.csv")
    result = {
        "side": "eqmarl",
        "command": " ".join(cmd[1:]),
        "model": model,
        "seed": seed,
        "minutes": minutes,
        "load_before": load_before,
        "load_after": _load(),
        "rows": rows,
    }
    res.write_text(json.dumps(result) + "\n")


def run_jaxmarl(out: Path, script: Path, scenario: str, seed: int, minutes: float, commit: str | None) -> None:
    res = out / f"jaxmarl_mappo_s{seed}.json"
    if res.exists():
        print(f"skip {res} (exists)", file=sys.stderr)
        return
    cmd = [
        sys.executable, "benchmarks/jaxmarl_mappo_smax.py", "--script", str(script), "--scenario", scenario,
        "--seed", str(seed), "--minutes", str(minutes), "--out", str(res.resolve()),
    ]  # fmt: skip
    if commit:
        cmd += ["--jaxmarl-commit", commit]
    with (out / "runs" / f"jaxmarl_mappo_s{seed}.log").open("w") as log:
        subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, check=True)
    d = json.loads(res.read_text())
    d["side"] = "jaxmarl"
    res.write_text(json.dumps(d) + "\n")


def _window_mean(rows: list[dict[str, float]], key: str, mark: float, width: float) -> float | None:
    vals = [r["win_rate"] for r in rows if mark - width < r[key] <= mark and not math.isnan(r["win_rate"])]
    if not vals or rows[-1][key] < mark:
        return None
    return round(sum(vals) / len(vals), 4)


def load_sides(out: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """The runs' results in ``out``: side name (``eqmarl_<model>``, ``jaxmarl_mappo``) -> seed -> result."""
    sides: dict[str, dict[int, dict[str, Any]]] = {}
    for f in sorted(out.glob("*_s*.json")):
        d = json.loads(f.read_text())
        name = "jaxmarl_mappo" if d.get("side") == "jaxmarl" else f"eqmarl_{d['model']}"
        sides.setdefault(name, {})[int(d["seed"])] = d
    return sides


def summary(out: Path) -> dict[str, Any]:
    sides = load_sides(out)
    res: dict[str, Any] = {
        "benchmark": "smax_vs_jaxmarl (python benchmarks/smax_vs_jaxmarl.py summary)",
        "metric": "training win rate: episodes won / episodes ended in the rollout; each mark is the mean of "
        f"the updates ending in the {WINDOW_S:.0f} s (time) or {WINDOW_STEPS} env steps before it",
        "clocks": "eqmarl: wall_s of metrics.csv (from the process's start: the SMAX compile included); "
        "JaxMARL: from the call of its compiled program (its compile_s not included)",
        "sides": {},
    }
    for name, seeds in sides.items():
        per_seed: dict[str, Any] = {}
        for s, d in sorted(seeds.items()):
            rows = d["rows"]
            per_seed[str(s)] = {
                "at_minutes": {str(m): _window_mean(rows, "wall_s", m * 60.0, WINDOW_S) for m in MARKS_MIN},
                "at_env_steps": {str(n): _window_mean(rows, "env_steps", n, WINDOW_STEPS) for n in MARKS_STEPS},
                "env_steps_at_end": rows[-1]["env_steps"] if rows else 0,
                "wall_s_at_end": rows[-1]["wall_s"] if rows else 0,
                "load_before": d.get("load_before"),
                "load_after": d.get("load_after"),
                **({"compile_s": d["compile_s"]} if "compile_s" in d else {}),
            }

        def mean_of(kind: str, key: str, per_seed: dict[str, Any] = per_seed) -> dict[str, Any]:
            vals = [p[kind][key] for p in per_seed.values()]
            ok = [v for v in vals if v is not None]
            return {"mean": round(sum(ok) / len(ok), 4) if len(ok) == len(vals) and ok else None, "n": len(ok)}

        res["sides"][name] = {
            "seeds": per_seed,
            "mean_at_minutes": {str(m): mean_of("at_minutes", str(m)) for m in MARKS_MIN},
            "mean_at_env_steps": {str(n): mean_of("at_env_steps", str(n)) for n in MARKS_STEPS},
        }
    (out / "summary.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def plot(out: Path) -> Path:
    """``curves.png``: win rate against wall time and against env steps (30 s / 20k-step windows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"jaxmarl_mappo": "tab:gray"}
    for name, by_seed in load_sides(out).items():
        docs = list(by_seed.values())
        colour = colours.setdefault(name, f"C{len(colours) - 1}")
        for ax, key, width, scale in ((axes[0], "wall_s", WINDOW_S, 60.0), (axes[1], "env_steps", WINDOW_STEPS, 1e6)):
            ends = [d["rows"][-1][key] if d["rows"] else 0 for d in docs]
            curves = []
            for d, end in zip(docs, ends):  # each seed thin
                xs = list(range(int(width), int(end) + 1, int(width)))
                ys = [_window_mean(d["rows"], key, x, width) for x in xs]
                curves.append(dict(zip(xs, ys)))
                pts = [(x / scale, y) for x, y in zip(xs, ys) if y is not None]
                if pts:
                    ax.plot(*zip(*pts), color=colour, lw=0.8, alpha=0.35)
            # the seeds' mean, where every seed has a value
            xs = list(range(int(width), int(min(ends)) + 1, int(width)))
            mean = [
                (x / scale, sum(c[x] for c in curves) / len(curves))
                for x in xs
                if all(c.get(x) is not None for c in curves)
            ]
            if mean:
                ax.plot(*zip(*mean), color=colour, lw=2, label=f"{name} (mean of {len(docs)} seeds)")
    axes[0].set_xlabel("training wall time (min)")
    axes[1].set_xlabel("env steps (M)")
    for ax in axes:
        ax.set_ylabel("training win rate")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("run", "summary"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--script", type=Path, help="JaxMARL's baselines/MAPPO/mappo_rnn_smax.py")
    ap.add_argument("--jaxmarl-commit")
    ap.add_argument("--experiment", default="smacv2_generalization")
    ap.add_argument("--jaxmarl-scenario", default="eqmarl_left")
    ap.add_argument("--models", nargs="+", default=["e2gn2"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sides", nargs="+", default=["eqmarl", "jaxmarl"], choices=("eqmarl", "jaxmarl"))
    ap.add_argument("--plot", action="store_true", help="summary: also draw curves.png")
    ap.add_argument("overrides", nargs="*", help="extra launch.py overrides for the eqmarl side")
    args = ap.parse_intermixed_args()  # launch.py overrides may follow the options
    if args.what == "summary":
        if args.plot:
            plot(args.out)
        print(json.dumps(summary(args.out)))
        return
    if "jaxmarl" in args.sides:  # before any run: a bad script would stop the queue after the eqmarl side
        if args.script is None:
            raise SystemExit("--script: JaxMARL's baselines/MAPPO/mappo_rnn_smax.py is needed for the JaxMARL side")
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from jaxmarl_mappo_smax import check_script

        check_script(args.script)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    for s in args.seeds:
        if "eqmarl" in args.sides:
            for m in args.models:
                run_eqmarl(args.out, args.experiment, m, s, args.minutes, args.overrides)
        if "jaxmarl" in args.sides:
            assert args.script is not None
            run_jaxmarl(args.out, args.script, args.jaxmarl_scenario, s, args.minutes, args.jaxmarl_commit)
    print(json.dumps(summary(args.out)))


if __name__ == "__main__":
    main()
