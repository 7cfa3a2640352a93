"""``eqmarl eval RUN [env.key=value ...]``: a trained checkpoint on other env settings.

Loads the newest checkpoint of a run, builds its env with the command line's ``env.*``
overrides (other start positions, sides, team sizes; the policy's weights unchanged),
plays one episode in each of ``episodes`` parallel envs and reports the win rate (where
the env reports wins) and the return, each as mean and standard error.

    eqmarl eval runs/left_e2gn2_s0 env.surround_sides=right --episodes 500
    eqmarl eval runs/left_e2gn2_s0 env.n_units=8 env.n_enemies=8 --out eval_8v8.json
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from eqmarl.build import make_env
from eqmarl.config import ConfigError, EnvConfig, validate_env_overrides
from eqmarl.eval.crossplay import Checkpoint, load_run
from eqmarl.models import make_policy


def override_env(env: EnvConfig, overrides: list[str]) -> EnvConfig:
    """``env`` with ``env.key=value`` overrides applied (typed as the schema says).

    Raises:
        ConfigError: an override that is not ``env.<existing key>=<value>``.
    """
    from omegaconf import OmegaConf

    dotlist = []
    known = [f.name for f in dataclasses.fields(env)]
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not key.startswith("env."):
            raise ConfigError(key or o, value, "env.<key>=<value> overrides only (the policy's settings are the run's)")
        if key[4:] not in known or key == "env.name":
            raise ConfigError(key, value, f"an env key of this run: {', '.join(k for k in known if k != 'name')}")
        dotlist.append(f"{key[4:]}={value}")
    merged = OmegaConf.merge(OmegaConf.structured(env), OmegaConf.from_dotlist(dotlist))
    out = OmegaConf.to_object(merged)
    assert isinstance(out, type(env))
    validate_env_overrides(out)
    return out


def _stats(x: Tensor) -> tuple[float, float]:
    n = x.numel()
    if n == 0:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std() / math.sqrt(n)) if n > 1 else float("nan")


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

    Returns:
        ``{episodes, win_rate, win_rate_se, return_mean, return_se, length_mean}`` (win rate
        only where the env reports ``info['win']``).
    """
    env = make_env(env_cfg, episodes, seed, device)
    try:
        policy = make_policy(ckpt.model, env.spec, centralized_critic=ckpt.algo.name == "mappo")
        try:
            policy.load_state_dict(ckpt.state)
        except RuntimeError as e:
            raise ValueError(
                f"model.name={ckpt.model.name}: the checkpoint's weights do not fit this env "
                f"(an MLP's sizes depend on the team sizes; graph models do not): {str(e).splitlines()[0]}"
            ) from None
        policy = policy.eval().to(env.device)
        torch.manual_seed(seed)
        obs = env.reset(seed=seed)
        ret = torch.full((episodes,), float("nan"), device=env.device)
        win = torch.full((episodes,), float("nan"), device=env.device)
        length = torch.zeros(episodes, device=env.device)
        for _ in range(max(1, env.spec.episode_limit)):
            dist = policy.distribution(obs)
            res = env.step(dist.mode() if deterministic else dist.sample())
            new = res.done & torch.isnan(ret)
            ret = torch.where(new, res.episode_return.float(), ret)
            length = torch.where(new, res.episode_length.float(), length)
            if "win" in res.info:
                win = torch.where(new, res.info["win"], win)
            if not bool(torch.isnan(ret).any()):
                break
            obs = res.obs
    finally:
        env.close()
    done = ~torch.isnan(ret)
    out: dict[str, Any] = {"episodes": int(done.sum())}
    if bool((~torch.isnan(win)).any()):
        out["win_rate"], out["win_rate_se"] = _stats(win[~torch.isnan(win)].cpu())
    out["return_mean"], out["return_se"] = _stats(ret[done].cpu())
    out["length_mean"] = float(length[done].mean()) if bool(done.any()) else float("nan")
    return out


def evaluate_run(
    run: str, overrides: list[str], episodes: int, seed: int = 0, device: str = "cpu", deterministic: bool = True
) -> dict[str, Any]:
    """:func:`evaluate_checkpoint` of a run directory (or checkpoint file) with ``env.*`` overrides."""
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
