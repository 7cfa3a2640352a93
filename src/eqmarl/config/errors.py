"""The error of a bad config value, and the two checks of one value that every group uses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eqmarl.core.errors import InvalidOption

ConfigError = InvalidOption
"""A bad config value; the message names the key and what is allowed
(``invalid config: key=value; allowed: ...``).

The same class as :class:`eqmarl.core.errors.InvalidOption`, which the envs raise for
their own options: an env's refusal reaches the launcher as a config error as it is, with
its ``key``, ``value`` and ``allowed``."""


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """Refuse ``value`` unless it is one of ``allowed`` (listed in the message)."""
    options = list(allowed)
    if value not in options:
        raise ConfigError(key, value, ", ".join(str(a) for a in options))


def check_positive(key: str, value: Any, allow_zero: bool = False) -> None:
    """Refuse a number below 1 (``allow_zero``: below 0)."""
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        raise ConfigError(key, value, "a number >= 0" if allow_zero else "a number > 0")
