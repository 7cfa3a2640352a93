"""MPE tasks (``simple_spread``, ``simple_tag``) behind the batched interface.

Two backends:

* ``vmas`` (default): VMAS, batched torch simulation on CPU or GPU.
* ``mpe2``: the PettingZoo/mpe2 reference implementation, one env per worker slot,
  vectorized over worker processes (see :mod:`eqmarl.envs.vector`).

Learners: in ``simple_spread`` every agent; in ``simple_tag`` the adversaries
(predators) learn and the good agents (prey) follow a scripted policy
(``prey_policy``: ``flee`` from the nearest predator, ``random`` or ``still``).

Entity graph (both tasks): nodes are the learning agents first, then the other
entities (prey, landmarks/obstacles); invariant features one-hot the entity type;
equivariant vectors are world-frame positions and velocities (origin at the arena centre).
"""

from __future__ import annotations

import torch
from torch import Tensor

from eqmarl.envs.base import EnvSpec, Observation, StepResult
from eqmarl.envs.graph import EntityGraph

SCENARIOS = ("simple_spread", "simple_tag")
BACKENDS = ("vmas", "mpe2")
PREY_POLICIES = ("flee", "random", "still")

# Discrete MPE actions (VMAS and mpe2 agree): 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y.
MPE_MOVES = [(0, 0.0, 0.0), (1, -1.0, 0.0), (2, 1.0, 0.0), (3, 0.0, -1.0), (4, 0.0, 1.0)]


def scripted_prey_action(
    prey_pos: Tensor, pred_pos: Tensor, policy: str, continuous: bool, generator=None
) -> Tensor:
    """Action of scripted prey.

    Args:
        prey_pos: ``[E, P, 2]`` prey positions.
        pred_pos: ``[E, K, 2]`` predator positions.
        policy: ``flee`` (away from the nearest predator), ``random`` or ``still``.
        continuous: continuous ``[E, P, 2]`` force in [-1, 1], else discrete ``[E, P]``.
    """
    e, p = prey_pos.shape[:2]
    if policy == "still":
        d = torch.zeros(e, p, 2, device=prey_pos.device)
    elif policy == "random":
        d = torch.rand(e, p, 2, device=prey_pos.device, generator=generator) * 2 - 1
    elif policy == "flee":
        diff = prey_pos.unsqueeze(2) - pred_pos.unsqueeze(1)  # [E, P, K, 2]
        dist = diff.norm(dim=-1)
        nearest = dist.argmin(dim=-1)  # [E, P]
        away = torch.gather(diff, 2, nearest[..., None, None].expand(e, p, 1, 2)).squeeze(2)
        # keep away from the walls too: push back toward the centre near the border
        d = away / away.norm(dim=-1, keepdim=True).clamp_min(1e-6) - 0.5 * prey_pos
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    else:
        raise ValueError(f"env.prey_policy={policy!r}; allowed: {', '.join(PREY_POLICIES)}")
    if continuous:
        return d.clamp(-1.0, 1.0)
    moves = torch.tensor([[m[1], m[2]] for m in MPE_MOVES], device=d.device)
    score = d @ moves.T
    score[..., 0] = torch.where(d.norm(dim=-1) < 1e-3, 1.0, -1.0)
    return score.argmax(dim=-1)


class VmasMPE:
    """VMAS backend: ``num_envs`` envs simulated as one batch of torch tensors."""

    def __init__(
        self,
        scenario: str,
        num_envs: int,
        n_agents: int = 3,
        n_landmarks: int | None = None,
        n_prey: int = 1,
        continuous_actions: bool = True,
        episode_limit: int = 25,
        prey_policy: str = "flee",
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        try:
            import vmas
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "env.backend=vmas needs VMAS: pip install 'eqmarl[mpe]' (or use env.backend=mpe2)"
            ) from e
        if scenario not in SCENARIOS:
            raise ValueError(f"env.scenario={scenario!r}; allowed: {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.continuous = continuous_actions
        self.prey_policy = prey_policy
        kwargs: dict = {}
        if scenario == "simple_spread":
            kwargs["n_agents"] = n_agents
            n_land = n_agents
            self.n_learners, self.n_prey = n_agents, 0
        else:
            n_land = 2 if n_landmarks is None else n_landmarks
            kwargs.update(num_adversaries=n_agents, num_good_agents=n_prey, num_landmarks=n_land)
            self.n_learners, self.n_prey = n_agents, n_prey
        self._env = vmas.make_env(
            scenario,
            num_envs=num_envs,
            device=self.device,
            continuous_actions=continuous_actions,
            seed=seed,
            **kwargs,
        )
        self._world = self._env.world
        self.n_landmarks = n_land
        self.episode_limit = episode_limit
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._ret = torch.zeros(num_envs, device=self.device)
        n_nodes = self.n_learners + self.n_prey + n_land
        n_types = 2 if scenario == "simple_spread" else 3
        self._node_type = torch.cat(
            [
                torch.zeros(self.n_learners, dtype=torch.long),
                torch.ones(self.n_prey, dtype=torch.long),
                torch.full((n_land,), n_types - 1, dtype=torch.long),
            ]
        ).to(self.device)
        self._h = torch.nn.functional.one_hot(self._node_type, n_types).float()
        self._agent_node = torch.arange(self.n_learners, device=self.device)
        obs0 = self._env.reset()
        obs_dim = int(obs0[0].shape[-1])
        self.spec = EnvSpec(
            n_agents=self.n_learners,
            obs_dim=obs_dim,
            state_dim=obs_dim * self.n_learners,
            action_type="continuous" if continuous_actions else "discrete",
            action_dim=2 if continuous_actions else 5,
            episode_limit=episode_limit,
            action_low=-1.0,
            action_high=1.0,
            n_nodes=n_nodes,
            node_feat_dim=n_types,
            move_directions=[] if continuous_actions else list(MPE_MOVES),
        )

    # -- helpers -----------------------------------------------------------------
    def _observation(self, raw_obs: list[Tensor]) -> Observation:
        obs = torch.stack(raw_obs[: self.n_learners], dim=1)  # [E, A, obs_dim]
        agents = self._world.agents
        ents = agents[: self.n_learners] + agents[self.n_learners :] + self._world.landmarks
        x = torch.stack([e.state.pos for e in ents], dim=1)
        v = torch.stack([e.state.vel for e in ents], dim=1)
        e = self.num_envs
        n = x.shape[1]
        graph = EntityGraph(
            h=self._h.expand(e, n, -1),
            x=x,
            v=v,
            node_mask=torch.ones(e, n, dtype=torch.bool, device=self.device),
            agent_node=self._agent_node,
        )
        return Observation(obs=obs, state=obs.reshape(e, -1), graph=graph)

    def _all_actions(self, actions: Tensor) -> list[Tensor]:
        acts = list(actions.unbind(dim=1))
        if self.n_prey:
            agents = self._world.agents
            prey_pos = torch.stack([a.state.pos for a in agents[self.n_learners :]], dim=1)
            pred_pos = torch.stack([a.state.pos for a in agents[: self.n_learners]], dim=1)
            prey = scripted_prey_action(prey_pos, pred_pos, self.prey_policy, self.continuous)
            acts += list(prey.unbind(dim=1))
        if not self.continuous:
            acts = [a.long().unsqueeze(-1) for a in acts]
        else:
            acts = [a.clamp(self.spec.action_low, self.spec.action_high) for a in acts]
        return acts

    # -- interface -----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        if seed is not None:
            self._env.seed(seed)
        self._t.zero_()
        self._ret.zero_()
        return self._observation(self._env.reset())

    def step(self, actions: Tensor) -> StepResult:
        raw_obs, rews, dones, _ = self._env.step(self._all_actions(actions))
        reward = torch.stack(rews[: self.n_learners], dim=1)
        obs = self._observation(raw_obs)
        self._t += 1
        self._ret += reward[:, 0]
        terminated = dones.clone() if self.scenario != "simple_spread" else torch.zeros_like(dones)
        truncated = (self._t >= self.episode_limit) & ~terminated
        done = terminated | truncated
        ep_ret = torch.where(done, self._ret, torch.full_like(self._ret, float("nan")))
        ep_len = torch.where(done, self._t, torch.zeros_like(self._t))
        final_obs = obs
        if bool(done.any()):
            if bool(done.all()):
                new_obs = self._observation(self._env.reset())
            else:
                for i in done.nonzero().flatten().tolist():
                    self._env.reset_at(i)
                new_obs = self._observation(self._env.get_from_scenario(
                    get_observations=True, get_rewards=False, get_infos=False, get_dones=False
                )[0])
            obs = new_obs.where(done, final_obs)
            self._t = torch.where(done, torch.zeros_like(self._t), self._t)
            self._ret = torch.where(done, torch.zeros_like(self._ret), self._ret)
        return StepResult(
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=final_obs,
            episode_return=ep_ret,
            episode_length=ep_len,
        )

    def close(self) -> None:
        pass
