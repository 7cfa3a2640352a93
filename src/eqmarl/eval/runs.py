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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from eqmarl.build import Agent, make_agent
from eqmarl.config import (
    ENV_SCHEMAS,
    FLOAT_RANGES,
    AlgoConfig,
    ConfigError,
    EnvConfig,
    ModelConfig,
    validate_env_overrides,
    validate_finite,
)
from eqmarl.core.env import MultiAgentEnv
from eqmarl.train.checkpoint import list_checkpoints, load_checkpoint, resolve_checkpoint

# `eqmarl eval wandb:<entity>/<project>/<artifact>[:alias]`: a policy that logger.log_checkpoints logged
ARTIFACT_PREFIX = "wandb:"
ARTIFACT_FORM = "wandb:<entity>/<project>/<artifact>[:alias], e.g. wandb:me/eqmarl/policy-1a2b3c4d:final"


def parse_artifact_ref(text: str) -> str:
    """``wandb:<entity>/<project>/<artifact>[:alias]`` -> ``<entity>/<project>/<artifact>:<alias>``
    (alias ``latest`` when none is given).

    Raises:
        ValueError: naming the form it must have.
    """
    import re

    ref = text[len(ARTIFACT_PREFIX) :] if text.startswith(ARTIFACT_PREFIX) else text
    m = re.fullmatch(r"([^/:\s]+)/([^/:\s]+)/([A-Za-z0-9_.-]+)(?::([A-Za-z0-9_.-]+))?", ref)
    if m is None:
        raise ValueError(f"{text!r}; allowed: {ARTIFACT_FORM}")
    return f"{m[1]}/{m[2]}/{m[3]}:{m[4] or 'latest'}"


def download_artifact(text: str, root: Path | None = None) -> Path:
    """Download a W&B policy artifact (``logger.log_checkpoints``) and return its directory,
    which :func:`load_run` reads like a run directory.  Needs W&B online.

    Args:
        text: ``wandb:<entity>/<project>/<artifact>[:alias]``.
        root: where to download (default: wandb's, ``./artifacts/<name>``).

    Raises:
        ValueError: a malformed reference, W&B offline (the message says how to sync the
            run that logged it and how to go online), or the download failed (no such artifact,
            no access, no server).
    """
    import os

    from eqmarl.train.logger import wandb_key_configured

    ref = parse_artifact_ref(text)
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun") or not wandb_key_configured():
        why = f"WANDB_MODE={mode} here" if mode in ("offline", "disabled", "dryrun") else "no W&B API key here"
        raise ValueError(
            f"{text}: W&B artifacts download only online ({why}). A run that trained offline keeps its "
            "artifact in its run files until they are synced: eqmarl sync <run dir> (with an API key: "
            "wandb login or WANDB_API_KEY) uploads it; then run this again online (WANDB_MODE unset), "
            "or evaluate the run directory itself: eqmarl eval <run dir>"
        )
    import wandb

    try:
        artifact = wandb.Api().artifact(ref, type="model")
        path = Path(artifact.download(root=None if root is None else str(root)))
    except Exception as e:  # no such artifact, no access, server unreachable: one line
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ValueError(f"{text}: could not download it from W&B ({type(e).__name__}: {first})") from None
    return path


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
        FileNotFoundError: no readable checkpoint there.
        ValueError: the file is not an eqmarl checkpoint.
        ConfigError: the checkpoint's env is not one this version knows.
    """
    try:
        ckpt_path = resolve_checkpoint(path)
    except FileNotFoundError:  # resolve_checkpoint warned about each damaged file
        raise FileNotFoundError(f"{path}: no readable checkpoint (checkpoints/ckpt_*.pt) there") from None
    try:
        state = load_checkpoint(ckpt_path)
        cfg = state["config"]
        env_name = cfg["env"]["name"]
        policy = state["policy"]
    except Exception as e:  # a damaged file, or another program's file: a message, not a traceback
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
        raise ValueError(f"{ckpt_path}: not an eqmarl checkpoint ({why})") from None
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
        state=policy,
    )


def _allowed_value(env: EnvConfig, name: str) -> str:
    """What a value of ``env.<name>`` may be, from the schema's type (for the error message)."""
    hint = typing.get_type_hints(type(env))[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    if typing.get_origin(base) is list:
        phrase = "a list, e.g. [1.0, 0.9]"
    else:
        phrase = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))
    if f"env.{name}" in FLOAT_RANGES:
        phrase += f" {FLOAT_RANGES[f'env.{name}']}"
    current = getattr(env, name)
    shown = "null" if current is None else str(current).lower() if isinstance(current, bool) else current
    return phrase + (" or null" if optional else "") + f" (the run's: {shown})"


def override_env(env: EnvConfig, overrides: list[str]) -> EnvConfig:
    """``env`` with ``env.key=value`` overrides applied (typed as the schema says).

    Every refusal names the override's full key (``env.n_agents``): a key that is not
    ``env.<key of this run's env>``, ``env.name`` (the policy's env is the run's), a value
    of the wrong type, a non-finite number, and a value the env's checks refuse.

    Args:
        env: the run's env config.
        overrides: ``env.<key>=<value>`` strings (values in YAML, as on hydra's command line).

    Raises:
        ConfigError: naming the override's key and the allowed values.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    known = [f.name for f in dataclasses.fields(env) if f.name != "name"]
    merged = OmegaConf.structured(env)
    for o in overrides:
        key, sep, value = o.partition("=")
        if not sep or not key.startswith("env."):
            raise ConfigError(key or o, value, "env.<key>=<value> overrides only (the policy's settings are the run's)")
        if key == "env.name":
            raise ConfigError(key, value, f"{env.name} only (the run's env; other env keys: {', '.join(known)})")
        if key[4:] not in known:
            raise ConfigError(key, value, f"an env key of this run: {', '.join(known)}")
        try:
            candidate = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key[4:]}={value}"]))
            OmegaConf.to_object(candidate)  # resolves and type-checks this key now, to name it
        except (OmegaConfBaseException, ValueError, TypeError):
            raise ConfigError(key, value, _allowed_value(env, key[4:])) from None
        merged = candidate
    out = OmegaConf.to_object(merged)
    assert isinstance(out, type(env))
    validate_finite({"env": out})
    validate_env_overrides(out)
    return out


def changed_keys(ckpt: Checkpoint, env_cfg: EnvConfig) -> list[str]:
    """``env.key=value`` of every env setting that differs from the run's (for messages)."""
    trained = dataclasses.asdict(ckpt.env)
    return [f"env.{k}={v}" for k, v in dataclasses.asdict(env_cfg).items() if trained.get(k) != v]


def load_agent(
    ckpt: Checkpoint, env: MultiAgentEnv, test_time_eqc: str | None = None, env_cfg: EnvConfig | None = None
) -> Agent:
    """The checkpoint's agent for ``env``: built as in training, weights loaded, on ``env.device``.

    Args:
        ckpt: the loaded checkpoint.
        env: an env of the checkpoint's kind (its spec and symmetry; maybe other settings).
        test_time_eqc: a group name to symmetrize over at test time (None: as trained).
        env_cfg: ``env``'s config, when it differs from the run's: the message of weights
            that do not fit names the overridden keys.

    Raises:
        ValueError: the weights do not fit this env (an MLP on other team sizes).
    """
    agent = make_agent(
        ckpt.model, env, centralized_critic=ckpt.algo.name == "mappo", device=env.device, test_time_eqc=test_time_eqc
    )
    try:
        agent.policy.load_state_dict(ckpt.state)
    except RuntimeError as e:
        changed = changed_keys(ckpt, env_cfg) if env_cfg is not None else []
        where = f"this env ({', '.join(changed)})" if changed else "this env"
        raise ValueError(
            f"model.name={ckpt.model.name}: the checkpoint's weights do not fit {where} "
            f"(an MLP's sizes depend on the team sizes; graph models do not): {str(e).splitlines()[0]}"
        ) from None
    agent.module.eval()
    return agent
