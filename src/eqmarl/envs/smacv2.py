"""``env=smacv2``: SMACv2 scenarios behind one interface, on a pluggable backend.

``env.backend`` picks the simulator:

* ``smax``: JaxMARL's SMAX (:class:`eqmarl.envs.smax.SmaxSMACv2`), no StarCraft II needed;
* ``sc2``: the real game (StarCraft II + SMACv2 maps, inside the project's image), through
  :mod:`eqmarl.envs.smacv2_sc2`; when StarCraft II is not installed, building the env
  raises :class:`StarCraftIINotFound`, whose message names ``env.backend``, where
  StarCraft II was looked for and the two ways out.  Other backends register with
  :func:`register_backend` (``register_backend(name, factory)``).

A backend factory is called as ``factory(num_envs=..., seed=..., device=..., **options)``
with the scenario options of :func:`make_smacv2` and returns a batched env with the
mixed action space and masks documented in :mod:`eqmarl.envs.smax`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eqmarl.core.env import MultiAgentEnv
from eqmarl.core.errors import InvalidOption
from eqmarl.envs.smacv2_scenarios import BACKENDS, check_map_size, check_scenario, check_team_sizes

BackendFactory = Callable[..., MultiAgentEnv]
_BACKENDS: dict[str, BackendFactory] = {}


class StarCraftIINotFound(RuntimeError):
    """``env.backend=sc2`` on a machine without StarCraft II."""


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``env.backend=<name>`` build envs with ``factory`` (see the module docstring)."""
    _BACKENDS[name] = factory


def starcraft2_candidates() -> list[Path]:
    """Where StarCraft II is looked for: ``$SC2PATH`` if set, else ``~/StarCraftII`` and
    ``/opt/StarCraftII`` (the image's location)."""
    env = os.environ.get("SC2PATH")
    if env:
        return [Path(env)]
    return [Path.home() / "StarCraftII", Path("/opt/StarCraftII")]


def find_starcraft2() -> Path | None:
    """The first candidate directory that holds a StarCraft II install (``Versions/``), or None."""
    for path in starcraft2_candidates():
        if (path / "Versions").is_dir():
            return path
    return None


def starcraft2_missing_message() -> str:
    where = ", ".join(str(p) for p in starcraft2_candidates())
    how = "$SC2PATH" if os.environ.get("SC2PATH") else "$SC2PATH is not set; looked in"
    return (
        f"env.backend=sc2 needs StarCraft II, which is not on this machine ({how} {where}: no Versions/ "
        "directory there). Two ways out: run inside the project's image (StarCraft II and the SMACv2 maps "
        "are installed there; see the README's container section), or use the SMAX simulator: "
        "env.backend=smax (or env=smax)."
    )


def _make_sc2(**kwargs: Any) -> MultiAgentEnv:
    if find_starcraft2() is None:
        raise StarCraftIINotFound(starcraft2_missing_message())
    from eqmarl.envs.smacv2_sc2 import make_sc2_backend

    return make_sc2_backend(**kwargs)


def _make_smax(**kwargs: Any) -> MultiAgentEnv:
    from eqmarl.envs.smax import SmaxSMACv2

    return SmaxSMACv2(**kwargs)


register_backend("smax", _make_smax)
register_backend("sc2", _make_sc2)


def make_smacv2(
    backend: str,
    num_envs: int,
    seed: int,
    device: str = "cpu",
    race: str = "terran",
    n_units: int = 5,
    n_enemies: int = 5,
    start_positions: str = "surrounded_and_reflect",
    p: float = 0.5,
    surround_sides: str = "all",
    movement: str = "continuous",
    episode_limit: int = 100,
    map_size: float | None = None,
    worker_timeout_s: float | None = None,
    scenario: str | None = None,
    min_units: int | None = None,
) -> MultiAgentEnv:
    """Build a SMACv2 env on ``backend`` (see :mod:`eqmarl.envs.smacv2_scenarios` for the options).

    ``map_size`` (SMAX only): side of the map; None scales it with the team size
    (:func:`eqmarl.envs.smax.smax_map_size`). StarCraft II's maps are fixed.
    ``min_units`` (SMAX only): every episode draws its team size from
    ``min_units..n_units``, padded with dead units (:mod:`eqmarl.envs.smacv2_scenarios`).
    ``worker_timeout_s`` (StarCraft II only; None: the backend's default): seconds a
    game's worker process may take to answer before it counts as hung.
    ``scenario`` (SMAX only): a JaxMARL map name (:data:`eqmarl.envs.smax.JAXMARL_SCENARIOS`),
    played as JaxMARL sets it up; None: the SMACv2 scenario of the other options.

    Raises:
        InvalidOption: a bad option (naming the ``env.`` key and the allowed values).
        StarCraftIINotFound: ``backend='sc2'`` without StarCraft II.
    """
    if backend not in _BACKENDS:
        raise InvalidOption("env.backend", backend, ", ".join(sorted(set(BACKENDS) | set(_BACKENDS))))
    check_scenario(race, n_units, n_enemies, start_positions, p, surround_sides, movement)
    check_map_size(backend, map_size)
    check_team_sizes(backend, min_units, n_units, n_enemies)
    extra: dict[str, Any] = {} if map_size is None else {"map_size": map_size}
    if min_units is not None:
        extra["min_units"] = min_units
    if backend == "sc2" and worker_timeout_s is not None:
        extra["step_timeout"] = worker_timeout_s
    if scenario is not None:
        if backend != "smax":
            raise InvalidOption(
                "env.scenario", scenario, f"null with env.backend={backend} (JaxMARL's maps run on smax)"
            )
        extra["scenario"] = scenario
    return _BACKENDS[backend](
        num_envs=num_envs,
        seed=seed,
        device=device,
        race=race,
        n_units=n_units,
        n_enemies=n_enemies,
        start_positions=start_positions,
        p=p,
        surround_sides=surround_sides,
        movement=movement,
        episode_limit=episode_limit,
        **extra,
    )
