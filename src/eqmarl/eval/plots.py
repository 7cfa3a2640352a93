"""Learning-curve plots from ``metrics.csv`` files.

One run: :func:`plot_learning_curve`.  Many runs (a sweep over models and seeds):
:func:`find_runs` -> :func:`group_runs` -> :func:`plot_sample_efficiency` (mean and
standard error over seeds, paper style) and :func:`threshold_summary` (env steps to
reach a return threshold), behind ``eqmarl plot-curves``.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eqmarl.core.files import atomic_output
from eqmarl.core.log import get_logger
from eqmarl.train.logger import read_metrics_table

log = get_logger("eval")


def read_metrics(path: Path) -> dict[str, list[float]]:
    """Columns of a metrics.csv as float lists (blank or unreadable cells are NaN).

    Any eqmarl version's file reads, rows wider than the header included; what can be read
    of a damaged one is used and the damage reported in one line
    (:func:`~eqmarl.train.logger.read_metrics_table`).
    """
    table = read_metrics_table(path)
    if table.problems:
        log.warning(f"{path} is damaged ({'; '.join(table.problems)}): using its readable rows")
    return {c: [_number(r.get(c, "")) for r in table.rows] for c in table.columns}


def _number(cell: str) -> float:
    try:
        return float(cell) if cell else math.nan
    except ValueError:
        return math.nan


def plot_learning_curve(metrics_csv: Path, out_png: Path, title: str = "") -> Path:
    """Draw train and eval return against env steps; returns the PNG path.

    Raises:
        OutputWriteError: the PNG could not be written (nothing is left at ``out_png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics_csv)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = m.get("env_steps", [])
    for key, style, label in (
        ("train_return", "-", "train (stochastic)"),
        ("eval_return", "o-", "eval (deterministic)"),
    ):
        pts = [(s, v) for s, v in zip(steps, m.get(key, [])) if not math.isnan(v)]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, style, label=label, markersize=3)
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_png = Path(out_png)
    save_figure(fig, out_png)
    return out_png


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure to ``path`` atomically (format from the suffix; PNG without one), then close it.

    Raises:
        OutputWriteError: the file could not be written (nothing is left at ``path``).
    """
    import matplotlib.pyplot as plt

    try:
        with atomic_output(path) as f:
            fig.savefig(f, format=path.suffix[1:].lower() or "png")
    finally:
        plt.close(fig)


# ------------------------------------------------------------ sample-efficiency curves
@dataclass
class RunCurve:
    """One run's metric against env steps (only the rows where the metric was logged).

    Attributes:
        path: the run directory.
        task: ``<env>`` or ``<env>/<scenario>`` (from config.json).
        model: ``model.name`` (from config.json).
        seed: the run's seed.
        steps: env steps of the logged points, ascending.
        values: the metric at those steps.
    """

    path: Path
    task: str
    model: str
    seed: int
    steps: list[float]
    values: list[float]


def find_runs(dirs: list[Path], metric: str = "eval_return") -> list[RunCurve]:
    """Every run under ``dirs`` (a directory holding ``metrics.csv`` and ``config.json``).

    A run whose files cannot be read (a damaged ``config.json`` or ``metrics.csv``) is
    skipped with a warning naming it.

    Args:
        dirs: run directories or sweep directories (searched recursively).
        metric: the metrics.csv column to read; rows where it is blank are skipped.
    """
    seen: set[Path] = set()
    runs: list[RunCurve] = []
    for d in map(Path, dirs):
        for csv_path in sorted([d / "metrics.csv"] if (d / "metrics.csv").exists() else d.rglob("metrics.csv")):
            run = csv_path.parent.resolve()
            cfg_path = run / "config.json"
            if run in seen or not cfg_path.exists():
                continue
            seen.add(run)
            try:
                cfg = json.loads(cfg_path.read_text(errors="replace"))
                env = cfg.get("env", {})
                task = env.get("name", "?") + (f"/{env['scenario']}" if env.get("scenario") else "")
                cols = read_metrics(csv_path)
                seed = int(cfg.get("seed", 0))
            except (OSError, ValueError, TypeError, AttributeError) as e:
                log.warning(f"skipping {run}: unreadable config.json or metrics.csv ({type(e).__name__}: {e})")
                continue
            pts = sorted((s, v) for s, v in zip(cols.get("env_steps", []), cols.get(metric, [])) if not math.isnan(v))
            runs.append(
                RunCurve(
                    path=run,
                    task=task,
                    model=str(cfg.get("model", {}).get("name", "?")),
                    seed=seed,
                    steps=[p[0] for p in pts],
                    values=[p[1] for p in pts],
                )
            )
    return runs


def metric_columns(runs: list[RunCurve]) -> list[str]:
    """The columns of the runs' ``metrics.csv`` files (in the first run's order, then new ones)."""
    out: list[str] = []
    for r in runs:
        header = read_metrics_table(r.path / "metrics.csv").columns
        out += [c for c in header if c not in out]
    return out


def group_runs(runs: list[RunCurve]) -> dict[str, dict[str, list[RunCurve]]]:
    """``{task: {model: [runs sorted by seed]}}``."""
    groups: dict[str, dict[str, list[RunCurve]]] = {}
    for r in runs:
        groups.setdefault(r.task, {}).setdefault(r.model, []).append(r)
    for by_model in groups.values():
        for rs in by_model.values():
            rs.sort(key=lambda r: (r.seed, str(r.path)))
    return groups


def _interp(xs: list[float], ys: list[float], x: float) -> float:
    """Linear interpolation of ``(xs, ys)`` at ``x`` (``xs`` ascending, ``xs[0] <= x <= xs[-1]``)."""
    i = bisect.bisect_left(xs, x)
    if i < len(xs) and xs[i] == x:
        return ys[i]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def mean_se_curve(runs: list[RunCurve]) -> tuple[list[float], list[float], list[float]]:
    """Mean and standard error over runs, on the union of their steps.

    Runs are linearly interpolated onto the grid; the grid stops at the shortest run's
    last step, so every point averages every run.  The standard error is
    ``std (ddof=1) / sqrt(n)`` (0 for a single run).

    Returns:
        ``(steps, mean, se)``.
    """
    runs = [r for r in runs if r.steps]
    if not runs:
        return [], [], []
    lo = max(r.steps[0] for r in runs)
    hi = min(r.steps[-1] for r in runs)
    grid = sorted({s for r in runs for s in r.steps if lo <= s <= hi})
    means, ses = [], []
    for x in grid:
        mu, se = mean_se([_interp(r.steps, r.values, x) for r in runs])
        means.append(mu)
        ses.append(se)
    return grid, means, ses


def mean_se(ys: list[float]) -> tuple[float, float]:
    """Mean and standard error ``std (ddof=1) / sqrt(n)`` (0 for one value) of ``ys`` (non-empty)."""
    n = len(ys)
    mu = sum(ys) / n
    var = sum((y - mu) ** 2 for y in ys) / (n - 1) if n > 1 else 0.0
    return mu, math.sqrt(var / n)


def steps_to_threshold(steps: list[float], values: list[float], threshold: float) -> float | None:
    """Env steps of the first point whose value is at least ``threshold`` (None: never)."""
    for s, v in zip(steps, values):
        if v >= threshold:
            return s
    return None


def threshold_for(task: str, thresholds: dict[str, float]) -> float | None:
    """The threshold of ``task`` (``env/scenario``): by full name, by scenario, else ``"*"``."""
    for key in (task, task.rsplit("/", 1)[-1], "*"):
        if key in thresholds:
            return thresholds[key]
    return None


def value_at(run: RunCurve, x: float) -> float | None:
    """The run's value at ``x`` env steps (linear interpolation; None outside its steps)."""
    if not run.steps or x < run.steps[0] or x > run.steps[-1]:
        return None
    return _interp(run.steps, run.values, x)


def threshold_summary(
    groups: dict[str, dict[str, list[RunCurve]]], thresholds: dict[str, float], at_steps: Sequence[float] = ()
) -> dict[str, dict[str, Any]]:
    """Per task and model: env steps to first reach the task's threshold.

    Args:
        groups: from :func:`group_runs`.
        thresholds: task (``env/scenario`` or ``scenario``) -> threshold; the key
            ``"*"`` applies to tasks not named.

    Returns:
        ``{task: {"threshold": t, "models": {model: {...}}}}`` where each model has
        ``seeds``, ``steps_per_seed`` (None where a seed never reached it),
        ``reached`` (how many did), ``mean_steps`` (over the seeds that reached it;
        None if none), ``mean_curve_steps`` (first step where the seed-mean curve
        reaches it), ``final_mean``/``final_se`` (the mean curve's last point) and
        ``max_steps`` (the shortest run's last step); with ``at_steps``, ``at`` maps
        each of those step counts to ``{"mean", "se", "n"}`` over the seeds whose runs
        cover it (interpolated; early-training comparisons).
    """
    out: dict[str, dict[str, Any]] = {}
    for task, by_model in sorted(groups.items()):
        thr = threshold_for(task, thresholds)
        models: dict[str, Any] = {}
        for model, runs in sorted(by_model.items()):
            grid, mean, se = mean_se_curve(runs)
            entry: dict[str, Any] = {
                "seeds": [r.seed for r in runs],
                "final_mean": mean[-1] if mean else None,
                "final_se": se[-1] if se else None,
                "max_steps": grid[-1] if grid else None,
            }
            if at_steps:
                entry["at"] = {}
                for x in at_steps:
                    ys = [y for y in (value_at(r, x) for r in runs) if y is not None]
                    mu_x, se_x = mean_se(ys) if ys else (None, None)
                    entry["at"][f"{x:g}"] = {"mean": mu_x, "se": se_x, "n": len(ys)}
            if thr is not None:
                per_seed = [steps_to_threshold(r.steps, r.values, thr) for r in runs]
                hit = [s for s in per_seed if s is not None]
                entry.update(
                    steps_per_seed=per_seed,
                    reached=len(hit),
                    mean_steps=sum(hit) / len(hit) if hit else None,
                    mean_curve_steps=steps_to_threshold(grid, mean, thr),
                )
            models[model] = entry
        out[task] = {"threshold": thr, "models": models}
    return out


# paper-style colours: the equivariant models warm, the baselines cool
MODEL_COLORS = {"e2gn2": "tab:red", "egnn": "tab:orange", "gnn": "tab:blue", "mlp": "tab:gray"}


def plot_sample_efficiency(
    groups: dict[str, dict[str, list[RunCurve]]],
    out_png: Path,
    thresholds: dict[str, float] | None = None,
    metric: str = "eval_return",
) -> Path:
    """One panel per task: mean (line) and standard error (band) over seeds per model.

    Args:
        groups: from :func:`group_runs`.
        out_png: where to write the figure (its format from the suffix: png, pdf, svg...;
            written atomically, missing directories created).
        thresholds: as for :func:`threshold_summary`, drawn as a dashed line.
        metric: the y-axis label.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = thresholds or {}
    tasks = sorted(groups)
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5.5 * max(1, len(tasks)), 4), dpi=100, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for model, runs in sorted(groups[task].items()):
            grid, mean, se = mean_se_curve(runs)
            if not grid:
                continue
            color = MODEL_COLORS.get(model)
            ax.plot(grid, mean, marker=".", markersize=4, label=f"{model} (n={len(runs)})", color=color)
            ax.fill_between(
                grid, [m - s for m, s in zip(mean, se)], [m + s for m, s in zip(mean, se)], color=color, alpha=0.2
            )
        thr = threshold_for(task, thresholds)
        if thr is not None:
            ax.axhline(thr, color="black", linestyle="--", linewidth=0.8, label=f"threshold {thr:g}")
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    save_figure(fig, out_png)
    return out_png
