"""``env=smacv2 env.backend=sc2``: SMACv2 on the real StarCraft II, one game per worker process.

Each env slot is one smacv2 ``StarCraftCapabilityEnvWrapper`` (one StarCraft II process)
living in its own worker process of a :class:`eqmarl.envs.vector.ProcessVectorEnv`.
smacv2 is imported lazily, inside the worker; the env class is injectable
(``env_class="module:Class"``) so that tests run the same code on a stand-in.

What the backend presents is the SMAX backend's (:mod:`eqmarl.envs.smax`): the same
``Observation`` (flat obs, state, entity graph with ``edge_rule='bipartite'``), the same
action mask layout ``[choices, compass N/E/S/W, targets]``, ``info['win']`` and
``final_obs``.  How smacv2's raw units become the graph:

* node ``i < n_units`` is ``env.get_unit_by_id(i)`` (ally ``i``), node ``n_units + k`` is
  ``env.enemies[k]``; a unit with ``health <= 0`` is dead (node masked out, features 0);
* ``h = [health fraction, alive, ally, enemy, cooldown fraction, 6-way unit type]`` where
  the health fraction counts shields: ``(health + shield) / (health_max + shield_max)``;
  the cooldown fraction is ``weapon_cooldown`` (game loops) over SMAX's cooldown of the
  type in game loops (22.4 per second), clipped to [0, 1]; the unit type is matched by
  the env's ``<name>_id`` attributes (allies; SMACv2 maps use custom ally types) or the
  standard SC2 ids (enemies); medivac, colossus and baneling have no SMAX type (zeros);
* ``x = (pos - map centre) / (map size / 2)``; ``v`` = the ally's last commanded move
  vector (zeros for enemies and for non-moves);
* masks from ``env.get_avail_agent_actions(i)``: SMACv2's moves 2 N, 3 S, 4 E, 5 W are
  reordered to eqmarl's N, E, S, W; targets are ``avail[6:6 + n_enemies]``.  Continuous
  movement: the compass entries are ``alive`` (as in SMAX).

Actions (``[E, A, 4] = [choice, move_x, move_y, target]``): stop -> 1 (dead units: 0,
no-op); attack -> ``6 + target``; move, discrete -> the available compass move with the
largest dot product; move, continuous -> a move order to ``unit position + move_amount *
v`` (``|v| <= 1``), issued by a subclass of the env class whose ``get_agent_action`` (the
env's own action translation) is overridden (:class:`ContinuousMoves`; E2GN2's scheme).

Episode ends: ``terminated`` when a team is dead (``info['win']`` = smacv2's
``battle_won``), ``truncated`` at ``episode_limit`` (or smacv2's own ``env.episode_limit``); a loss
(smacv2: no ally alive, or only medivacs) is ``terminated`` with win 0.

**Crash recovery.**  A StarCraft II crash, a websocket/connection error
(``ConnectionError``, ``OSError`` raised by the game connection, pysc2's
``ProtocolError``; also smacv2's own swallowed restart, a ``terminated`` step without a
``battle_won`` key) or a step that takes longer than ``step_timeout`` seconds (the worker
is killed) restarts that slot's game: its episode ends as ``truncated`` with reward 0,
``info['win']`` nan (neither a win nor a loss), ``episode_return`` nan (not a finished
episode), ``info['crashed']`` 1 (the transition to drop), ``info['restarts']`` the
restarts at this step; :attr:`SC2SMACv2.restarts` counts them all.  ``final_obs`` is the
last observation before the crash.  Consecutive failures of one slot back off
(``backoff * 2**(k-1)`` seconds, capped) and after ``max_failures`` raise
:class:`SC2WorkerFailed` naming the worker and the count.

**Ports and temp files.**  Launches of StarCraft II on one node are serialised by an
exclusive file lock (``<tmpdir>/eqmarl-sc2-launch.lock``), held while a worker builds its
env and starts its game, so two games never pick the same free port.  ``TMPDIR`` of the
workers (where StarCraft II writes its temp files) is ``sc2_tmpdir`` (default: the
parent's ``TMPDIR``).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.core.env import Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.footprint import EnvFootprint, MiB
from eqmarl.core.smacv2_actions import CHOICE_ATTACK, CHOICE_MOVE, COMPASS
from eqmarl.core.tracking import EpisodeTracker
from eqmarl.envs.smacv2_scenarios import (
    NODE_FEATURES,
    SMAX_UNIT_TYPES,
    check_scenario,
    smacv2_observation,
    smacv2_spec,
)
from eqmarl.envs.vector import ProcessVectorEnv, WorkerCrash

DEFAULT_ENV_CLASS = "smacv2.env.starcraft2.wrapper:StarCraftCapabilityEnvWrapper"
# SMACv2 action indices of eqmarl's compass order N, E, S, W (SMACv2: 2 N, 3 S, 4 E, 5 W)
SC2_COMPASS = (2, 4, 3, 5)
SC2_NOOP, SC2_STOP, SC2_ATTACK0 = 0, 1, 6
# standard SC2 unit type ids (enemies) of SMAX's types
SC2_UNIT_IDS = {"marine": 48, "marauder": 51, "stalker": 74, "zealot": 73, "zergling": 105, "hydralisk": 107}
# SMAX weapon cooldowns (s), as game loops (22.4 per second)
COOLDOWN_LOOPS = {name: s * 22.4 for name, s in zip(SMAX_UNIT_TYPES, (0.61, 1.07, 1.87, 0.86, 0.5, 0.59), strict=True)}
RACE_MAPS = {"terran": "10gen_terran", "protoss": "10gen_protoss", "zerg": "10gen_zerg"}
RACE_TEAMS = {
    "terran": (["marine", "marauder", "medivac"], ["medivac"]),
    "protoss": (["stalker", "zealot", "colossus"], ["colossus"]),
    "zerg": (["zergling", "hydralisk", "baneling"], ["baneling"]),
}


class SC2WorkerFailed(RuntimeError):
    """One StarCraft II worker failed too many times in a row."""


def import_string(path: str) -> Any:
    """``"module:attr"`` -> the attribute."""
    module, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"env class {path!r}: expected 'module:Class'")
    return getattr(importlib.import_module(module), attr)


def connection_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the game's connection broke (pysc2's, where pysc2 is installed)."""
    errs: list[type[BaseException]] = [ConnectionError, OSError, EOFError, TimeoutError]
    with contextlib.suppress(ImportError):
        from pysc2.lib import protocol  # type: ignore[import-not-found, import-untyped, unused-ignore]

        errs.append(protocol.ProtocolError)
    with contextlib.suppress(ImportError):
        import websocket  # type: ignore[import-not-found, import-untyped, unused-ignore]

        errs.append(websocket.WebSocketException)
    return tuple(errs)


@contextlib.contextmanager
def launch_lock(tmpdir: str) -> Iterator[None]:
    """Exclusive node-wide lock around a StarCraft II launch (port choice without races)."""
    path = Path(tmpdir) / "eqmarl-sc2-launch.lock"
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class ContinuousMoves:
    """Mixin over a smacv2 env class: a pending continuous move of agent ``a`` turns its move
    action into a move order to ``unit position + move_amount * v`` (the env's own
    ``get_agent_action`` otherwise).  The order is built by ``eqmarl_move_command(unit, x, y)``
    (pysc2's raw move command; a stand-in defines its own)."""

    eqmarl_moves: dict[int, tuple[float, float]]

    def get_agent_action(self, a_id: int, action: int) -> Any:
        vec = getattr(self, "eqmarl_moves", {}).get(a_id)
        if vec is not None and int(action) in SC2_COMPASS:
            unit = self.get_unit_by_id(a_id)  # type: ignore[attr-defined]
            amount = float(getattr(self, "_move_amount", 2.0))
            return self.eqmarl_move_command(  # type: ignore[attr-defined]
                unit, unit.pos.x + amount * vec[0], unit.pos.y + amount * vec[1]
            )
        return super().get_agent_action(a_id, action)  # type: ignore[misc]


class SC2MoveCommand:
    """pysc2's raw move order (ability 16, not queued) to a world point."""

    def eqmarl_move_command(self, unit: Any, x: float, y: float) -> Any:
        from s2clientprotocol import common_pb2 as sc_common  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from s2clientprotocol import raw_pb2 as r_pb  # type: ignore[import-not-found, import-untyped, unused-ignore]
        from s2clientprotocol import sc2api_pb2 as sc_pb  # type: ignore[import-not-found, import-untyped, unused-ignore]

        cmd = r_pb.ActionRawUnitCommand(
            ability_id=16,
            target_world_space_pos=sc_common.Point2D(x=x, y=y),
            unit_tags=[unit.tag],
            queue_command=False,
        )
        return sc_pb.Action(action_raw=r_pb.ActionRaw(unit_command=cmd))


def continuous_subclass(cls: type) -> type:
    """``cls`` with :class:`ContinuousMoves` (and pysc2's move order unless ``cls`` has one)."""
    bases: tuple[type, ...] = (ContinuousMoves, cls)
    if not hasattr(cls, "eqmarl_move_command"):
        bases = (ContinuousMoves, SC2MoveCommand, cls)
    return type(f"Continuous{cls.__name__}", bases, {})


def smacv2_kwargs(
    race: str, n_units: int, n_enemies: int, start_positions: str, p: float, fully_observable: bool
) -> dict[str, Any]:
    """``StarCraftCapabilityEnvWrapper`` kwargs of an eqmarl scenario (SMACv2's yaml defaults)."""
    unit_types, exceptions = RACE_TEAMS[race]
    # SMACv2: P(surrounded) = 1 - p; eqmarl's p is P(reflect) as well
    prob = {"surrounded": 0.0, "reflect": 1.0}.get(start_positions, p)
    return {
        "capability_config": {
            "n_units": n_units,
            "n_enemies": n_enemies,
            "team_gen": {
                "dist_type": "weighted_teams",
                "unit_types": unit_types,
                "exception_unit_types": exceptions,
                "weights": [0.45, 0.45, 0.1],
                "observe": True,
            },
            "start_positions": {
                "dist_type": "surrounded_and_reflect",
                "p": prob,
                "n_enemies": n_enemies,
                "map_x": 32,
                "map_y": 32,
            },
        },
        "map_name": RACE_MAPS[race],
        "fully_observable": fully_observable,
        "use_unit_ranges": True,
        "min_attack_range": 2,
        "obs_own_pos": True,
    }


class SC2Slot:
    """One smacv2 game inside a worker process (the record protocol of
    :class:`~eqmarl.envs.vector.ProcessVectorEnv`; autoreset inside ``step``)."""

    def __init__(
        self,
        env_class: str,
        env_kwargs: dict[str, Any],
        n_allies: int,
        n_enemies: int,
        movement: str,
        episode_limit: int,
        tmpdir: str,
        map_size: float = 32.0,
    ) -> None:
        os.environ["TMPDIR"] = tmpdir
        tempfile.tempdir = None
        self.env_class, self.env_kwargs = env_class, env_kwargs
        self.n, self.m = n_allies, n_enemies
        self.movement, self.episode_limit = movement, episode_limit
        self.tmpdir, self.map_size = tmpdir, map_size
        self.errors = connection_errors()
        self.env: Any = None
        self.seed: int | None = None
        self.t = 0
        self.v = np.zeros((n_allies, 2), np.float32)
        self.feats: dict[str, np.ndarray] = {}

    # -- game life cycle -----------------------------------------------------------
    def _launch(self) -> None:
        cls = continuous_subclass(import_string(self.env_class))
        kwargs = dict(self.env_kwargs)
        if self.seed is not None:
            kwargs["seed"] = self.seed
        with launch_lock(self.tmpdir):
            self.env = cls(**kwargs)
            self.env.eqmarl_moves = {}
            self.env.reset()

    def _close(self) -> None:
        if self.env is not None:
            with contextlib.suppress(Exception):
                self.env.close()
        self.env = None

    def _relaunch(self) -> None:
        """Restart the game; a game that cannot be restarted ends the worker (the pool restarts it)."""
        self._close()
        try:
            self._launch()
        except Exception:  # any failure: let the pool restart the process
            os._exit(3)

    def _new_episode(self) -> None:
        self.t = 0
        self.v[:] = 0.0
        self.feats = self._features()

    # -- observation -----------------------------------------------------------------
    def _type_index(self, unit: Any, ally: bool) -> int:
        for k, name in enumerate(SMAX_UNIT_TYPES):
            uid = getattr(self.env, f"{name}_id", None) if ally else SC2_UNIT_IDS[name]
            if uid is not None and int(unit.unit_type) == int(uid):
                return k
        return -1

    def _features(self) -> dict[str, np.ndarray]:
        env, n, m = self.env, self.n, self.m
        units = [(env.get_unit_by_id(i), True) for i in range(n)] + [(env.enemies[k], False) for k in range(m)]
        h = np.zeros((n + m, NODE_FEATURES), np.float32)
        x = np.zeros((n + m, 2), np.float32)
        v = np.zeros((n + m, 2), np.float32)
        alive = np.zeros(n + m, np.uint8)
        half = self.map_size / 2
        for i, (u, ally) in enumerate(units):
            if u is None or u.health <= 0:
                continue
            t = self._type_index(u, ally)
            hp_max = float(u.health_max) + float(getattr(u, "shield_max", 0.0))
            hp = float(u.health) + float(getattr(u, "shield", 0.0))
            cd = COOLDOWN_LOOPS[SMAX_UNIT_TYPES[t]] if t >= 0 else 1.0
            h[i, :5] = [
                hp / max(hp_max, 1e-6),
                1.0,
                float(ally),
                float(not ally),
                min(max(u.weapon_cooldown / cd, 0.0), 1.0),
            ]
            if t >= 0:
                h[i, 5 + t] = 1.0
            x[i] = [(u.pos.x - half) / half, (u.pos.y - half) / half]
            if ally:
                v[i] = self.v[i]
            alive[i] = 1
        mask = np.zeros((n, 7 + m), np.uint8)
        for i in range(n):
            avail = np.asarray(env.get_avail_agent_actions(i))
            compass = avail[list(SC2_COMPASS)].astype(bool)
            if self.movement == "continuous":
                compass[:] = bool(alive[i])
            targets = avail[SC2_ATTACK0 : SC2_ATTACK0 + m].astype(bool)
            mask[i, :3] = (1, int(compass.any()), int(targets.any()))
            mask[i, 3:7] = compass
            mask[i, 7:] = targets
        return {"h": h, "x": x, "v": v, "alive": alive, "mask": mask}

    def _record(
        self, final: dict[str, np.ndarray], reward: float, done: bool, term: bool, won: bool, crashed: bool
    ) -> dict[str, np.ndarray]:
        return {
            **self.feats,
            **{f"final_{k}": a for k, a in final.items()},
            "reward": np.array(reward, np.float32),
            "done": np.array(done, np.uint8),
            "terminated": np.array(term, np.uint8),
            "won": np.array(won, np.uint8),
            "crashed": np.array(crashed, np.uint8),
        }

    # -- actions -----------------------------------------------------------------------
    def _translate(self, action: np.ndarray) -> list[int]:
        acts: list[int] = []
        self.env.eqmarl_moves = {}
        self.v[:] = 0.0
        compass = np.asarray(COMPASS, np.float32)
        for i in range(self.n):
            avail = np.asarray(self.env.get_avail_agent_actions(i))
            choice, vec, target = int(action[i, 0]), np.asarray(action[i, 1:3], np.float32), int(action[i, 3])
            if not self.feats["alive"][i]:
                acts.append(SC2_NOOP)
            elif choice == CHOICE_ATTACK:
                acts.append(SC2_ATTACK0 + target)
            elif choice == CHOICE_MOVE:
                ok = avail[list(SC2_COMPASS)].astype(bool)
                score = np.where(ok, compass @ vec, -np.inf)
                d = int(np.argmax(score))
                if self.movement == "continuous":
                    vec = vec / max(float(np.linalg.norm(vec)), 1.0)
                    self.env.eqmarl_moves[i] = (float(vec[0]), float(vec[1]))
                    d = int(np.argmax(ok)) if ok.any() else 0
                    self.v[i] = vec
                else:
                    self.v[i] = compass[d]
                acts.append(SC2_COMPASS[d] if ok.any() else SC2_STOP)
            else:
                acts.append(SC2_STOP)
        return acts

    # -- record protocol ---------------------------------------------------------------
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        if seed is not None:
            self.seed = int(seed)
        if self.env is None:
            self._launch()
        else:
            try:
                self.env.reset()
            except self.errors:
                self._relaunch()
        self._new_episode()
        return self._record(self.feats, 0.0, False, False, False, False)

    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        last = self.feats
        try:
            acts = self._translate(np.asarray(action))
            reward, env_term, info = self.env.step(acts)
            crashed = bool(env_term) and "battle_won" not in info  # smacv2 restarted the game itself
        except self.errors:
            crashed = True
        if crashed:
            self._relaunch()
            self._new_episode()
            return self._record(last, 0.0, True, False, False, True)
        self.t += 1
        final = self._features()
        won = bool(info.get("battle_won", False))
        # smacv2 ends an episode at its own limit too: that end is a truncation
        env_limit = self.t >= int(getattr(self.env, "episode_limit", 0) or 10**9)
        term = bool(env_term) and (won or not env_limit)
        done = bool(env_term) or self.t >= self.episode_limit
        if done:
            try:
                self.env.reset()
            except self.errors:
                self._relaunch()
            self._new_episode()
        else:
            self.feats = final
        return self._record(final, float(reward), done, term, won and term, False)

    def close(self) -> None:
        self._close()


# a game's worker process (forked from a fork server that imported torch), measured like
# mpe2's; StarCraft II's own memory per game is not measured (no StarCraft II here) and is
# not in the estimate
SC2_BYTES_PER_WORKER = 10 * MiB


def sc2_footprint(n_units: int, n_enemies: int) -> EnvFootprint:
    """The memory model of SMACv2 on StarCraft II: the observations of :func:`smacv2_spec`
    and one worker process per game (the game itself is not counted); pure arithmetic."""
    spec = smacv2_spec(n_units, n_enemies, 1, "continuous")
    return EnvFootprint(
        agents=n_units,
        obs_dim=spec.obs_dim,
        state_dim=spec.state_dim,
        nodes=spec.n_nodes,
        node_feats=spec.node_feat_dim,
        action_size=4,
        mask_size=7 + n_enemies,
        neighbours=((n_units, n_units + n_enemies - 1), (n_enemies, n_units)),
        per_env_bytes=SC2_BYTES_PER_WORKER,
        edge_bytes_per_hidden=22,
        keys=("env.n_units", "env.n_enemies"),
        what=f"StarCraft II workers ({n_units} vs {n_enemies} units; the games' own memory not counted)",
    )


class SC2SMACv2:
    """``num_envs`` real SMACv2 games (one StarCraft II per worker process); see the module docstring.

    Args (beyond :func:`eqmarl.envs.smacv2.make_smacv2`'s scenario options):
        env_class: ``"module:Class"`` of the smacv2 env (a stand-in in tests).
        env_kwargs: kwargs of the env class (default: :func:`smacv2_kwargs` of the scenario).
        fully_observable: smacv2's ``fully_observable`` (E2GN2 ran fully observable).
        step_timeout: seconds a step (or reset) may take before the game counts as hung.
        max_failures: consecutive failures of one worker before :class:`SC2WorkerFailed`.
        backoff / max_backoff: seconds waited after the 2nd, 3rd, ... consecutive failure
            (doubling), at most ``max_backoff``.
        sc2_tmpdir: ``TMPDIR`` of the workers (StarCraft II's temp files, the launch lock).
        context: start method of the worker processes.
    """

    def __init__(
        self,
        num_envs: int,
        seed: int = 0,
        device: str = "cpu",
        race: str = "terran",
        n_units: int = 5,
        n_enemies: int = 5,
        start_positions: str = "surrounded_and_reflect",
        p: float = 0.5,
        surround_sides: str = "all",
        movement: str = "continuous",
        episode_limit: int = 200,
        env_class: str = DEFAULT_ENV_CLASS,
        env_kwargs: dict[str, Any] | None = None,
        fully_observable: bool = True,
        step_timeout: float = 120.0,
        max_failures: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        sc2_tmpdir: str | None = None,
        context: str = "forkserver",
    ) -> None:
        check_scenario(race, n_units, n_enemies, start_positions, p, surround_sides, movement)
        if surround_sides != "all":
            raise InvalidOption(
                "env.surround_sides",
                surround_sides,
                "all on env.backend=sc2 (smacv2's generator has no side restriction)",
            )
        self.num_envs, self.device = num_envs, torch.device(device)
        self.n_allies, self.n_enemies = n_units, n_enemies
        self.n_nodes = n_units + n_enemies
        self.movement, self.episode_limit = movement, episode_limit
        self.max_failures, self.backoff, self.max_backoff = max_failures, backoff, max_backoff
        tmpdir = sc2_tmpdir or tempfile.gettempdir()
        Path(tmpdir).mkdir(parents=True, exist_ok=True)
        kwargs = (
            env_kwargs
            if env_kwargs is not None
            else smacv2_kwargs(race, n_units, n_enemies, start_positions, p, fully_observable)
        )
        kwargs = {**kwargs, "fully_observable": fully_observable}
        slot = functools.partial(SC2Slot, env_class, kwargs, n_units, n_enemies, movement, episode_limit, tmpdir)
        self.restarts = 0
        self._fails = [0] * num_envs
        self._restarts_per_env = np.zeros(num_envs, np.int64)
        self._pool = ProcessVectorEnv(
            [slot] * num_envs,
            workers=num_envs,
            context=context,
            preload=["torch", "numpy", "eqmarl.envs.smacv2_sc2"],
            timeout=step_timeout,
            max_restarts=max_failures,
        )
        self._agent_node = torch.arange(n_units, device=self.device)
        self._node_group = torch.cat(
            [torch.zeros(n_units, dtype=torch.long), torch.ones(n_enemies, dtype=torch.long)]
        ).to(self.device)
        self.spec = smacv2_spec(n_units, n_enemies, episode_limit, movement)
        self._episodes = EpisodeTracker(num_envs)
        self._rec: dict[str, np.ndarray] = {}
        self.reset(seed)

    def _observation(self, rec: dict[str, np.ndarray], prefix: str = "") -> Observation:
        dev = self.device
        h = torch.from_numpy(rec[prefix + "h"]).to(dev)
        x = torch.from_numpy(rec[prefix + "x"]).to(dev)
        v = torch.from_numpy(rec[prefix + "v"]).to(dev)
        alive = torch.from_numpy(rec[prefix + "alive"]).to(dev).bool()
        mask = torch.from_numpy(rec[prefix + "mask"]).to(dev).bool()
        return smacv2_observation(h, x, v, alive, mask, self._agent_node, self._node_group)

    def _fail(self, worker: int, why: str) -> None:
        self._fails[worker] += 1
        failures = self._fails[worker]
        if failures >= self.max_failures:
            raise SC2WorkerFailed(
                f"StarCraft II worker {worker} failed {failures} times in a row (last: {why}); stopping. Check the "
                "worker's StarCraft II (eqmarl doctor --require sc2), SC2PATH and free memory"
            )
        if failures > 1:
            time.sleep(min(self.backoff * 2 ** (failures - 2), self.max_backoff))

    def reset(self, seed: int | None = None) -> Observation:
        """Reset every game; slot ``i`` is seeded ``seed * 1000 + i``."""
        seeds = [None if seed is None else seed * 1000 + i for i in range(self.num_envs)]
        try:
            self._rec = self._pool.reset(seeds)
        except WorkerCrash as e:
            raise SC2WorkerFailed(f"StarCraft II workers could not start: {e}") from e
        self._episodes.reset()
        return self.observe()

    def observe(self) -> Observation:
        return self._observation(self._rec)

    @property
    def worker_timeouts(self) -> int:
        """Game workers killed (and restarted) for taking longer than ``step_timeout``, so far."""
        return self._pool.timeouts

    def step(self, actions: Tensor) -> StepResult:
        action_array = actions.detach().to(torch.float32).cpu().numpy()
        if action_array.shape != (self.num_envs, self.n_allies, 4):
            raise ValueError(
                f"actions must be [E, A, 4] = {[self.num_envs, self.n_allies, 4]}; got {list(action_array.shape)}"
            )
        prev = self._rec
        try:
            rec, restarted = self._pool.step(action_array)
        except WorkerCrash as e:
            worker = next((i for i in range(self.num_envs) if f"worker {i} " in str(e)), -1)
            raise SC2WorkerFailed(
                f"StarCraft II worker {worker} could not be restarted ({self.max_failures} tries): {e}"
            ) from e
        if restarted.any():  # hung or dead worker: its slot holds a fresh reset record
            for key in ("h", "x", "v", "alive", "mask"):
                rec[f"final_{key}"][restarted] = prev[key][restarted]
            rec["reward"][restarted] = 0.0
            rec["done"][restarted] = 1
            rec["terminated"][restarted] = 0
            rec["won"][restarted] = 0
            rec["crashed"][restarted] = 1
        crashed = rec["crashed"].astype(bool)
        for worker in range(self.num_envs):
            if crashed[worker]:
                self._fail(worker, "worker died or hung" if restarted[worker] else "game connection lost")
            else:
                self._fails[worker] = 0
        n_crashed = int(crashed.sum())
        self.restarts += n_crashed
        self._restarts_per_env += crashed
        self._rec = {key: value for key, value in rec.items() if not key.startswith("final_")}
        reward = torch.from_numpy(rec["reward"]).float()
        done = torch.from_numpy(rec["done"]).bool()
        terminated = torch.from_numpy(rec["terminated"]).bool()
        crashed_t = torch.from_numpy(crashed)
        won = torch.from_numpy(rec["won"]).float()
        self._episodes.add(reward)
        # a crashed game's episode ends without statistics (neither a win nor a loss)
        episode_return, episode_length = self._episodes.finish(done, report=~crashed_t)
        nan = torch.full_like(won, float("nan"))
        dev = self.device
        return StepResult(
            obs=self._observation(rec),
            reward=reward.to(dev).unsqueeze(-1).expand(-1, self.n_allies),
            terminated=terminated.to(dev),
            truncated=(done & ~terminated).to(dev),
            final_obs=self._observation(rec, "final_"),
            episode_return=episode_return.to(dev),
            episode_length=episode_length.to(dev),
            info={
                "win": torch.where(done & ~crashed_t, won, nan).to(dev),
                "crashed": crashed_t.float().to(dev),
                "restarts": crashed_t.float().to(dev),
            },
        )

    def close(self) -> None:
        self._pool.close()


def make_sc2_backend(**kwargs: Any) -> SC2SMACv2:
    """The ``env.backend=sc2`` factory (registered in :mod:`eqmarl.envs.smacv2`)."""
    kwargs.setdefault("env_class", DEFAULT_ENV_CLASS)
    return SC2SMACv2(**kwargs)
