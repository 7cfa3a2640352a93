"""Self-play / cross-play evaluation of independently trained checkpoints (zero-shot coordination).

Given ``K`` checkpoints (e.g. the runs of ``python launch.py -m seed=0,...,K-1``), every
ordered pairing ``(a, b)`` plays ``N`` games: seat 0 is played by checkpoint ``a``'s
policy, every other seat by checkpoint ``b``'s (a checkpoint's policy is shared by all
the seats it plays).  The diagonal ``a == b`` is self-play (SP), the rest cross-play
(XP).  With ``eqc=<group>`` every loaded policy is also wrapped in the EQC symmetrizer
at test time (no retraining) and the whole matrix is played again.

Reported per variant (``raw``, ``eqc``):

* ``matrix [K, K]``: mean episode return of each pairing, with its standard error over
  the ``N`` games (``matrix_se``);
* ``sp`` / ``xp``: mean over the diagonal / off-diagonal pairings, with two standard
  errors: ``se_pairs`` (spread of the pairings' means: the seed-to-seed variation,
  the one to quote) and ``se_games`` (all games pooled, as if independent).

Actions are sampled from the policies by default (``greedy=True`` takes the most likely
action; note that ``argmax`` breaks ties between equally likely symmetric actions by
index, itself an arbitrary convention shared by every checkpoint).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from eqmarl.build import make_env
from eqmarl.config import EnvConfig, check_symmetry_group
from eqmarl.core.env import MultiAgentEnv, Observation
from eqmarl.core.episodes import run_episodes
from eqmarl.core.files import atomic_output, atomic_write, json_text
from eqmarl.eval.runs import Checkpoint, find_runs, load_agent, load_run, override_env
from eqmarl.models import Policy
from eqmarl.wrappers.eqc import EQC


def play(env: MultiAgentEnv, seat_policies: list[Policy | EQC], greedy: bool = False, seed: int = 0) -> Tensor:
    """One episode in each of the env's ``N`` games with the given policy per seat.

    Args:
        env: ``N = env.num_envs`` games of ``A`` seats.
        seat_policies: ``A`` policies (the same object may play several seats; each is
            run once per step on every seat's observation).
        greedy: most likely actions instead of samples.
        seed: env and sampling seed.

    Returns:
        ``[N]`` return of each game's first episode.

    Raises:
        RuntimeError: a game did not end within the episode limit.
    """
    n, a = env.num_envs, env.spec.n_agents
    if len(seat_policies) != a:
        raise ValueError(f"need one policy per seat ({a}), got {len(seat_policies)}")
    unique = list({id(p): p for p in seat_policies}.values())
    seat_of = torch.tensor([next(i for i, u in enumerate(unique) if u is p) for p in seat_policies], device=env.device)
    gen = torch.Generator(device=env.device).manual_seed(seed)

    def act(obs: Observation) -> Tensor:
        acts = []
        for pol in unique:
            dist = pol.distribution(obs)
            acts.append(dist.mode() if greedy else dist.sample(generator=gen))
        stacked = torch.stack(acts)  # [U, N, A, *action shape]
        tail = stacked.shape[3:]  # continuous or mixed actions: a vector per seat
        index = seat_of.view(1, 1, a, *(1 for _ in tail)).expand(1, n, a, *tail)
        return stacked.gather(0, index).squeeze(0)

    stats = run_episodes(env, act, seed)
    if not bool(stats.finished.all()):
        raise RuntimeError("some games did not end within the episode limit")
    return stats.returns.float()


def _stats(values: Tensor) -> tuple[float, float]:
    """Mean and standard error of a 1-D tensor (se nan for fewer than 2 values)."""
    n = values.numel()
    se = float(values.std() / math.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se


def crossplay_returns(
    checkpoints: list[Checkpoint],
    games: int,
    test_time_eqc: str | None = None,
    greedy: bool = False,
    seed: int = 0,
    device: str = "cpu",
    env_cfg: EnvConfig | None = None,
) -> Tensor:
    """Returns of every ordered pairing: ``[K, K, games]`` (seat 0: row checkpoint; others: column).

    Every pairing plays the same ``games`` deals (same env seed), on ``env_cfg`` (default:
    the env the checkpoints were trained on, which must be the same for all).
    """
    first = checkpoints[0]
    for c in checkpoints[1:]:
        if dataclasses.asdict(c.env) != dataclasses.asdict(first.env):
            raise ValueError(f"{c.name} was trained on {c.env}, {first.name} on {first.env}: not the same game")
    env_cfg = env_cfg or first.env
    env = make_env(env_cfg, games, seed, device)
    try:
        policies = [load_agent(c, env, test_time_eqc, env_cfg).module for c in checkpoints]
        k, a = len(checkpoints), env.spec.n_agents
        out = torch.empty(k, k, games)
        for i in range(k):
            for j in range(k):
                out[i, j] = play(env, [policies[i]] + [policies[j]] * (a - 1), greedy, seed).cpu()
    finally:
        env.close()
    return out


def summarize(returns: Tensor) -> dict[str, Any]:
    """SP/XP summary of ``returns [K, K, N]`` (see module docstring)."""
    k, _, n = returns.shape
    cell = returns.mean(-1)
    cell_se = returns.std(-1) / math.sqrt(n) if n > 1 else torch.full((k, k), float("nan"))
    diag = torch.eye(k, dtype=torch.bool)
    out: dict[str, Any] = {"matrix": cell.tolist(), "matrix_se": cell_se.tolist()}
    for key, sel in (("sp", diag), ("xp", ~diag)):
        if not bool(sel.any()):
            continue
        mean, se_pairs = _stats(cell[sel])
        _, se_games = _stats(returns[sel].flatten())
        out[key] = {"mean": mean, "se_pairs": se_pairs, "se_games": se_games, "pairings": int(sel.sum())}
    return out


def evaluate_crossplay(
    runs: list[str | Path],
    games: int = 1000,
    eqc: str | None = None,
    greedy: bool = False,
    seed: int = 0,
    device: str = "cpu",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Load the runs and play the SP/XP matrix, raw and (with ``eqc``) with test-time EQC.

    Args:
        runs: run directories, sweep directories or checkpoint files.
        games: games per pairing.
        eqc: group for test-time EQC (e.g. ``C5``; ``C9`` for the lever game), or None.
        greedy: most likely actions instead of samples.
        seed: env and sampling seed.
        device: torch device.
        overrides: ``env.key=value`` settings of the game played (default: the runs' own).

    Returns:
        ``{"runs": [...], "games": N, "greedy": bool, "variants": {"raw": summary, "eqc": summary}}``.

    Raises:
        ValueError: ``games`` below 1; checkpoints of different games.
        ConfigError: a bad override (naming its ``env.`` key) or ``eqc`` (key ``--eqc``).
    """
    if games < 1:
        raise ValueError(f"games={games}; allowed: an integer >= 1")
    ckpts = [load_run(p) for p in find_runs(list(runs))]
    env_cfg = override_env(ckpts[0].env, list(overrides or []))
    if eqc is not None:
        check_symmetry_group("--eqc", eqc, env_cfg)
    variants: dict[str, Any] = {}
    for name, group in [("raw", None)] + ([("eqc", eqc)] if eqc else []):
        summary = summarize(crossplay_returns(ckpts, games, group, greedy, seed, device, env_cfg))
        summary["test_time_eqc"] = group
        variants[name] = summary
    return {
        "runs": [c.name for c in ckpts],
        "checkpoints": [str(c.path) for c in ckpts],
        "trained_with_eqc": [c.model.eqc for c in ckpts],
        "env": dataclasses.asdict(env_cfg),
        "overrides": list(overrides or []),
        "games": games,
        "greedy": greedy,
        "seed": seed,
        "variants": variants,
    }


def format_table(result: dict[str, Any]) -> str:
    """Plain-text table: the matrix of each variant and its SP/XP lines."""
    lines = []
    names = result["runs"]
    width = max(8, *(len(n) for n in names))
    for variant, s in result["variants"].items():
        title = "raw policies" if variant == "raw" else f"test-time EQC over {s['test_time_eqc']}"
        lines.append(f"== {title}: mean return per pairing (row: seat 0, column: other seats), {result['games']} games")
        lines.append(" " * width + " " + " ".join(f"{i:>14d}" for i in range(len(names))))
        for i, row in enumerate(s["matrix"]):
            cells = " ".join(f"{m:8.3f}±{se:5.3f}" for m, se in zip(row, s["matrix_se"][i]))
            lines.append(f"{names[i]:>{width}} {cells}")
        for key, label in (("sp", "self-play "), ("xp", "cross-play")):
            if key in s:
                d = s[key]
                lines.append(
                    f"  {label} {d['mean']:.3f} ± {d['se_pairs']:.3f} (se over {d['pairings']} pairings; "
                    f"± {d['se_games']:.3f} over games)"
                )
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``crossplay.json``, ``crossplay.csv`` (one row per pairing and variant) and ``crossplay.png``.

    Each file is written atomically (:mod:`eqmarl.core.files`); ``out_dir`` is created if missing.

    Raises:
        OutputWriteError: a file could not be written (the message names it); the files
            before it in this order are written, it and those after are as they were.
    """
    out = Path(out_dir)
    paths = {"json": out / "crossplay.json", "csv": out / "crossplay.csv", "png": out / "crossplay.png"}
    atomic_write(paths["json"], json_text(result) + "\n")
    names = result["runs"]
    table = io.StringIO()
    w = csv.writer(table)
    w.writerow(["variant", "seat0_run", "other_run", "kind", "mean", "se"])
    for variant, s in result["variants"].items():
        for i, row in enumerate(s["matrix"]):
            for j, m in enumerate(row):
                w.writerow([variant, names[i], names[j], "sp" if i == j else "xp", m, s["matrix_se"][i][j]])
    atomic_write(paths["csv"], table.getvalue())
    plot_heatmaps(result, paths["png"])
    return paths


def plot_heatmaps(result: dict[str, Any], path: Path) -> Path:
    """One annotated heatmap per variant (rows: seat 0's run, columns: the other seats')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(result["variants"].items())
    k = len(result["runs"])
    fig, axes = plt.subplots(
        1, len(variants), figsize=(1.0 + 1.1 * k * len(variants) + 1.5, 1.2 + 1.0 * k), squeeze=False
    )
    all_vals = [v for _, s in variants for row in s["matrix"] for v in row]
    lo, hi = min([*all_vals, 0.0]), max(all_vals)
    for ax, (variant, s) in zip(axes[0], variants):
        m = torch.tensor(s["matrix"])
        im = ax.imshow(m.numpy(), vmin=lo, vmax=hi if hi > lo else lo + 1, cmap="viridis")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{float(m[i, j]):.2f}", ha="center", va="center", color="w", fontsize=8)
        sp, xp = s.get("sp", {}), s.get("xp", {})
        title = "raw" if variant == "raw" else f"test-time EQC ({s['test_time_eqc']})"
        sub = f"SP {sp.get('mean', float('nan')):.2f}±{sp.get('se_pairs', float('nan')):.2f}"
        if xp:
            sub += f"  XP {xp['mean']:.2f}±{xp['se_pairs']:.2f}"
        ax.set_title(f"{title}\n{sub}", fontsize=9)
        ax.set_xticks(range(k), [str(i) for i in range(k)])
        ax.set_yticks(range(k), [str(i) for i in range(k)])
        ax.set_xlabel("other seats: run")
        ax.set_ylabel("seat 0: run")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="mean return")
    try:
        with atomic_output(path) as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
