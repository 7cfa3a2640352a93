"""``eqmarl eval RUN [env.key=value ...]``: a trained checkpoint on other env settings.

Loads the newest checkpoint of a run, builds its env with the command line's ``env.*``
overrides (other start positions, sides, team sizes; the policy's weights unchanged),
plays one episode in each of ``episodes`` parallel envs with the policy as the run acted
(EQC-wrapped where it was trained with ``model.eqc``) and reports the win rate (where the
env reports wins) and the return, each as mean and standard error.  Without overrides,
``--seed <run seed + 777> --episodes <train.eval_episodes>`` repeats the run's own last
evaluation (its ``eval_return`` in ``metrics.csv``).

    eqmarl eval runs/left_e2gn2_s0 env.surround_sides=right --episodes 500
    eqmarl eval runs/left_e2gn2_s0 env.n_units=8 env.n_enemies=8 --out eval_8v8.json
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from eqmarl.build import make_env
from eqmarl.config import EnvConfig
from eqmarl.core.episodes import run_episodes
from eqmarl.eval.runs import Checkpoint, load_agent, load_run, override_env


@torch.no_grad()
def evaluate_checkpoint(
    ckpt: Checkpoint,
    env_cfg: EnvConfig,
    episodes: int,
    seed: int = 0,
    device: str = "cpu",
    deterministic: bool = True,
) -> dict[str, Any]:
    """One episode in each of ``episodes`` envs of ``env_cfg`` with the checkpoint's policy.

    Args:
        ckpt: the loaded checkpoint.
        env_cfg: the env to play (the run's, maybe with other settings).
        episodes: parallel envs, one episode each.
        seed: env seed, and the seed of the sampled actions.
        device: torch device.
        deterministic: the most likely actions instead of samples.

    Returns:
        ``{episodes, win_rate, win_rate_se, return_mean, return_se, length_mean}`` (win rate
        only where the env reports ``info['win']``).

    Raises:
        ValueError: ``episodes`` below 1.
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes}; allowed: an integer >= 1")
    env = make_env(env_cfg, episodes, seed, device)
    try:
        agent = load_agent(ckpt, env, env_cfg=env_cfg)
        torch.manual_seed(seed)
        stats = run_episodes(env, lambda obs: agent.actions(obs, deterministic), seed)
    finally:
        env.close()
    summary = stats.summary()
    done = stats.finished
    out: dict[str, Any] = {"episodes": int(done.sum())}
    if "eval_win_rate" in summary:
        out["win_rate"], out["win_rate_se"] = summary["eval_win_rate"], summary["eval_win_rate_se"]
    out["return_mean"], out["return_se"] = summary["eval_return"], summary["eval_return_se"]
    out["length_mean"] = float(stats.lengths[done].mean()) if bool(done.any()) else float("nan")
    return out


def evaluate_run(
    run: str, overrides: list[str], episodes: int, seed: int = 0, device: str = "cpu", deterministic: bool = True
) -> dict[str, Any]:
    """:func:`evaluate_checkpoint` of a run directory (or checkpoint file) with ``env.*`` overrides.

    Args:
        run: run directory or checkpoint file.
        overrides: ``env.key=value`` settings.
        episodes: parallel envs, one episode each.
        seed: env and sampling seed.
        device: torch device.
        deterministic: the most likely actions instead of samples.
    """
    ckpt = load_run(run)
    env_cfg = override_env(ckpt.env, overrides)
    result = evaluate_checkpoint(ckpt, env_cfg, episodes, seed, device, deterministic)
    return {
        "run": str(run),
        "checkpoint": str(ckpt.path),
        "model": ckpt.model.name,
        "overrides": list(overrides),
        "env": dataclasses.asdict(env_cfg),
        "deterministic": deterministic,
        "seed": seed,
        **result,
    }
