"""SMACv2-style scenarios on JaxMARL's SMAX (no StarCraft II needed): ``env.backend=smax``.

The simulation is JaxMARL's ``HeuristicEnemySMAX`` (SMAX with its scripted enemy; its
per-agent observation and mask functions batched by :mod:`eqmarl.envs.smax_batched`, so
1,000 units per side compile), configured with eqmarl's SMACv2 start positions and
per-race unit types (:mod:`eqmarl.envs.smacv2_scenarios`), or, with ``scenario``
(``env.scenario``), one of JaxMARL's named maps exactly as JaxMARL sets it up: its team
sizes (asymmetric ones such as 5m_vs_6m included), unit types (smacv2_*: drawn over all
six types, mixed races), start positions and 32 x 32 map (:data:`JAXMARL_SCENARIOS`).
Reset, step, autoreset and the extraction of eqmarl's observation are one pure function
per env, ``vmap``-ped over all envs and ``jit``-compiled once; the arrays reach torch
through DLPack (no copies where the devices agree).  JAX is told not to preallocate GPU memory (torch shares the GPU).

What eqmarl adds on top of SMAX, by wrapping it (SMAX's code is used, not copied):

* **Actions** (E2GN2's mixed space, see :data:`~eqmarl.envs.smacv2_scenarios.CHOICE_MOVE`):
  ``[E, A, 4]`` floats ``[choice, move_x, move_y, target]``.  ``choice`` 0 stops, 1 moves,
  2 attacks enemy ``target``.  Continuous movement: the move vector, clipped to the unit
  disk, is SMAX's per-tick movement vector, so a unit moves ``|v| * speed * 0.5`` map
  units per env step (8 ticks of 1/16 s); it is shortened where it would end within
  ``WALL_MARGIN`` of a wall (SC2's pathing keeps units inside the map; SMAX kills units
  that touch a wall).  Discrete movement: the vector is mapped to the available compass
  move (N, E, S, W) with the largest dot product.
* **Masks** (``Observation.action_mask [E, A, 7 + n_enemies]``): stop always; move if
  alive (and, discrete, some compass move stays inside the walls); attack if an enemy is
  in range (SMAX's ``get_avail_actions``); then the four compass moves and the targets.
* **Episode ends**: ``terminated`` when a team is dead, ``truncated`` at the episode limit
  (SMAX reports both as ``done``); ``info['win']`` is 1.0 where the allies won (every
  enemy dead and an ally alive, SMAX's own won-battle condition), 0.0 where an episode
  ended otherwise, nan where none ended; ``final_obs`` keeps the finished episode's last
  observation (SMAX's own autoreset drops it).
* **Entity graph**: one node per unit (allies first, then enemies); invariant features
  ``h = [health fraction, alive, ally, enemy, weapon cooldown fraction, 6-way unit type]``;
  equivariant ``x`` = position relative to the map centre / ``POS_SCALE`` and ``v`` = the
  unit's last movement vector; ``edge_rule='bipartite'`` with ``node_group`` 0 for allies
  and 1 for enemies (allies fully connected, every ally linked to every enemy, no
  enemy-enemy edges); dead units masked out.  Every agent reads the same (fully observed)
  graph, as in the E2GN2 paper.
* **Flat observation** (the MLP baseline, the same information): per agent, its own node's
  ``[h, x, v]`` followed by every node's ``[h, x, v]`` (dead units zeroed); the global state
  is every node's ``[h, x, v]``.

The reward is SMAX's (damage dealt, normalised, plus 1 for a win: at most 2 per episode).

Team sizes drawn per episode (``min_units``): see
:mod:`eqmarl.envs.smacv2_scenarios` (padding units, dead from the reset; the reward
rescaled to the episode's team size; ``Observation.agent_mask`` marks the padding agents).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.core.env import Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.footprint import EnvFootprint, MiB
from eqmarl.core.log import stdout_to_stderr
from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, COMPASS, MASK_TARGETS
from eqmarl.core.tracking import EpisodeTracker
from eqmarl.envs.smacv2_scenarios import (
    FLAT_NODE,
    NODE_FEATURES,
    SMAX_UNIT_TYPES,
    check_map_size,
    check_scenario,
    check_team_sizes,
    make_race_unit_types,
    make_start_positions,
    pad_team,
    smacv2_observation,
    smacv2_spec,
    team_present,
    team_size_reward,
)

MAP_SIZE = 32.0
# positions enter the graph as (pos - centre) / POS_SCALE: in [-1, 1] on SMACv2's map, and
# in the same units on larger maps (a policy sees the same distances on every map)
POS_SCALE = MAP_SIZE / 2
# teams up to this size play on SMACv2's map; larger ones on a map scaled to keep its density
DENSITY_TEAM = 10


def smax_map_size(n_units: int, n_enemies: int, map_size: float | None = None) -> float:
    """Side of the square SMAX map for these team sizes.

    ``map_size`` if given; else SMACv2's 32 for teams of up to :data:`DENSITY_TEAM` units,
    and ``ceil(32 * sqrt(n / DENSITY_TEAM))`` for a larger team of ``n``, so N-vs-N battles keep
    the unit density of 10v10 (the spawn jitters and diagonals scale with the side).
    """
    if map_size is not None:
        return float(round(map_size))  # SMAX's map sides are integers
    return float(math.ceil(MAP_SIZE * max(1.0, math.sqrt(max(n_units, n_enemies) / DENSITY_TEAM))))


# JaxMARL 0.2.0's named SMAX maps (``jaxmarl.environments.smax.map_name_to_scenario``), for
# ``env.scenario``: allies and enemies per name.  The SMAC-style maps have fixed unit types
# (m marine, s stalker, z zealot, h hydralisk) and start the teams on either side of the map;
# smacv2_* draw the unit types uniformly over all six (mixed races, enemies mirroring the
# allies) and start positions with JaxMARL's surround-or-reflect generator.  Kept here so
# that a config is checked without importing jax; tests/test_smax_scenarios.py checks it
# against the installed jaxmarl.
JAXMARL_SCENARIOS: dict[str, tuple[int, int]] = {
    "3m": (3, 3),
    "2s3z": (5, 5),
    "25m": (25, 25),
    "3s5z": (8, 8),
    "8m": (8, 8),
    "5m_vs_6m": (5, 6),
    "10m_vs_11m": (10, 11),
    "27m_vs_30m": (27, 30),
    "3s5z_vs_3s6z": (8, 9),
    "3s_vs_5z": (3, 5),
    "6h_vs_8z": (6, 8),
    "smacv2_5_units": (5, 5),
    "smacv2_10_units": (10, 10),
    "smacv2_20_units": (20, 20),
}
# eqmarl's own scenario keys, with their defaults: a JaxMARL map draws its unit types and
# start positions itself, so these must stay at their defaults with env.scenario
SCENARIO_GENERATOR_KEYS: dict[str, Any] = {
    "race": "terran",
    "start_positions": "surrounded_and_reflect",
    "p": 0.5,
    "surround_sides": "all",
    "map_size": None,
}
# the schema's team sizes: with env.scenario they are taken as unset (the map's are used)
DEFAULT_TEAM = 5


def scenario_teams(scenario: str | None, n_units: int, n_enemies: int) -> tuple[int, int]:
    """The (allies, enemies) of a SMAX config: the JaxMARL map's if ``scenario`` names one."""
    return JAXMARL_SCENARIOS.get(scenario or "", (n_units, n_enemies))


def check_jaxmarl_scenario(
    scenario: str,
    race: str = "terran",
    n_units: int = DEFAULT_TEAM,
    n_enemies: int = DEFAULT_TEAM,
    start_positions: str = "surrounded_and_reflect",
    p: float = 0.5,
    surround_sides: str = "all",
    map_size: float | None = None,
    min_units: int | None = None,
) -> None:
    """Refuse an unknown ``env.scenario`` and the options a JaxMARL map decides itself.

    ``race``, ``start_positions``, ``p``, ``surround_sides`` and ``map_size`` must keep their
    defaults (:data:`SCENARIO_GENERATOR_KEYS`); ``n_units``/``n_enemies`` must be the map's
    team sizes or the default 5 (then the map's are used); ``min_units`` (drawn team
    sizes) must be None.  ``movement`` and
    ``episode_limit`` (eqmarl's action layer and time limit) combine freely.

    Raises:
        InvalidOption: naming the ``env.`` key and the allowed values.
    """
    if scenario not in JAXMARL_SCENARIOS:
        raise InvalidOption(
            "env.scenario", scenario, "null (eqmarl's SMACv2 scenario) or " + ", ".join(JAXMARL_SCENARIOS)
        )
    if min_units is not None:
        raise InvalidOption(
            "env.min_units", min_units, f"null with env.scenario={scenario} (JaxMARL's map sets its team sizes)"
        )
    given = {"race": race, "start_positions": start_positions, "p": p, "surround_sides": surround_sides}
    given["map_size"] = map_size
    for key, default in SCENARIO_GENERATOR_KEYS.items():
        if given[key] != default:
            raise InvalidOption(
                f"env.{key}",
                given[key],
                f"{'null' if default is None else default} with env.scenario={scenario} "
                "(JaxMARL's map sets its unit types, start positions and 32 x 32 map itself)",
            )
    for key, value, team in zip(
        ("n_units", "n_enemies"), (n_units, n_enemies), JAXMARL_SCENARIOS[scenario], strict=True
    ):
        if value not in (team, DEFAULT_TEAM):
            raise InvalidOption(
                f"env.{key}", value, f"{team} with env.scenario={scenario} (or leave it at {DEFAULT_TEAM})"
            )


# moves never end closer than this to a wall (SMAX kills units touching a wall)
WALL_MARGIN = 0.5

# SMAX's memory, measured (benchmarks/memory_model.py, docs/results/memory_model.json: the
# peak resident set of a process that builds E envs of N-unit battles, resets and steps
# them, N = 10 to 400 units, E = 8 to 512, JAX 0.10.2 on CPU, compiling into an empty cache
# and again from the filled one).  Per env, the jitted step holds SMAX's pairwise unit
# terms (every unit's view of every other, the enemy AI's, the attack ranges): ~105 B per
# unit pair plus ~7 KB per unit.  Each built instance keeps its compiled steps and JAX's
# runtime: ~120 MB plus ~0.6 MB per unit.  Compiling needs ~260 MB plus ~1.3 MB per unit
# more, once (the step is traced per agent: its program grows with N).
SMAX_BYTES_PER_UNIT_PAIR = 105
SMAX_BYTES_PER_UNIT = 7 * 1024
SMAX_COMPILE_BYTES = 260 * MiB
SMAX_COMPILE_BYTES_PER_UNIT = int(1.3 * MiB)
SMAX_INSTANCE_BYTES = 120 * MiB
SMAX_INSTANCE_BYTES_PER_UNIT = int(0.6 * MiB)
# jax and jaxmarl, imported (beyond torch's process)
SMAX_IMPORT_BYTES = 320 * MiB
# what a graph model keeps for backward per SMAX edge, layer and unit of width (agent_scaling_smax.json:
# 536-710 B per edge and layer at width 32)
SMAX_EDGE_BYTES_PER_HIDDEN = 22


def smax_footprint(n_units: int, n_enemies: int) -> EnvFootprint:
    """The memory model of ``n_units``-vs-``n_enemies`` SMAX battles (see the constants
    above); pure arithmetic, nothing is built.

    Args:
        n_units: allies (learning agents).
        n_enemies: enemies.
    """
    n = n_units + n_enemies
    return EnvFootprint(
        agents=n_units,
        obs_dim=(n + 1) * FLAT_NODE,
        state_dim=n * FLAT_NODE,
        nodes=n,
        node_feats=NODE_FEATURES,
        action_size=4,
        mask_size=7 + n_enemies,
        # allies hear every other unit, enemies only the allies (no enemy-enemy edges)
        neighbours=((n_units, n - 1), (n_enemies, n_units)),
        per_env_bytes=SMAX_BYTES_PER_UNIT_PAIR * n * n + SMAX_BYTES_PER_UNIT * n,
        instance_bytes=SMAX_INSTANCE_BYTES + SMAX_INSTANCE_BYTES_PER_UNIT * n,
        library_bytes=SMAX_IMPORT_BYTES,
        transient_bytes=SMAX_COMPILE_BYTES + SMAX_COMPILE_BYTES_PER_UNIT * n,
        edge_bytes_per_hidden=SMAX_EDGE_BYTES_PER_HIDDEN,
        keys=("env.n_units", "env.n_enemies"),
        what=f"SMAX ({n_units} vs {n_enemies} units)",
    )


def import_jax() -> Any:
    """Import jax (GPU memory not preallocated; compiled steps cached on disk, in
    ``$JAX_COMPILATION_CACHE_DIR`` or ``~/.cache/eqmarl/jax``: compiling SMAX's step takes
    tens of seconds on a CPU); a clear message if the smax extra is missing."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        with stdout_to_stderr():  # jaxmarl prints on its first import: stdout stays the program's
            import jax
            import jaxmarl.environments.smax  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"env.backend=smax needs jax and jaxmarl ({e.name} is missing): pip install 'eqmarl[smax]' "
            "(the versions CI tests: pip install -c constraints.txt 'eqmarl[smax]')"
        ) from e
    cache = getattr(jax.config, "jax_compilation_cache_dir", None)
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and cache is None:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/eqmarl/jax"))
    return jax


def _to_torch(arr: Any, device: torch.device) -> Tensor:
    """A jax array as a torch tensor without a copy (DLPack), then on ``device``."""
    t = torch.from_dlpack(arr)
    return t if t.device == device else t.to(device)


class SmaxSMACv2:
    """``num_envs`` SMACv2-style SMAX battles as one batch (see the module docstring).

    Args:
        num_envs: parallel envs.
        race: terran | protoss | zerg.
        n_units: allies (learning agents).
        n_enemies: enemies (SMAX's heuristic AI).
        start_positions: surrounded | reflect | surrounded_and_reflect.
        p: probability of reflect in surrounded_and_reflect.
        surround_sides: all | left | right (enemy diagonals of surrounded starts).
        movement: continuous | discrete.
        episode_limit: steps after which an episode is truncated.
        seed: base seed.
        device: torch device of the returned tensors.
        enemy_attack_mode: the heuristic enemy's targets: closest | random.
        check_actions: raise if an action is unavailable (costs a device sync per step).
        map_size: side of the square map (None: :func:`smax_map_size`'s rule; SMACv2's 32
            up to 10 units per side).
        scenario: a JaxMARL map name (:data:`JAXMARL_SCENARIOS`; None: eqmarl's SMACv2
            scenario above): its team sizes, unit types and start positions, JaxMARL's
            32 x 32 map; ``n_units``/``n_enemies`` then follow it (see
            :func:`check_jaxmarl_scenario` for the options that cannot be combined with it).
        min_units: draw each episode's team size from ``min_units..n_units`` (padded to
            ``n_units`` with dead units; ``n_enemies == n_units``); None: fixed teams.
    """

    def __init__(
        self,
        num_envs: int,
        race: str = "terran",
        n_units: int = 5,
        n_enemies: int = 5,
        start_positions: str = "surrounded_and_reflect",
        p: float = 0.5,
        surround_sides: str = "all",
        movement: str = "continuous",
        episode_limit: int = 100,
        seed: int = 0,
        device: str = "cpu",
        enemy_attack_mode: str = "closest",
        check_actions: bool = False,
        map_size: float | None = None,
        scenario: str | None = None,
        min_units: int | None = None,
    ) -> None:
        check_scenario(race, n_units, n_enemies, start_positions, p, surround_sides, movement)
        check_map_size("smax", map_size)
        if scenario is not None:
            check_jaxmarl_scenario(
                scenario, race, n_units, n_enemies, start_positions, p, surround_sides, map_size, min_units
            )
            n_units, n_enemies = JAXMARL_SCENARIOS[scenario]
        check_team_sizes("smax", min_units, n_units, n_enemies)
        self.scenario = scenario
        self.min_units = min_units
        self.map_size = size = MAP_SIZE if scenario is not None else smax_map_size(n_units, n_enemies, map_size)
        scale = size / MAP_SIZE
        jax = import_jax()
        import jax.numpy as jnp
        from jaxmarl.environments.smax import Scenario, map_name_to_scenario

        from eqmarl.envs.smax_batched import BatchedHeuristicEnemySMAX

        self.num_envs = num_envs
        self.device = torch.device(device)
        self.n_allies, self.n_enemies = n_units, n_enemies
        self.n_nodes = n_units + n_enemies
        self.movement = movement
        self.episode_limit = episode_limit
        self.check_actions = check_actions
        self.race = race
        if scenario is not None:  # JaxMARL's map: its unit types and start positions, as JaxMARL draws them
            smax_scenario = map_name_to_scenario(scenario)
        else:  # eqmarl's generators below replace SMAX's (read by SMAX's reset)
            smax_scenario = Scenario(
                unit_types=jnp.zeros((self.n_nodes,), dtype=jnp.uint8),
                num_allies=n_units,
                num_enemies=n_enemies,
                smacv2_position_generation=True,
                smacv2_unit_type_generation=True,
            )
        self._smax = BatchedHeuristicEnemySMAX(
            attack_mode=enemy_attack_mode,
            scenario=smax_scenario,
            map_width=int(size),
            map_height=int(size),
            # SMAX ends an episode when its step count *before* the step reaches max_steps,
            # i.e. after max_steps + 1 steps; eqmarl's limit counts steps taken
            max_steps=episode_limit - 1,
            walls_cause_death=True,
            see_enemy_actions=True,
        )
        inner = self._smax.batched
        if scenario is None:
            inner.position_generator = make_start_positions(
                n_units,
                n_enemies,
                size,
                size,
                start_positions,
                p,
                surround_sides,
                margin=1.0 * scale,
                ally_jitter=2.0 * scale,
                enemy_jitter=1.0 * scale,
                inner_offset=2.0 * scale,
            )
            inner.unit_type_generator = make_race_unit_types(n_units, n_enemies, size, size, race)
        self._inner = inner
        # map units per env step at |v| = 1, per unit type
        self._step_dist = np.asarray(inner.unit_type_velocities) * inner.time_per_step * inner.world_steps_per_env_step
        self._reset_fn = jax.jit(jax.vmap(self._reset_one))
        self._step_fn = jax.jit(jax.vmap(self._step_one))
        self._features_fn = jax.jit(jax.vmap(self._features))
        self._jax = jax
        self._state: Any = None
        self._keys: Any = None
        self._feats: Any = None
        self._episodes = EpisodeTracker(num_envs, self.device)
        self._agent_node = torch.arange(n_units, device=self.device)
        self._node_group = torch.cat(
            [torch.zeros(n_units, dtype=torch.long), torch.ones(n_enemies, dtype=torch.long)]
        ).to(self.device)
        self.spec = smacv2_spec(n_units, n_enemies, episode_limit, movement)
        self.reset(seed)

    # -- the pure jax side (one env; vmapped and jitted in __init__) ------------------
    def _features(self, state: Any) -> dict[str, Any]:
        """eqmarl's observation arrays of one env's SMAX state."""
        import jax.numpy as jnp

        inner, s = self._inner, state.state
        n, m = self.n_allies, self.n_enemies
        alive = s.unit_alive
        types = s.unit_types.astype(jnp.int32)
        health = s.unit_health / inner.unit_type_health[types]
        cooldown = jnp.clip(s.unit_weapon_cooldowns / inner.unit_type_weapon_cooldowns[types], 0.0, 1.0)
        enemy = (jnp.arange(n + m) >= n).astype(jnp.float32)
        alive_f = alive.astype(jnp.float32)
        h = jnp.concatenate(
            [
                jnp.stack([health, alive_f, 1.0 - enemy, enemy, cooldown], axis=-1),
                jnp.eye(len(SMAX_UNIT_TYPES))[types],
            ],
            axis=-1,
        )
        x = (s.unit_positions - self.map_size / 2) / POS_SCALE
        v = s.prev_movement_actions
        present = {} if self.min_units is None else {"present": team_present(s.unit_positions[:n]).astype(jnp.uint8)}
        keep = alive_f[:, None]
        h, x, v = h * keep, x * keep, v * keep
        # masks
        pos = s.unit_positions[:n]
        dist = jnp.asarray(self._step_dist)[types[:n]][:, None, None]  # [A, 1, 1]
        target = pos[:, None, :] + dist * jnp.array(COMPASS)[None]  # [A, 4, 2]
        inside = jnp.all((target >= WALL_MARGIN) & (target <= self.map_size - WALL_MARGIN), axis=-1)
        a_alive = alive[:n]
        compass = inside & a_alive[:, None] if self.movement == "discrete" else jnp.repeat(a_alive[:, None], 4, 1)
        targets = inner.avail_actions(s)[0][:, inner.num_movement_actions :].astype(bool)
        choices = jnp.stack([jnp.ones_like(a_alive), jnp.any(compass, axis=-1), jnp.any(targets, axis=-1)], axis=-1)
        mask = jnp.concatenate([choices, compass, targets], axis=-1)
        return {
            "h": h.astype(jnp.float32),
            "x": x.astype(jnp.float32),
            "v": v.astype(jnp.float32),
            "alive": alive.astype(jnp.uint8),
            "mask": mask.astype(jnp.uint8),
            "attack": s.prev_attack_actions.astype(jnp.int32),
            **present,
        }

    def _reset_one(self, key: Any) -> tuple[Any, dict[str, Any]]:
        import jax.numpy as jnp

        _, state = self._smax.reset(key)
        if self.scenario is None:
            # SMAX's reset pushes overlapping units apart, which can move a unit of a dense
            # spawn across a wall (where SMAX kills it): keep every unit inside.  JaxMARL's
            # own maps keep JaxMARL's positions (a unit spawned on a wall dies at the first tick)
            pos = jnp.clip(state.state.unit_positions, WALL_MARGIN, self.map_size - WALL_MARGIN)
            state = state.replace(state=state.state.replace(unit_positions=pos))
        if self.min_units is not None:  # this episode's team size; the rest padding
            size = self.map_size
            padded = pad_team(
                self._inner, state.state, self._jax.random.fold_in(key, 1), self.min_units, WALL_MARGIN, size, size
            )
            state = state.replace(state=padded)
        # strong dtypes, as after a step (else the jitted step compiles twice)
        state = self._jax.tree.map(lambda a: jnp.asarray(a, dtype=a.dtype), state)
        return state, self._features(state)

    def _ally_actions(self, state: Any, action: Any) -> tuple[Any, Any]:
        """Our ``[A, 4]`` actions -> SMAX's (movement vectors ``[A, 2]``, attack actions ``[A]``)."""
        import jax.numpy as jnp

        inner, s = self._inner, state.state
        n = self.n_allies
        choice = action[:, 0].astype(jnp.int32)
        vec = action[:, 1:3]
        target = action[:, 3].astype(jnp.int32)
        feats_mask = self._features(state)["mask"].astype(bool)
        pos = s.unit_positions[:n]
        dist = jnp.asarray(self._step_dist)[s.unit_types[:n].astype(jnp.int32)][:, None]  # [A, 1]
        if self.movement == "discrete":
            compass = jnp.array(COMPASS)
            score = jnp.where(feats_mask[:, 3:7], vec @ compass.T, -jnp.inf)
            vec = compass[jnp.argmax(score, axis=-1)]
        else:
            norm = jnp.linalg.norm(vec, axis=-1, keepdims=True)
            vec = vec / jnp.maximum(norm, 1.0)
            # shorten a move that would end within WALL_MARGIN of a wall
            end = jnp.clip(pos + vec * dist, WALL_MARGIN, self.map_size - WALL_MARGIN)
            vec = (end - pos) / dist
        moving = choice == CHOICE_MOVE
        attacking = choice == CHOICE_ATTACK
        movement = jnp.where(moving[:, None], vec, 0.0)
        attack = jnp.where(attacking, target + inner.num_movement_actions, 0)
        return movement, attack

    def _valid(self, state: Any, action: Any) -> Any:
        """Whether each agent's action is available (for ``check_actions``)."""
        import jax.numpy as jnp

        mask = self._features(state)["mask"].astype(bool)
        choice = action[:, 0].astype(jnp.int32)
        target = jnp.clip(action[:, 3].astype(jnp.int32), 0, self.n_enemies - 1)
        ok = jnp.take_along_axis(mask[:, :3], choice[:, None], axis=-1)[:, 0]
        t_ok = jnp.take_along_axis(mask[:, MASK_TARGETS:], target[:, None], axis=-1)[:, 0]
        in_range = (action[:, 3] >= 0) & (action[:, 3] < self.n_enemies)
        return ok & ((choice != CHOICE_ATTACK) | (t_ok & in_range))

    def _step_one(self, key: Any, state: Any, action: Any) -> tuple[Any, Any, dict[str, Any]]:
        jax = self._jax
        import jax.numpy as jnp

        smax, inner = self._smax, self._inner
        key, k_enemy, k_step, k_reset = jax.random.split(key, 4)
        s = state.state
        valid = self._valid(state, action)
        ally_move, ally_attack = self._ally_actions(state, action)
        # the heuristic enemy, through HeuristicEnemySMAX's own policy (on batched arrays)
        enemy_obs = smax.enemy_observations(s)
        enemy_actions, enemy_policy_state = smax.enemy_actions(k_enemy, state.enemy_policy_state, enemy_obs)
        enemy_move, enemy_attack = inner._decode_discrete_actions(enemy_actions)
        _, s_new, rewards, _, _ = inner.step_env_no_decode(
            k_step,
            s,
            (jnp.concatenate([ally_move, enemy_move]), jnp.concatenate([ally_attack, enemy_attack])),
        )
        finished = state.replace(state=s_new, enemy_policy_state=enemy_policy_state)
        n = self.n_allies
        allies_dead = ~jnp.any(s_new.unit_alive[:n])
        enemies_dead = ~jnp.any(s_new.unit_alive[n:])
        done = s_new.done
        terminated = done & (allies_dead | enemies_dead)
        won = enemies_dead & ~allies_dead
        reward = rewards["ally_0"]
        if self.min_units is not None:  # SMAX's damage reward counts all n_enemies: rescale to the live ones
            n_live = jnp.sum(team_present(s.unit_positions[n:]))
            reward = team_size_reward(reward, won, inner.won_battle_bonus, self.n_enemies, n_live)
        final = self._features(finished)
        reset_state, reset_feats = self._reset_one(k_reset)
        nxt = jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state, finished)
        nxt_feats = {k: jnp.where(done, reset_feats[k], final[k]) for k in final}
        out = {
            **{f"final_{k}": v for k, v in final.items()},
            **nxt_feats,
            "reward": reward.astype(jnp.float32),
            "done": done.astype(jnp.uint8),
            "terminated": terminated.astype(jnp.uint8),
            "won": won.astype(jnp.uint8),
            "valid": jnp.all(valid).astype(jnp.uint8),
        }
        return key, nxt, out

    # -- torch side -------------------------------------------------------------
    def _observation(self, f: dict[str, Any], prefix: str = "") -> Observation:
        dev = self.device
        h = _to_torch(f[prefix + "h"], dev)
        x = _to_torch(f[prefix + "x"], dev)
        v = _to_torch(f[prefix + "v"], dev)
        alive = _to_torch(f[prefix + "alive"], dev).bool()
        mask = _to_torch(f[prefix + "mask"], dev).bool()
        present = _to_torch(f[prefix + "present"], dev).bool() if prefix + "present" in f else None
        return smacv2_observation(h, x, v, alive, mask, self._agent_node, self._node_group, present)

    def reset(self, seed: int | None = None) -> Observation:
        """Reset every env; env ``i`` draws from ``fold_in(PRNGKey(seed), i)``."""
        jax = self._jax
        base = jax.random.PRNGKey(0 if seed is None else seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jax.numpy.arange(self.num_envs))
        reset_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
        self._state, feats = self._reset_fn(reset_keys)
        self._keys = keys
        self._feats = feats
        self._episodes.reset()
        return self._observation(feats)

    def observe(self) -> Observation:
        """The current observation (without stepping)."""
        return self._observation(self._feats)

    def _jax_actions(self, actions: Tensor) -> Any:
        as_float = actions.detach().to(torch.float32)
        if as_float.shape != (self.num_envs, self.n_allies, 4):
            raise ValueError(
                f"actions must be [E, A, 4] = {[self.num_envs, self.n_allies, 4]}; got {list(as_float.shape)}"
            )
        return self._jax.numpy.asarray(as_float.cpu().numpy())

    def step(self, actions: Tensor) -> StepResult:
        """Step every env with ``actions [E, A, 4]`` (see the module docstring); autoreset."""
        self._keys, self._state, out = self._step_fn(self._keys, self._state, self._jax_actions(actions))
        if self.check_actions and not bool(np.asarray(out["valid"]).all()):
            raise ValueError("an unavailable action reached the env (check the action mask)")
        dev = self.device
        reward = _to_torch(out["reward"], dev)
        done = _to_torch(out["done"], dev).bool()
        terminated = _to_torch(out["terminated"], dev).bool()
        won = _to_torch(out["won"], dev).float()
        truncated = done & ~terminated
        self._episodes.add(reward)
        episode_return, episode_length = self._episodes.finish(done)
        self._feats = {k: v for k, v in out.items() if not k.startswith("final_")}
        obs = self._observation(out)
        final_obs = self._observation(out, "final_")
        return StepResult(
            obs=obs,
            reward=reward.unsqueeze(-1).expand(-1, self.n_allies),
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            episode_return=episode_return,
            episode_length=episode_length,
            info={"win": torch.where(done, won, torch.full_like(won, float("nan")))},
        )

    # -- inspection (tests, render) ----------------------------------------------------
    def smax_state(self) -> Any:
        """The batched SMAX ``State`` (jax arrays ``[E, ...]``)."""
        return self._state.state

    def set_smax_state(self, smax_state: Any) -> Observation:
        """Start every env from the batched SMAX ``State`` ``smax_state`` (e.g. a hand-built
        battle; episode counters restart); returns its observation."""
        self._state = self._state.replace(state=smax_state)
        self._episodes.reset()
        self._feats = self._features_fn(self._state)
        return self.observe()

    def unit_types(self) -> Tensor:
        """``[E, N]`` SMAX unit type ids of the current episodes."""
        return torch.from_numpy(np.asarray(self._state.state.unit_types).astype(np.int64)).to(self.device)

    def state_dict(self) -> dict[str, Any]:
        """Simulator state (every jax leaf as numpy), random keys and counters."""
        jax = self._jax
        return {
            "leaves": [np.asarray(x) for x in jax.tree.leaves(self._state)],
            "keys": np.asarray(self._keys),
            **self._episodes.state_dict(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation."""
        jax = self._jax
        treedef = jax.tree.structure(self._state)
        self._state = jax.tree.unflatten(treedef, [jax.numpy.asarray(x) for x in st["leaves"]])
        self._keys = jax.numpy.asarray(st["keys"])
        self._episodes.load_state_dict(st)
        self._feats = self._features_fn(self._state)
        return self.observe()

    def close(self) -> None:
        pass
