"""A trained run as the evaluation commands load it (``eqmarl eval``, ``render``, ``xplay``).

:func:`find_runs` turns paths into run directories, :func:`load_run` reads a run's newest
checkpoint into a :class:`Checkpoint` (configs and the plain policy's weights),
:func:`override_env` applies ``env.key=value`` settings to its env config, and
:func:`load_agent` builds the policy for an env with :func:`eqmarl.build.make_agent`
(wrapped in EQC as it was trained) and loads the weights, so every command acts with the
module the run's own evaluations used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from eqmarl.build import Agent, make_agent
from eqmarl.config import ENV_SCHEMAS, AlgoConfig, ConfigError, EnvConfig, ModelConfig, validate_env_overrides
from eqmarl.core.env import MultiAgentEnv
from eqmarl.train.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint


def _build(cls: type, values: dict[str, Any]) -> Any:
    """A dataclass from a saved dict, ignoring keys this version does not know."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class Checkpoint:
    """A trained policy loaded from a run.

    Attributes:
        name: display name (the run directory's name).
        path: the checkpoint file.
        env: the env config it was trained on.
        model: its model config (``model.eqc`` set if it was trained through EQC).
        algo: its algo config.
        state: the plain policy's state dict.
    """

    name: str
    path: Path
    env: EnvConfig
    model: ModelConfig
    algo: AlgoConfig
    state: dict[str, Tensor] = field(repr=False)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories (or checkpoint files) from paths; a sweep directory expands to its runs.

    Args:
        paths: run directories, sweep directories or checkpoint files.

    Raises:
        FileNotFoundError: a path holds no checkpoint.
    """
    runs: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() or list_checkpoints(p / "checkpoints") or list_checkpoints(p):
            runs.append(p)
            continue
        sub = sorted(d for d in p.iterdir() if d.is_dir() and list_checkpoints(d / "checkpoints")) if p.is_dir() else []
        if not sub:
            raise FileNotFoundError(f"no checkpoint in {p} (nor in its subdirectories)")
        runs.extend(sub)
    return runs


def load_run(path: str | Path) -> Checkpoint:
    """Load the newest readable checkpoint of a run directory (or a checkpoint file).

    Args:
        path: a run directory or a checkpoint file.

    Raises:
        ConfigError: the checkpoint's env is not one this version knows.
    """
    ckpt_path = resolve_checkpoint(path)
    state = load_checkpoint(ckpt_path)
    cfg = state["config"]
    env_name = cfg["env"]["name"]
    if env_name not in ENV_SCHEMAS:
        raise ConfigError("env.name", env_name, ", ".join(ENV_SCHEMAS))
    p = Path(path)
    name = p.name if p.is_dir() else p.parent.parent.name
    return Checkpoint(
        name=name,
        path=ckpt_path,
        env=_build(ENV_SCHEMAS[env_name], cfg["env"]),
        model=_build(ModelConfig, cfg["model"]),
        algo=_build(AlgoConfig, cfg["algo"]),
        state=state["policy"],
    )


def override_env(env: EnvConfig, overrides: list[str]) -> EnvConfig:
    """``env`` with ``env.key=value`` overrides applied (typed as the schema says).

    Args:
        env: the run's env config.
        overrides: ``env.<key>=<value>`` strings.

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


def load_agent(ckpt: Checkpoint, env: MultiAgentEnv, test_time_eqc: str | None = None) -> Agent:
    """The checkpoint's agent for ``env``: built as in training, weights loaded, on ``env.device``.

    Args:
        ckpt: the loaded checkpoint.
        env: an env of the checkpoint's kind (its spec and symmetry; maybe other settings).
        test_time_eqc: a group name to symmetrize over at test time (None: as trained).

    Raises:
        ValueError: the weights do not fit this env (an MLP on other team sizes).
    """
    agent = make_agent(
        ckpt.model, env, centralized_critic=ckpt.algo.name == "mappo", device=env.device, test_time_eqc=test_time_eqc
    )
    try:
        agent.policy.load_state_dict(ckpt.state)
    except RuntimeError as e:
        raise ValueError(
            f"model.name={ckpt.model.name}: the checkpoint's weights do not fit this env "
            f"(an MLP's sizes depend on the team sizes; graph models do not): {str(e).splitlines()[0]}"
        ) from None
    agent.module.eval()
    return agent
