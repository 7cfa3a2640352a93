"""From hydra's composed config to the typed :class:`~eqmarl.config.run.Config`, once.

What composition hides is refused first (keys the schema lacks, which ``to_object`` would
drop; ``bool`` keys given other values; deleted groups and keys); then the typed config
is validated (:func:`eqmarl.config.checks.validate`).
"""

from __future__ import annotations

from typing import Any

from eqmarl.config.checks import validate
from eqmarl.config.errors import ConfigError
from eqmarl.config.run import Config


def unknown_keys(node: Any, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Dotted keys present in a composed config but not in its dataclass schema, each with
    the keys its schema does have.

    ``+cluster.nodez=2`` composes (hydra appends it) and ``OmegaConf.to_object`` then
    drops it silently; a sweep must not be submitted with a key that does nothing.
    """
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    out: list[tuple[str, list[str]]] = []
    if not isinstance(node, DictConfig):
        return out
    schema = OmegaConf.get_type(node)
    fields = (
        [f.name for f in dataclasses.fields(schema)]
        if schema is not None and dataclasses.is_dataclass(schema)
        else None
    )
    for key in node:
        full = prefix + str(key)
        if fields is not None and key not in fields:
            out.append((full, fields))
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            out += unknown_keys(child, full + ".")
    return out


# groups of configs/ that a run cannot do without (experiment is optional: ~experiment is fine)
REQUIRED_GROUPS = ("env", "model", "algo", "logger", "cluster", "learner", "container")


def check_overrides(dict_cfg: Any, overrides: Any) -> None:
    """What the composed config no longer shows about the command line's overrides.

    ``env.continuous_actions=2`` composes to ``True`` and ``~model`` to the schema's
    defaults; both are refused here (bool keys take only ``true``/``false``; eqmarl's
    groups and keys cannot be deleted).  Sweep overrides (``a=1,2``) are skipped: each
    point is checked on its own.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import BooleanNode, DictConfig

    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if o.package:
            key = f"{o.package}.{key}" if key else o.package
        if key.split(".")[0] in ("hydra", "experiment") or o.is_sweep_override():
            continue
        if o.is_delete():
            if key in REQUIRED_GROUPS:
                allowed = f"an option of the {key} group ({key}=<name>); the group cannot be deleted"
            else:
                allowed = "a value; eqmarl's keys cannot be deleted (set the key instead)"
            raise ConfigError(key, f"~{key}", allowed)
        node = dict_cfg
        for part in key.split("."):
            node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
        if isinstance(node, BooleanNode) and not isinstance(o.value(), bool):
            raise ConfigError(key, o.value(), "true or false")


def to_config(dict_cfg: Any) -> Config:
    """Convert a composed hydra config to typed objects, then validate it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    unknown = unknown_keys(dict_cfg)
    if unknown:
        key, known = unknown[0]
        raise ConfigError(key, OmegaConf.select(dict_cfg, key), f"an existing key; known here: {', '.join(known)}")
    try:
        obj = OmegaConf.to_object(dict_cfg)
    except OmegaConfBaseException as e:  # a missing mandatory value (e.g. the env group deleted with ~env)
        key = str(getattr(e, "full_key", "") or "config")
        raise ConfigError(key, "???", f"a value; {key} has no default (e.g. choose a config group option)") from None
    assert isinstance(obj, Config)
    validate(obj)
    return obj
