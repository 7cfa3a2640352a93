"""``env.backend=vmas``: the MPE tasks of :mod:`eqmarl.envs.mpe` on VMAS, batched torch
simulation on CPU or GPU (``simple_spread_large``: the vectorized scenario of
:mod:`eqmarl.envs.spread_large`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import Observation, StepResult
from eqmarl.envs.mpe import MpeBackend, scripted_prey_action

# VMAS's discrete actions are Discrete(9): index 3 * ix + iy with ix, iy in {0 stay,
# 1 minus, 2 plus}; entry i is the index of MPE move i (see eqmarl.envs.mpe.MPE_MOVES).
_VMAS_INDEX_OF_MOVE = (0, 3, 6, 1, 2)
# the checkpoint keys that are not simulator tensors
_COUNTER_KEYS = ("t", "ret", "rng")


class VmasMPE(MpeBackend):
    """VMAS backend: ``num_envs`` envs simulated as one batch of torch tensors.

    Args: as :class:`MpeBackend`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            import vmas
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("env.backend=vmas needs VMAS: pip install 'eqmarl[mpe]' (or use env.backend=mpe2)") from e
        super().__init__(*args, **kwargs)
        vmas_kwargs: dict[str, Any] = {}
        vmas_scenario: Any = self.scenario
        if self.scenario == "simple_spread_large":  # vectorized for 100s-1000s of agents (see spread_large)
            from eqmarl.envs.spread_large import make_scenario

            vmas_scenario = make_scenario()
        if self.scenario in ("simple_spread", "simple_spread_large"):
            vmas_kwargs["n_agents"] = self.n_learners
        else:
            vmas_kwargs.update(
                num_adversaries=self.n_learners, num_good_agents=self.n_prey, num_landmarks=self.n_landmarks
            )
        from vmas.simulator.environment.environment import Environment

        # VMAS keeps ONE random state for all its envs in a class attribute; each VmasMPE
        # swaps in its own stream around every call (see _own_rng), so envs (train, eval)
        # do not perturb each other and the stream can be checkpointed.
        self._rng_holder = Environment.vmas_random_state
        self._rng_depth = 0
        outside = list(self._rng_holder)
        self._env = vmas.make_env(
            vmas_scenario,
            num_envs=self.num_envs,
            device=self.device,
            continuous_actions=self.continuous,
            seed=self.seed,
            **vmas_kwargs,
        )
        self._rng_state = list(self._rng_holder)
        self._rng_holder[:] = outside
        self._world = self._env.world
        self._vmas_moves = torch.tensor(_VMAS_INDEX_OF_MOVE, device=self.device)
        with self._own_rng():
            first_obs = self._env.reset()
        self.spec = self._make_spec(int(first_obs[0].shape[-1]))

    # -- helpers -----------------------------------------------------------------
    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run VMAS calls on this env's own random stream (re-entrant)."""
        if self._rng_depth:
            self._rng_depth += 1
            try:
                yield
            finally:
                self._rng_depth -= 1
            return
        outside = list(self._rng_holder)
        self._rng_holder[:] = self._rng_state
        self._rng_depth = 1
        try:
            yield
        finally:
            self._rng_depth = 0
            self._rng_state = list(self._rng_holder)
            self._rng_holder[:] = outside

    def _observation(self, raw_obs: list[Tensor]) -> Observation:
        obs = torch.stack(raw_obs[: self.n_learners], dim=1)  # [E, A, obs_dim]
        agents = self._world.agents
        entities = agents[: self.n_learners] + agents[self.n_learners :] + self._world.landmarks
        x = torch.stack([entity.state.pos for entity in entities], dim=1)
        v = torch.stack([entity.state.vel for entity in entities], dim=1)
        node_mask = torch.ones(self.num_envs, x.shape[1], dtype=torch.bool, device=self.device)
        return self._observation_from(obs, x, v, node_mask)

    def _all_actions(self, actions: Tensor) -> list[Tensor]:
        """VMAS's per-agent action list: the learners' ``actions`` and the scripted prey's."""
        per_agent = list(actions.unbind(dim=1))
        if self.n_prey:
            agents = self._world.agents
            prey_pos = torch.stack([agent.state.pos for agent in agents[self.n_learners :]], dim=1)
            pred_pos = torch.stack([agent.state.pos for agent in agents[: self.n_learners]], dim=1)
            prey = scripted_prey_action(prey_pos, pred_pos, self.prey_policy, self.continuous)
            per_agent += list(prey.unbind(dim=1))
        if not self.continuous:
            return [self._vmas_moves[move.long()].unsqueeze(-1) for move in per_agent]
        return [force.clamp(self.spec.action_low, self.spec.action_high) for force in per_agent]

    # -- interface -----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        with self._own_rng():
            if seed is not None:
                self._env.seed(seed)
            raw = self._env.reset()
        self._episodes.reset()
        return self._observation(raw)

    def step(self, actions: Tensor) -> StepResult:
        with self._own_rng():
            raw_obs, rewards, dones, _ = self._env.step(self._all_actions(actions))
        reward = torch.stack(rewards[: self.n_learners], dim=1)
        obs = self._observation(raw_obs)
        self._episodes.add(reward[:, 0])
        terminated = dones.clone() if self.scenario == "simple_tag" else torch.zeros_like(dones)
        truncated = (self._episodes.length >= self.episode_limit) & ~terminated
        done = terminated | truncated
        final_obs = obs
        if bool(done.any()):
            with self._own_rng():
                if bool(done.all()):
                    new_obs = self._observation(self._env.reset())
                else:
                    for i in done.nonzero().flatten().tolist():
                        self._env.reset_at(i)
                    new_obs = self.observe()
            obs = new_obs.where(done, final_obs)
        return self._finish_step(obs, final_obs, reward, terminated, truncated)

    def observe(self) -> Observation:
        """The current observation (without stepping)."""
        with self._own_rng():
            raw = self._env.get_from_scenario(
                get_observations=True, get_rewards=False, get_infos=False, get_dones=False
            )[0]
        return self._observation(raw)

    def _state_objects(self) -> Iterator[tuple[str, Any]]:
        for i, entity in enumerate(self._world.entities):
            yield f"{i}.state", entity.state
            if getattr(entity, "action", None) is not None:
                yield f"{i}.action", entity.action

    def state_dict(self) -> dict[str, Any]:
        """Simulator state (every tensor on each entity's state and action) and counters."""
        state: dict[str, Any] = {**self._episodes.state_dict(), "rng": list(self._rng_state)}
        for prefix, obj in self._state_objects():
            for name, value in vars(obj).items():
                if isinstance(value, Tensor):
                    state[f"{prefix}.{name}"] = value.clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation."""
        self._episodes.load_state_dict(state)
        self._rng_state = list(state["rng"])
        objects = dict(self._state_objects())
        for key, value in state.items():
            if key in _COUNTER_KEYS:
                continue
            prefix, name = key.rsplit(".", 1)
            setattr(objects[prefix], name, value.clone().to(self.device))
        return self.observe()

    def close(self) -> None:
        pass
