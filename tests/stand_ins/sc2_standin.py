"""A STAND-IN for smacv2's ``StarCraftCapabilityEnvWrapper`` (no StarCraft II, no pysc2).

This is not StarCraft II and not smacv2: it is a tiny 2-D battle written for eqmarl's
tests that presents smacv2's documented interface, so that the ``env.backend=sc2``
adapter (:mod:`eqmarl.envs.smacv2_sc2`) can be tested on machines without the game:

* ``StandInSC2(capability_config=..., map_name=..., fully_observable=..., seed=...)``;
* ``reset() -> (obs_list, state)``; ``step(actions) -> (reward, terminated, info)`` with
  ``info['battle_won']``; ``get_obs()``, ``get_state()``, ``get_avail_actions()``,
  ``get_avail_agent_actions(i)``, ``get_unit_by_id(i)``, ``agents`` / ``enemies`` dicts of
  units with ``pos.x``, ``pos.y``, ``health``, ``health_max``, ``shield``, ``shield_max``,
  ``unit_type``, ``weapon_cooldown``, ``tag``; ``close()``;
* smacv2's action layout (0 no-op, dead units only; 1 stop; 2 N, 3 S, 4 E, 5 W, moving
  ``_move_amount`` = 2; ``6 + k`` attack enemy ``k`` within range 6) and its action
  translation hook ``get_agent_action(a_id, action)`` that returns a command, here a tuple
  (``('move', tag, x, y)``, ``('stop', tag)``, ``('attack', tag, enemy_tag)``), with
  ``eqmarl_move_command(unit, x, y)`` building the stand-in's move command;
* ally unit types through ``marine_id``/``marauder_id``/... attributes (custom ids, as on
  SMACv2 maps); enemies use the standard SC2 ids.

Fault knobs (per step, drawn from an RNG seeded by the seed, the process id and a launch
counter, so a restarted game draws anew): ``crash_prob`` (``os._exit``: the process dies, as when
StarCraft II takes its worker down), ``hang_prob`` (sleeps ``hang_seconds``),
``drop_prob`` (raises ``ConnectionError``, a dropped websocket), ``swallow_prob``
(returns ``(0, True, {})``, smacv2's own restart after a protocol error), ``fail_seeds``
(seeds whose every step crashes).  Every injected fault appends a line to
``fault_log`` (if given) before it happens.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

ALLY_IDS = {"marine": 1970, "marauder": 1971, "stalker": 1972, "zealot": 1973, "zergling": 1974, "hydralisk": 1975}
ENEMY_IDS = {"marine": 48, "marauder": 51, "stalker": 74, "zealot": 73, "zergling": 105, "hydralisk": 107}
RACES = {
    "10gen_terran": ("marine", "marauder"),
    "10gen_protoss": ("stalker", "zealot"),
    "10gen_zerg": ("zergling", "hydralisk"),
}
MAP = 32.0
RANGE = 6.0
# smacv2 moves: 2 N, 3 S, 4 E, 5 W
# games built in this process (a relaunched game draws new faults)
_LAUNCHES = [0]
MOVES = {2: (0.0, 1.0), 3: (0.0, -1.0), 4: (1.0, 0.0), 5: (-1.0, 0.0)}


def _unit(tag: int, unit_type: int, x: float, y: float, health: float, shield: float) -> Any:
    return SimpleNamespace(
        tag=tag,
        unit_type=unit_type,
        pos=SimpleNamespace(x=x, y=y),
        health=health,
        health_max=health,
        shield=shield,
        shield_max=shield,
        weapon_cooldown=0.0,
    )


class StandInSC2:
    """The stand-in (see the module docstring)."""

    def __init__(
        self,
        capability_config: dict[str, Any],
        map_name: str = "10gen_terran",
        fully_observable: bool = False,
        seed: int | None = None,
        crash_prob: float = 0.0,
        hang_prob: float = 0.0,
        hang_seconds: float = 3600.0,
        drop_prob: float = 0.0,
        swallow_prob: float = 0.0,
        fail_seeds: tuple[int, ...] = (),
        fault_log: str | None = None,
        enemy_damage: float = 3.0,
        **_: Any,
    ) -> None:
        self.n_agents = int(capability_config["n_units"])
        self.n_enemies = int(capability_config["n_enemies"])
        self.map_name, self.fully_observable = map_name, fully_observable
        self.seed = seed
        self.crash_prob, self.hang_prob, self.hang_seconds = crash_prob, hang_prob, hang_seconds
        self.drop_prob, self.swallow_prob = drop_prob, swallow_prob
        self.fail_seeds, self.fault_log = tuple(fail_seeds), fault_log
        self.enemy_damage = enemy_damage
        self._move_amount = 2
        self.episode_limit = 200
        for name, uid in ALLY_IDS.items():
            setattr(self, f"{name}_id", uid)
        self._rng = np.random.default_rng(None if seed is None else [seed])
        _LAUNCHES[0] += 1
        self._fault_rng = np.random.default_rng([0 if seed is None else seed, os.getpid(), _LAUNCHES[0]])
        self.agents: dict[int, Any] = {}
        self.enemies: dict[int, Any] = {}
        self.last_commands: list[Any] = []
        self.closed = False

    # -- smacv2's interface ----------------------------------------------------------
    def reset(self) -> tuple[list[np.ndarray], np.ndarray]:
        types = RACES[self.map_name]
        rng = self._rng
        self.agents, self.enemies = {}, {}
        for i in range(self.n_agents):
            name = types[int(rng.integers(2))]
            x, y = rng.uniform(4, 14), rng.uniform(4, 28)
            self.agents[i] = _unit(i, ALLY_IDS[name], x, y, 45.0, 20.0 if name in ("stalker", "zealot") else 0.0)
        for k in range(self.n_enemies):
            name = types[int(rng.integers(2))]
            x, y = rng.uniform(12, 28), rng.uniform(4, 28)
            self.enemies[k] = _unit(100 + k, ENEMY_IDS[name], x, y, 30.0, 0.0)
        self._steps = 0
        return self.get_obs(), self.get_state()

    def get_unit_by_id(self, a_id: int) -> Any:
        return self.agents[a_id]

    def _dist(self, a: Any, b: Any) -> float:
        return float(np.hypot(a.pos.x - b.pos.x, a.pos.y - b.pos.y))

    def get_avail_agent_actions(self, a_id: int) -> list[int]:
        u = self.agents[a_id]
        avail = [0] * (6 + self.n_enemies)
        if u.health <= 0:
            avail[0] = 1
            return avail
        avail[1] = 1
        for a, (dx, dy) in MOVES.items():
            tx, ty = u.pos.x + 2 * dx, u.pos.y + 2 * dy
            avail[a] = int(0 < tx < MAP and 0 < ty < MAP)
        for k, e in self.enemies.items():
            avail[6 + k] = int(e.health > 0 and self._dist(u, e) <= RANGE)
        return avail

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def get_obs(self) -> list[np.ndarray]:
        units = list(self.agents.values()) + list(self.enemies.values())
        flat = np.array([[u.pos.x, u.pos.y, u.health] for u in units], np.float32).ravel()
        return [flat.copy() for _ in range(self.n_agents)]

    def get_state(self) -> np.ndarray:
        return self.get_obs()[0]

    def eqmarl_move_command(self, unit: Any, x: float, y: float) -> Any:
        return ("move", unit.tag, float(x), float(y))

    def get_agent_action(self, a_id: int, action: int) -> Any:
        u = self.get_unit_by_id(a_id)
        if self.get_avail_agent_actions(a_id)[action] == 0:
            raise AssertionError(f"Agent {a_id} cannot perform action {action}")
        if action == 0:
            return None
        if action == 1:
            return ("stop", u.tag)
        if action in MOVES:
            dx, dy = MOVES[action]
            return self.eqmarl_move_command(u, u.pos.x + self._move_amount * dx, u.pos.y + self._move_amount * dy)
        return ("attack", u.tag, self.enemies[action - 6].tag)

    def _fault(self, kind: str) -> None:
        if self.fault_log:
            with open(self.fault_log, "a") as f:
                f.write(f"{kind} seed={self.seed} pid={os.getpid()} step={self._steps}\n")

    def step(self, actions: list[int]) -> tuple[float, bool, dict[str, Any]]:
        r = self._fault_rng.random(4)
        if self.seed in self.fail_seeds or r[0] < self.crash_prob:
            self._fault("crash")
            os._exit(1)
        if r[1] < self.hang_prob:
            self._fault("hang")
            time.sleep(self.hang_seconds)
        if r[2] < self.drop_prob:
            self._fault("drop")
            raise ConnectionError("Connection already closed. SC2 probably crashed (stand-in)")
        if r[3] < self.swallow_prob:
            self._fault("swallow")
            return 0.0, True, {}
        self._steps += 1
        self.last_commands = [self.get_agent_action(i, int(a)) for i, a in enumerate(actions)]
        by_tag = {e.tag: e for e in self.enemies.values()}
        dealt = 0.0
        for cmd, u in zip(self.last_commands, self.agents.values(), strict=True):
            if cmd is None:
                continue
            if cmd[0] == "move":
                dx, dy = cmd[2] - u.pos.x, cmd[3] - u.pos.y
                scale = min(1.0, 2.0 / max(float(np.hypot(dx, dy)), 1e-9))
                u.pos.x = float(np.clip(u.pos.x + scale * dx, 0.1, MAP - 0.1))
                u.pos.y = float(np.clip(u.pos.y + scale * dy, 0.1, MAP - 0.1))
            elif cmd[0] == "attack":
                e = by_tag[cmd[2]]
                hit = min(e.health, 10.0)
                e.health -= hit
                dealt += hit
                u.weapon_cooldown = 10.0
        for e in self.enemies.values():  # each live enemy hits the nearest live ally in range
            live = [a for a in self.agents.values() if a.health > 0]
            if e.health <= 0 or not live:
                continue
            a = min(live, key=lambda a: self._dist(a, e))
            if self._dist(a, e) <= RANGE:
                if a.shield > 0:
                    a.shield = max(0.0, a.shield - self.enemy_damage)
                else:
                    a.health = max(0.0, a.health - self.enemy_damage)
        won = all(e.health <= 0 for e in self.enemies.values())
        lost = all(a.health <= 0 for a in self.agents.values())
        terminated = won or lost or self._steps >= self.episode_limit
        return dealt / 10.0, terminated, {"battle_won": won, "dead_allies": 0, "dead_enemies": 0}

    def close(self) -> None:
        self.closed = True
