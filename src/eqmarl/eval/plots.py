"""Learning-curve plots from ``metrics.csv`` files."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def read_metrics(path: Path) -> dict[str, list[float]]:
    """Columns of a metrics.csv as float lists (blank cells are NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            cols.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
    return cols


def plot_learning_curve(metrics_csv: Path, out_png: Path, title: str = "") -> Path:
    """Draw train and eval return against env steps; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics_csv)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    steps = m.get("env_steps", [])
    for key, style, label in (("train_return", "-", "train (stochastic)"), ("eval_return", "o-", "eval (deterministic)")):
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
    fig.savefig(out_png)
    plt.close(fig)
    return out_png
