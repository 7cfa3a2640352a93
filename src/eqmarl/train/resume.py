"""``resume=``: what it accepts, and what a resumed run may change.

A resumed run continues with the config saved in its checkpoint; only
:data:`RESUMABLE_OVERRIDES` may change on the command line.  Anything else that differs
from the saved value is refused (:class:`ResumeError`, exit code 2) rather than silently
ignored; an override equal to the saved value passes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from eqmarl.core.log import get_logger

log = get_logger("resume")

# Keys a resumed run may change from the command line (a trailing dot: the whole group);
# everything else comes from the checkpoint, so the run continues exactly as it started.
# train.memory_check and env.worker_timeout_s change no result: a resume on a busier
# machine may skip the memory check, or wait longer for slow env workers
RESUMABLE_OVERRIDES = (
    "train.total_env_steps",
    "train.max_iterations",
    "logger.",
    "train.memory_check",
    "env.worker_timeout_s",
)
RESUME_ACCEPTS = (
    "resume= accepts a run directory (e.g. outputs/<date>/<run>), its checkpoints/ directory, "
    "or one checkpoints/ckpt_NNNNNN.pt file"
)
# keys every eqmarl checkpoint holds (eqmarl.train.trainer.Trainer.state_dict)
CHECKPOINT_KEYS = ("config", "policy", "optimizer", "iteration", "env_steps", "rng")


def inexact_resume_note(env_cfg: Any) -> str:
    """What a resume from a checkpoint without the simulator's state means (said at resume time)."""
    backend = getattr(env_cfg, "backend", None)
    what = f"env={env_cfg.name} with env.backend={backend}" if backend else f"env={env_cfg.name}"
    return (
        f"{what} cannot save its simulator state (or this checkpoint holds none): the resumed run starts "
        "new episodes and is not bit-exact"
    )


class ResumeError(ValueError):
    """A ``resume=`` that cannot be honoured (the launcher prints it and exits with code 2)."""


def check_resume_value(value: Any) -> None:
    """Refuse an empty ``resume=`` (it would otherwise train a fresh run)."""
    if value is not None and not str(value).strip():
        raise ResumeError(
            f"resume= is empty; {RESUME_ACCEPTS}. To train a fresh run, leave resume out (or set resume=null)"
        )


def _describe_file(path: Path) -> str:
    """What a file that is not a checkpoint looks like, for the message."""
    head = b""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        pass
    if path.name == "config.json" or head.lstrip().startswith((b"{", b"[")):
        try:
            json.loads(path.read_text())
            return "a JSON file (a run's config.json?), not a checkpoint"
        except (OSError, ValueError):
            pass
    if not head:
        return "an empty file"
    return "not a readable torch checkpoint (truncated or damaged?)"


def _first_sentence(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0]
    return text.split(". ")[0].rstrip(".")[:160]


def load_resume_checkpoint(target: str | Path) -> tuple[Path, dict[str, Any]]:
    """Find and load the checkpoint that ``resume=target`` names.

    Returns:
        (the checkpoint file, its state).

    Raises:
        ResumeError: the target is missing, holds no checkpoint, or names a file that is
            not an eqmarl checkpoint (the message says what it is and what is accepted).
    """
    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint

    p = Path(str(target))
    if not p.exists():
        raise ResumeError(f"resume={target}: no such file or directory; {RESUME_ACCEPTS}")
    try:
        ckpt = resolve_checkpoint(p)
    except FileNotFoundError as e:
        raise ResumeError(f"{e}; {RESUME_ACCEPTS}") from None
    try:
        state = load_checkpoint(ckpt)
    except Exception as e:  # torch raises several kinds for a file that is not its own
        raise ResumeError(
            f"resume={target}: {ckpt} is {_describe_file(ckpt)} ({type(e).__name__}: {_first_sentence(e)}); "
            f"{RESUME_ACCEPTS}"
        ) from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ResumeError(
            f"resume={target}: {ckpt} is a torch file but not an eqmarl checkpoint (no {', '.join(missing)}); "
            f"{RESUME_ACCEPTS}"
        )
    return ckpt, state


def _lookup(tree: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False, None
        tree = tree[part]
    return True, tree


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def resumable(key: str) -> bool:
    """Whether a resumed run may change ``key``."""
    return any(key == r or key.startswith(r if r.endswith(".") else r + ".") for r in RESUMABLE_OVERRIDES) or any(
        r.endswith(".") and key == r[:-1] for r in RESUMABLE_OVERRIDES
    )


def _shown(value: Any) -> str:
    """A value as an override would write it (``null``, ``true``, lists as ``[a, b]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


def _leaves(tree: Any, prefix: str) -> dict[str, Any]:
    """Dotted key -> value of every leaf under ``tree`` (a dict of dicts)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}.{k}"))
    return out


def _group_difference(key: str, new: dict[str, Any], old: dict[str, Any], limit: int = 6) -> str:
    """The keys where a group the command line selects differs from the saved one."""
    ours, theirs = _leaves(new, key), _leaves(old, key)
    keys = [k for k in theirs if k not in ours or not _same(ours[k], theirs[k])]
    keys += [k for k in ours if k not in theirs]
    none = "(none)"
    parts = [
        f"{k}={_shown(theirs[k]) if k in theirs else none} saved, {_shown(ours[k]) if k in ours else none} asked"
        for k in keys[:limit]
    ]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(parts) + more


def refused_overrides(overrides: list[str], wanted: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """Command-line overrides a resume cannot apply: not resumable and unlike the saved value.

    Each refusal names the key, the saved value and (for a group such as ``env=smax``)
    which of its keys differ, e.g. ``env.race=zerg (saved: env.race=terran)``.

    Args:
        overrides: hydra's task overrides (``key=value``, ``+key=value``, ``~key``).
        wanted: the config the command line asks for (a plain dict of it).
        saved: the checkpoint's config.

    Returns:
        one ``key=value (saved: ...)`` line per refused override.
    """
    out = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key == "resume" or resumable(key):
            continue
        has_new, new = _lookup(wanted, key)
        has_old, old = _lookup(saved, key)
        if has_new and has_old and _same(new, old):
            continue
        if has_old and not isinstance(old, dict):
            out.append(f"{o} (saved: {key}={_shown(old)})")
        elif has_old:
            diff = _group_difference(key, new if isinstance(new, dict) else {}, old)
            out.append(f"{o} (the saved run has other {key} settings): {diff}")
        else:
            out.append(f"{o} (not in the saved config)")
    return out


# Keys added after runs were saved whose default changes what those runs do, and the value
# that reproduces a run saved without the key (resume goes on as the run was trained; a
# new run gets the new default).  Keys whose default keeps the old behaviour need no entry.
KEYS_ADDED_LATER: dict[str, Any] = {
    # 2026-12-07: per_part became the default; runs saved before trained with the joint entropy
    "model.mixed_entropy": "joint",
}


def _has_key(saved: dict[str, Any], dotted: str) -> bool:
    node: Any = saved
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def saved_config_node(saved: dict[str, Any], target: str) -> Any:
    """The checkpoint's config as an OmegaConf node on eqmarl's schema (its env's own schema).

    A key of :data:`KEYS_ADDED_LATER` that the saved config lacks takes the value the run
    was trained with, not today's default (with a note).

    Raises:
        ResumeError: the saved config names an env or keys this version does not have.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from eqmarl.config.env import ENV_SCHEMAS
    from eqmarl.config.run import Config

    env = saved.get("env") if isinstance(saved, dict) else None
    name = env.get("name") if isinstance(env, dict) else None
    if name not in ENV_SCHEMAS:
        raise ResumeError(
            f"resume={target}: the checkpoint's config has env.name={name!r}, which this version of eqmarl "
            f"does not have (allowed: {', '.join(ENV_SCHEMAS)})"
        )
    node = OmegaConf.structured(Config)
    node.env = OmegaConf.structured(ENV_SCHEMAS[name])
    try:
        merged = OmegaConf.merge(node, saved)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or "?"
        raise ResumeError(
            f"resume={target}: the checkpoint's config does not fit this version of eqmarl ({key}: "
            f"{str(e).splitlines()[0]}); resume it with the eqmarl version that wrote it"
        ) from None
    for key, value in KEYS_ADDED_LATER.items():
        if not _has_key(saved, key) and OmegaConf.select(merged, key) != value:
            log.info(
                f"resume={target}: the run was saved before {key} existed; it goes on with {key}={value}, "
                f"what it trained with (new runs default to {OmegaConf.select(merged, key)})"
            )
            OmegaConf.update(merged, key, value, merge=False)
    return merged


def refused_message(target: str, refused: list[str]) -> str:
    allowed = ", ".join(r + "*" if r.endswith(".") else r for r in RESUMABLE_OVERRIDES)
    return (
        f"resume={target} continues that run with its saved config; these overrides differ from it and "
        f"cannot be applied: {'; '.join(refused)}. On resume only {allowed} may change. Drop the others, "
        "or start a new run (without resume=) to train with them"
    )
