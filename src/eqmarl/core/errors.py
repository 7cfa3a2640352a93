"""The structured error of a bad option, raised by whatever checks it (config groups, envs,
models) and reported by the launcher as a config error, without parsing message text."""

from __future__ import annotations

from typing import Any


class InvalidOption(ValueError):
    """A bad value of an option: names the key, the value given and what is allowed.

    Args:
        key: the dotted config key (``env.race``, ``model.knn``).
        value: the value given.
        allowed: the allowed values, or a phrase stating what is allowed.
    """

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"invalid config: {key}={value!r}; allowed: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
