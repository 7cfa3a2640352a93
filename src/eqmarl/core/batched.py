"""Field-generic ``map``, ``stack`` and ``where`` over eqmarl's batched dataclasses
(:class:`~eqmarl.core.env.Observation`, :class:`~eqmarl.core.graph.EntityGraph`).

A field declared with ``field(metadata=BATCHED)`` (or :data:`DERIVED`) holds a tensor
with the leading batch dims (or None, when optional), or a nested batched dataclass; the
three operations go through every such field, so a field added later is mapped, stacked
and selected without touching them.
Fields declared the ordinary way (``agent_node``, ``edge_rule``: the same for every batch
entry) are carried over unchanged from the first operand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import torch
from torch import Tensor

_KEY = "eqmarl.batched"
_SELECT, _DROP = "select", "drop"

BATCHED: Mapping[str, str] = MappingProxyType({_KEY: _SELECT})
"""Field metadata of a batched field: ``field(metadata=BATCHED)`` (optional ones:
``field(default=None, metadata=BATCHED)``)."""

DERIVED: Mapping[str, str] = MappingProxyType({_KEY: _DROP})
"""Field metadata of a batched field derived from others (stored kNN lists, from the
positions): mapped and stacked like the rest, but :func:`where_batched` drops it (None),
since it no longer applies to a per-env mix."""

T = TypeVar("T")


_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _batched_fields(obj: Any) -> tuple[tuple[str, str], ...]:
    """``(name, what where does)`` of ``obj``'s batched fields, in declaration order."""
    cls = type(obj)
    found = _FIELDS.get(cls)
    if found is None:
        found = tuple((f.name, f.metadata[_KEY]) for f in dataclasses.fields(obj) if _KEY in f.metadata)
        _FIELDS[cls] = found
    return found


def _is_nested(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def map_batched(obj: T, fn: Callable[[Tensor], Tensor]) -> T:
    """``obj`` with ``fn`` applied to every batched tensor (nested dataclasses included)."""
    changes: dict[str, Any] = {}
    for name, _ in _batched_fields(obj):
        value = getattr(obj, name)
        if value is None:
            changes[name] = None
        elif _is_nested(value):
            changes[name] = map_batched(value, fn)
        else:
            changes[name] = fn(value)
    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]  # T is a dataclass


def stack_batched(items: Sequence[T]) -> T:
    """``items`` stacked along a new leading dim, field by field; a field that is None in
    the first item is None in the result."""
    first = items[0]
    changes: dict[str, Any] = {}
    for name, _ in _batched_fields(first):
        value = getattr(first, name)
        if value is None:
            changes[name] = None
        elif _is_nested(value):
            changes[name] = stack_batched([getattr(item, name) for item in items])
        else:
            changes[name] = torch.stack([getattr(item, name) for item in items])
    return dataclasses.replace(first, **changes)  # type: ignore[type-var]  # T is a dataclass


def select_envs(cond: Tensor, if_true: Tensor, if_false: Tensor) -> Tensor:
    """Per-env select: ``cond [E]`` True takes ``if_true``, False ``if_false`` (tensors ``[E, ...]``)."""
    view = cond.view(cond.shape + (1,) * (if_true.dim() - cond.dim()))
    return torch.where(view, if_true, if_false)


def where_batched(cond: Tensor, if_true: T, if_false: T) -> T:
    """Per-env select of every batched field (``cond [E]``); a field that is None in either
    operand, or declared :data:`DERIVED`, is None in the result."""
    changes: dict[str, Any] = {}
    for name, on_where in _batched_fields(if_true):
        value_true, value_false = getattr(if_true, name), getattr(if_false, name)
        if on_where == _DROP or value_true is None or value_false is None:
            changes[name] = None
        elif _is_nested(value_true):
            changes[name] = where_batched(cond, value_true, value_false)
        else:
            changes[name] = select_envs(cond, value_true, value_false)
    return dataclasses.replace(if_true, **changes)  # type: ignore[type-var]  # T is a dataclass
