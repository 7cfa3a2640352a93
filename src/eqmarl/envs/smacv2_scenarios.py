"""SMACv2 scenario settings shared by every backend, and their SMAX generators.

Plain constants (races, start-position modes, surround sides, action layout) need no
optional dependency; the generators (:class:`StartPositions`, :class:`RaceUnitTypes`)
are jax functions used by the SMAX backend (:mod:`eqmarl.envs.smax`) and import jax
and jaxmarl lazily.

Start positions (SMACv2's ``distributions.py`` semantics, on a ``W x H`` map):

* ``surrounded``: allies at the map centre (plus a uniform jitter of +-``ally_jitter``
  per unit, so that SMAX's collision push can separate them); the enemies form
  ``n_groups ~ UniformInt{1..K}`` groups (each enemy joins a group uniformly, so a
  group may be empty); every group gets a *distinct* diagonal among the ``K`` allowed
  ones and sits at ``t * inner + (1 - t) * corner`` with ``t ~ U(0, 1)`` (plus a
  jitter of +-``enemy_jitter`` per unit).  Diagonals, corner -> inner point:
  0: (0, 0) -> (cx-2, cy-2); 1: (0, H) -> (cx-2, cy+2); 2: (W, H) -> (cx+2, cy+2);
  3: (W, 0) -> (cx+2, cy-2).
* ``surround_sides`` restricts the allowed diagonals (eqmarl's definition of the E2GN2
  paper's "Surrounded Left / Right / All", which the paper does not define):
  ``left`` = {0, 1} (the two corners with x = 0), ``right`` = {2, 3} (x = W),
  ``all`` = {0, 1, 2, 3} (SMACv2's own generator).  Right is left rotated by 180
  degrees about the centre (also left mirrored by x -> W - x).
* ``reflect``: allies uniform in ``[0, W/2 - 1] x [0, H]``; enemy ``i`` at
  ``(W - x_i, y_i)``; extra enemies uniform in the right half.
* ``surrounded_and_reflect``: reflect with probability ``p``, else surrounded
  (SMACv2: ``if rng.random() > p: surrounded``, so P(surrounded) = 1 - p).

Every unit is then clipped into ``[margin, W - margin] x [margin, H - margin]``: SMAX
kills units that touch a wall, and SMAX's own generator spawns ~5 % of surrounding
units there.

Unit types (SMAX has six: marine, marauder, stalker, zealot, zergling, hydralisk):
allies are drawn uniformly from their race's two SMAX types (terran: marine/marauder;
protoss: stalker/zealot; zerg: zergling/hydralisk; SMACv2's third type of each race,
medivac/colossus/baneling, does not exist in SMAX); the enemies mirror the allies'
types, extra enemies are drawn like allies.

Team sizes drawn per episode (``env.min_units``, SMAX only): the env is built for
``n_units`` vs ``n_units`` (the largest team; ``n_enemies`` must equal it) and every
episode of every env draws its size ``n ~ UniformInt{min_units..n_units}`` at reset.  The
first ``n`` allies and the first ``n`` enemies play; the others are *padding*: dead
(health 0) from the reset on, at :data:`PAD_POSITION` outside the map (SMAX never moves a
dead unit, so the position marks them for the whole episode), never pushed, never able
to shoot or be shot (SMAX needs both units alive), out of the graph, the observations and
the masks (every dead unit is), and out of the PPO loss (``Observation.agent_mask``).  The
live units' start positions and types are those of the generators above for ``n_units``
units, restricted to the first ``n`` of each team: every unit is drawn independently
(given the episode's surround groups), so they are distributed as an ``n``-unit
episode's.  SMAX divides the damage reward by the team size it was built for, so it is
rescaled to the episode's ``n`` (:func:`team_size_reward`): a padded episode pays what
an ``n``-vs-``n`` episode pays.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation
from eqmarl.core.errors import InvalidOption
from eqmarl.core.graph import EntityGraph
from eqmarl.core.log import stdout_to_stderr
from eqmarl.core.smacv2_actions import COMPASS

# SMAX's unit types, in the order of its unit_type_names (the index is the type id)
SMAX_UNIT_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
RACES: dict[str, tuple[str, str]] = {
    "terran": ("marine", "marauder"),
    "protoss": ("stalker", "zealot"),
    "zerg": ("zergling", "hydralisk"),
}
START_POSITIONS = ("surrounded", "reflect", "surrounded_and_reflect")
SURROUND_SIDES: dict[str, tuple[int, ...]] = {"all": (0, 1, 2, 3), "left": (0, 1), "right": (2, 3)}
MOVEMENTS = ("continuous", "discrete")
BACKENDS = ("sc2", "smax")
# the smallest side of a SMAX map (``env.map_size``); StarCraft II's maps are fixed
MIN_MAP_SIZE = 8.0
# where padding units (``env.min_units``) sit: outside every map, so a dead unit there is
# padding (a unit killed in play keeps a position inside the map)
PAD_POSITION = (-1.0, -1.0)


def diagonal_points(
    width: float, height: float, inner_offset: float = 2.0
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """SMACv2's four diagonals: (corners, inner points ``inner_offset`` from the centre on
    each axis), indexed by diagonal 0..3."""
    cx, cy, d = width / 2, height / 2, inner_offset
    corners = [(0.0, 0.0), (0.0, height), (width, height), (width, 0.0)]
    inner = [(cx - d, cy - d), (cx - d, cy + d), (cx + d, cy + d), (cx + d, cy - d)]
    return corners, inner


def check_scenario(
    race: str, n_units: int, n_enemies: int, start_positions: str, p: float, surround_sides: str, movement: str
) -> None:
    """Refuse bad scenario values.

    Raises:
        InvalidOption: naming the ``env.`` key and the allowed values.
    """
    for key, value, allowed in (
        ("env.race", race, RACES),
        ("env.start_positions", start_positions, START_POSITIONS),
        ("env.surround_sides", surround_sides, SURROUND_SIDES),
        ("env.movement", movement, MOVEMENTS),
    ):
        if value not in allowed:
            raise InvalidOption(key, value, ", ".join(allowed))
    if not 0.0 <= p <= 1.0:
        raise InvalidOption("env.p", p, "a probability in [0, 1]")
    for key, v in (("env.n_units", n_units), ("env.n_enemies", n_enemies)):
        if v < 1:
            raise InvalidOption(key, v, "an integer >= 1")


def check_map_size(backend: str, map_size: float | None) -> None:
    """Refuse ``env.map_size`` where it does not apply (StarCraft II) or is too small.

    Raises:
        InvalidOption: naming ``env.map_size``.
    """
    if map_size is None:
        return
    if backend != "smax":
        raise InvalidOption("env.map_size", map_size, f"null with env.backend={backend} (its maps are fixed)")
    if not (math.isfinite(map_size) and map_size >= MIN_MAP_SIZE):
        raise InvalidOption("env.map_size", map_size, f"null (by team size) or a number >= {MIN_MAP_SIZE:g}")


def check_team_sizes(backend: str, min_units: int | None, n_units: int, n_enemies: int) -> None:
    """Refuse an ``env.min_units`` (team sizes drawn per episode) that cannot apply.

    Raises:
        InvalidOption: naming ``env.min_units`` (or ``env.n_enemies``) and the allowed values.
    """
    if min_units is None:
        return
    if backend != "smax":
        raise InvalidOption("env.min_units", min_units, f"null with env.backend={backend} (its teams are fixed)")
    if not 1 <= min_units <= n_units:
        raise InvalidOption(
            "env.min_units",
            min_units,
            f"null (every episode {n_units} vs {n_enemies}) or an integer in [1, env.n_units={n_units}]",
        )
    if n_enemies != n_units:
        raise InvalidOption(
            "env.n_enemies",
            n_enemies,
            f"{n_units} (= env.n_units) with env.min_units={min_units}: drawn team sizes are n vs n",
        )


def pad_team(inner: Any, state: Any, key: Any, min_units: int, margin: float, width: float, height: float) -> Any:
    """A SMAX ``State`` of ``n_units`` vs ``n_units`` with a team size drawn for the
    episode (see the module docstring); one env, jax, traceable.

    Args:
        inner: the SMAX env (its position generator and its collision push are used).
        state: SMAX's state after its reset (its positions are drawn again here).
        key: the draws of the team size and the positions.
        min_units: the smallest team size.
        margin: live units are kept this far inside the walls.
        width, height: the map.

    Returns:
        the state: the first ``n`` allies and enemies alive at fresh start positions
        (pushed apart among themselves), the others dead at :data:`PAD_POSITION`.
    """
    import jax
    import jax.numpy as jnp

    n_max = inner.num_allies
    k_n, k_pos = jax.random.split(key)
    n = jax.random.randint(k_n, (), min_units, n_max + 1)
    idx = jnp.arange(2 * n_max) % n_max
    live = idx < n
    pos = inner.position_generator.generate(k_pos)
    state = state.replace(
        unit_positions=pos,
        unit_alive=live,
        unit_health=jnp.where(live, state.unit_health, 0.0),
    )
    state = inner._push_units_away(state)  # alive pairs only (SMAX 0.2.0)
    pos = jnp.clip(state.unit_positions, margin, jnp.array([width - margin, height - margin]))
    return state.replace(unit_positions=jnp.where(live[:, None], pos, jnp.array(PAD_POSITION)))


def team_present(positions: Any) -> Any:
    """``[..., N]`` bool: units that take part in the episode (not padding), from SMAX's
    ``unit_positions [..., N, 2]`` (padding sits at :data:`PAD_POSITION`, outside the map)."""
    return positions[..., 0] >= 0.0


def team_size_reward(reward: Any, won: Any, bonus: float, n_max: int, n_enemies: Any) -> Any:
    """SMAX's ally reward of a padded episode rescaled to its team size: the damage part
    (SMAX divides it by the ``n_max`` enemies it was built for) times ``n_max / n_enemies``;
    the won-battle ``bonus`` unchanged."""
    return (reward - won * bonus) * (n_max / n_enemies) + won * bonus


def _distribution_base() -> Any:
    with stdout_to_stderr():  # jaxmarl prints on its first import
        from jaxmarl.environments.smax.distributions import Distribution

    return Distribution


def make_start_positions(
    n_allies: int,
    n_enemies: int,
    width: float,
    height: float,
    start_positions: str,
    p: float,
    surround_sides: str,
    margin: float = 1.0,
    ally_jitter: float = 2.0,
    enemy_jitter: float = 1.0,
    inner_offset: float = 2.0,
) -> Any:
    """A SMAX start-position generator (``generate(key) -> [n_allies + n_enemies, 2]``,
    allies first) for the settings above; a subclass of jaxmarl's ``Distribution``."""
    import jax
    import jax.numpy as jnp

    corners_l, inner_l = diagonal_points(width, height, inner_offset)
    allowed_t = SURROUND_SIDES[surround_sides]

    class StartPositions(_distribution_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(n_allies, n_enemies, width, height)
            self.mode = start_positions
            self.p = float(p)
            self.allowed = allowed_t
            self.margin = margin

        def surrounded(self, key: Any) -> Any:
            k_n, k_perm, k_g, k_t, k_ja, k_je = jax.random.split(key, 6)
            k = len(self.allowed)
            allowed = jnp.array(self.allowed, dtype=jnp.int32)
            n_groups = jax.random.randint(k_n, (), 1, k + 1)
            diag_of_slot = jax.random.permutation(k_perm, allowed)  # distinct diagonals
            group = jax.random.randint(k_g, (n_enemies,), 0, n_groups)  # each enemy joins a group
            t = jax.random.uniform(k_t, (k,))[group]
            diag = diag_of_slot[group]
            corners, inner = jnp.array(corners_l), jnp.array(inner_l)
            enemy = t[:, None] * inner[diag] + (1.0 - t[:, None]) * corners[diag]
            enemy = enemy + jax.random.uniform(k_je, (n_enemies, 2), minval=-enemy_jitter, maxval=enemy_jitter)
            centre = jnp.array([width / 2, height / 2])
            ally = centre + jax.random.uniform(k_ja, (n_allies, 2), minval=-ally_jitter, maxval=ally_jitter)
            return jnp.concatenate([ally, enemy])

        def reflect(self, key: Any) -> Any:
            k_a, k_e = jax.random.split(key)
            ally = jax.random.uniform(
                k_a, (n_allies, 2), minval=jnp.array([0.0, 0.0]), maxval=jnp.array([width / 2 - 1, height])
            )
            mirrored = jnp.stack([width - ally[:, 0], ally[:, 1]], axis=-1)[:n_enemies]
            extra = jax.random.uniform(
                k_e,
                (max(0, n_enemies - n_allies), 2),
                minval=jnp.array([width / 2 + 1, 0.0]),
                maxval=jnp.array([width, height]),
            )
            return jnp.concatenate([ally, mirrored, extra])

        def generate(self, key: Any) -> Any:
            k_s, k_r, k_p = jax.random.split(key, 3)
            if self.mode == "surrounded":
                pos = self.surrounded(k_s)
            elif self.mode == "reflect":
                pos = self.reflect(k_r)
            else:
                pos = jnp.where(jax.random.uniform(k_p) < self.p, self.reflect(k_r), self.surrounded(k_s))
            lo = jnp.array([self.margin, self.margin])
            hi = jnp.array([width - self.margin, height - self.margin])
            return jnp.clip(pos, lo, hi)

    return StartPositions()


def make_race_unit_types(n_allies: int, n_enemies: int, width: float, height: float, race: str) -> Any:
    """A SMAX unit-type generator (``generate(key) -> [n_allies + n_enemies] uint8``): allies
    uniform over the race's two types, enemies mirror them (extras drawn like allies)."""
    import jax
    import jax.numpy as jnp

    ids = [SMAX_UNIT_TYPES.index(name) for name in RACES[race]]

    class RaceUnitTypes(_distribution_base()):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(n_allies, n_enemies, width, height)
            self.race = race

        def generate(self, key: Any) -> Any:
            k_a, k_e = jax.random.split(key)
            table = jnp.array(ids, dtype=jnp.uint8)
            ally = table[jax.random.randint(k_a, (n_allies,), 0, 2)]
            extra = table[jax.random.randint(k_e, (max(0, n_enemies - n_allies),), 0, 2)]
            enemy = jnp.concatenate([ally[:n_enemies], extra])
            return jnp.concatenate([ally, enemy]).astype(jnp.uint8)

    return RaceUnitTypes()


# invariant node features of the SMACv2 entity graph: health, alive, ally, enemy, cooldown,
# and the unit type one-hot over SMAX's six types (both backends)
NODE_FEATURES = 5 + len(SMAX_UNIT_TYPES)
# per-node features of the flat observation: h, x, v
FLAT_NODE = NODE_FEATURES + 4


def smacv2_spec(n_units: int, n_enemies: int, episode_limit: int, movement: str) -> EnvSpec:
    """The :class:`EnvSpec` every SMACv2 backend presents (mixed actions, one node per unit)."""
    n_nodes = n_units + n_enemies
    return EnvSpec(
        n_agents=n_units,
        obs_dim=(n_nodes + 1) * FLAT_NODE,
        state_dim=n_nodes * FLAT_NODE,
        action_type="mixed",
        action_dim=4,
        episode_limit=episode_limit,
        n_nodes=n_nodes,
        node_feat_dim=NODE_FEATURES,
        move_directions=[(i, dx, dy) for i, (dx, dy) in enumerate(COMPASS)] if movement == "discrete" else [],
        n_targets=n_enemies,
    )


def smacv2_observation(
    h: Tensor,
    x: Tensor,
    v: Tensor,
    alive: Tensor,
    mask: Tensor,
    agent_node: Tensor,
    node_group: Tensor,
    agent_mask: Tensor | None = None,
) -> Observation:
    """The :class:`Observation` every SMACv2 backend presents, from per-node arrays.

    Args:
        h: ``[E, N, NODE_FEATURES]`` invariant node features (allies first).
        x, v: ``[E, N, 2]`` positions and last movements.
        alive: ``[E, N]`` bool node mask.
        mask: ``[E, A, ...]`` bool action mask.
        agent_node: ``[A]`` node index of each agent.
        node_group: ``[N]`` 0 ally, 1 enemy (the bipartite edge rule's groups).
        agent_mask: ``[E, A]`` bool, False for padding agents (``env.min_units``), or None.

    The flat observation of agent ``i`` is its own node's ``[h, x, v]`` followed by the
    global state (every node's ``[h, x, v]``): full observability, as in the paper.
    """
    e, n_allies = h.shape[0], agent_node.numel()
    nodes = torch.cat([h, x, v], dim=-1)  # [E, N, FLAT_NODE]
    state = nodes.reshape(e, -1)
    obs = torch.cat([nodes[:, :n_allies], state.unsqueeze(1).expand(-1, n_allies, -1)], dim=-1)
    graph = EntityGraph(
        h=h,
        x=x,
        v=v,
        node_mask=alive,
        agent_node=agent_node,
        edge_rule="bipartite",
        node_group=node_group.expand(e, -1),
    )
    return Observation(obs=obs, state=state, graph=graph, action_mask=mask, agent_mask=agent_mask)
