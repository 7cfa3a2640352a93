#!/usr/bin/env python
"""What the SMAX choice head does early in training: per-iteration choice fractions.

    python benchmarks/smax_choice_stats.py --iterations 60 [--out stats.json] [launch.py overrides...]
    python benchmarks/smax_choice_stats.py --iterations 60 experiment=smacv2_generalization seed=1 \\
        model.mixed_entropy=joint
    python benchmarks/smax_choice_stats.py --summary docs/results/smax_choice_stats

Trains with ``launch.py``'s overrides (no W&B, evaluations or checkpoints) for
``--iterations`` iterations and records, for every rollout, over the transitions of live
agents (those with move or attack available): the share of each choice (stop / move /
attack), the share in which attack was available (an enemy in range), the share of
those in which the agent attacked or stopped, and the rollout's win rate and mean
episode return, beside the iteration's ``env_steps`` and ``entropy`` from ``metrics.csv``.
Prints one JSON object on stdout: the rows and the mean win rate in 20k-env-step windows.
``--summary DIR`` reads the JSON files in ``DIR`` and prints (and writes ``summary.json``)
each run's windows and, per ``model.mixed_entropy``, their mean over the runs.

Where the units go (graphs with enemy nodes, SMAX): the mean distance to the nearest live
enemy, and for the ``move`` choices the cosine between the move vector and the direction
to that enemy and the move's length.

A seed that "finds the attack late" shows here as a choice that drifts to ``move``
while ``attack_avail`` falls: its units walk out of range (see ``model.mixed_entropy``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

WINDOW = 20_000


def choice_stats(rollout) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The choice fractions of one rollout (see the module docstring)."""
    from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, CHOICE_STOP

    choice = rollout.action[..., 0].long()
    mask = rollout.obs.action_mask
    alive = mask[..., CHOICE_MOVE] | mask[..., CHOICE_ATTACK]
    can_attack = mask[..., CHOICE_ATTACK] & alive
    n_alive = max(1, int(alive.sum()))
    n_can = max(1, int(can_attack.sum()))
    row = {"alive": float(alive.float().mean())}
    for name, c in (("stop", CHOICE_STOP), ("move", CHOICE_MOVE), ("attack", CHOICE_ATTACK)):
        row[name] = int(((choice == c) & alive).sum()) / n_alive
    row["attack_avail"] = int(can_attack.sum()) / n_alive
    row["attack_when_avail"] = int(((choice == CHOICE_ATTACK) & can_attack).sum()) / n_can
    row["stop_when_avail"] = int(((choice == CHOICE_STOP) & can_attack).sum()) / n_can
    graph = getattr(rollout.obs, "graph", None)
    if graph is not None and graph.node_group is not None:
        row.update(move_stats(rollout.action, graph, alive, (choice == CHOICE_MOVE) & alive))
    wins = rollout.episode_wins
    row["win_rate"] = float(wins.float().mean()) if wins is not None and wins.numel() else float("nan")
    ret = rollout.episode_returns
    row["return"] = float(ret.mean()) if ret.numel() else float("nan")
    return row


def move_stats(action, graph, alive, moved) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Where the live units are and go: ``nearest_enemy``, the mean distance from a live
    agent to the nearest live enemy (the graph's position units); over the transitions
    that chose ``move``, ``move_toward_enemy``, the mean cosine between the sampled move
    vector and the direction to that enemy (1: straight at it, -1: straight away, 0 for
    random directions), and ``move_length``, its mean length clipped to 1 (the env's
    speed fraction)."""
    x = graph.x  # [T, E, N, 2]
    pos = x.index_select(-2, graph.agent_node)  # [T, E, A, 2]
    enemy = (graph.node_group == 1) & graph.node_mask  # [T, E, N]
    d = x.unsqueeze(-3) - pos.unsqueeze(-2)  # [T, E, A, N, 2]: agent -> node
    dist = d.norm(dim=-1).masked_fill(~enemy.unsqueeze(-2), float("inf"))
    nearest, j = dist.min(-1)  # [T, E, A]
    to_enemy = d.gather(-2, j[..., None, None].expand(*j.shape, 1, 2)).squeeze(-2)
    has = alive & enemy.any(-1).unsqueeze(-1)
    sel = moved & has
    v = action[..., 1:3]
    cos = (v * to_enemy).sum(-1) / (v.norm(dim=-1) * to_enemy.norm(dim=-1)).clamp_min(1e-8)
    n_sel = max(1, int(sel.sum()))
    return {
        "nearest_enemy": float(nearest[has].mean()) if bool(has.any()) else float("nan"),
        "move_toward_enemy": float(cos[sel].sum()) / n_sel,
        "move_length": float(v.norm(dim=-1).clamp(max=1.0)[sel].sum()) / n_sel,
    }


def windows(rows: list[dict], key: str = "win_rate") -> dict[str, float | None]:
    """Mean of ``key`` over the iterations whose env steps fall in each 20k window."""
    out: dict[str, float | None] = {}
    last = max((r["env_steps"] for r in rows), default=0)
    for lo in range(0, int(last), WINDOW):
        xs = [r[key] for r in rows if lo < r["env_steps"] <= lo + WINDOW and r[key] == r[key]]
        out[f"{lo // 1000}-{(lo + WINDOW) // 1000}k"] = sum(xs) / len(xs) if xs else None
    return out


def summary(directory: Path) -> dict:
    """Each run's windows and, per ``mixed_entropy`` value, the mean over its runs (None
    where a run has no value in a window)."""
    runs = {}
    for path in sorted(directory.glob("*.json")):
        if path.name == "summary.json":
            continue
        d = json.loads(path.read_text())
        runs[path.stem] = {k: d[k] for k in ("model", "seed", "mixed_entropy", "win_rate_windows", "move_windows")}
    means: dict[str, dict[str, Any]] = {}
    for mode in sorted({r["mixed_entropy"] for r in runs.values()}):
        group = [r for r in runs.values() if r["mixed_entropy"] == mode]
        means[mode] = {"seeds": sorted(r["seed"] for r in group)}
        for key in ("win_rate_windows", "move_windows"):
            vals = {m: [r[key].get(m) for r in group] for m in group[0][key]}
            means[mode][key] = {m: None if None in v else sum(v) / len(v) for m, v in vals.items()}
    result = {"runs": runs, "means": means}
    (directory / "summary.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--summary", type=Path, default=None, help="summarize the runs in this directory instead")
    args, overrides = ap.parse_known_args()
    if args.summary is not None:
        return summary(args.summary)

    from train_throughput import compose

    from eqmarl.train.logger import Logger
    from eqmarl.train.trainer import Trainer

    base = ["logger.wandb_mode=disabled", "logger.progress=false", "train.eval_every=0", "train.checkpoint_every=0"]
    cfg = compose(base + overrides)
    run_dir = Path(tempfile.mkdtemp(prefix="eqmarl-choice-"))
    trainer = Trainer(cfg, run_dir)
    trainer.save = lambda: run_dir  # type: ignore[method-assign]
    rows: list[dict] = []
    collect = trainer.rollout

    def rollout():  # type: ignore[no-untyped-def]
        out = collect()
        rows.append(choice_stats(out))
        return out

    trainer.rollout = rollout  # type: ignore[method-assign]
    cfg.train.max_iterations = args.iterations
    logger = Logger(cfg.logger, run_dir, {}, total_env_steps=1)
    trainer.run(logger)
    logger.close()
    trainer.env.close()
    with open(run_dir / "metrics.csv") as f:
        for row, m in zip(rows, csv.DictReader(f)):
            row["env_steps"] = int(float(m["env_steps"]))
            row["entropy"] = float(m["entropy"])
    result = {
        "overrides": overrides,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "mixed_entropy": cfg.model.mixed_entropy,
        "win_rate_windows": windows(rows),
        "move_windows": windows(rows, "move"),
        **(
            {"toward_enemy_windows": windows(rows, "move_toward_enemy")}
            if rows and "move_toward_enemy" in rows[0]
            else {}
        ),
        "rows": rows,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    from eqmarl.core.log import json_main

    json_main(main)
