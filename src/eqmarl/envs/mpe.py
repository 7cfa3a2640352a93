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

import contextlib
import pickle
from typing import Any

import torch
from torch import Tensor

from eqmarl.core.env import EnvSpec, Observation, StepResult
from eqmarl.core.graph import EntityGraph

SCENARIOS = ("simple_spread", "simple_tag", "simple_spread_large")
BACKENDS = ("vmas", "mpe2")
PREY_POLICIES = ("flee", "random", "still")

# Discrete MPE actions: 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y (mpe2's order; VmasMPE maps
# them onto VMAS's 9-way action index).
MPE_MOVES = [(0, 0.0, 0.0), (1, -1.0, 0.0), (2, 1.0, 0.0), (3, 0.0, -1.0), (4, 0.0, 1.0)]


def scripted_prey_action(prey_pos: Tensor, pred_pos: Tensor, policy: str, continuous: bool, generator=None) -> Tensor:
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


def check_mpe_args(scenario: str, prey_policy: str) -> None:
    """Reject an unknown scenario or prey policy (both backends take the same arguments)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"env.scenario={scenario!r}; allowed: {', '.join(SCENARIOS)}")
    if prey_policy not in PREY_POLICIES:
        raise ValueError(f"env.prey_policy={prey_policy!r}; allowed: {', '.join(PREY_POLICIES)}")


class MpeBackend:
    """What both MPE backends share: their arguments, the agent/prey/landmark counts, the
    entity graph's node types and the :class:`EnvSpec` (one place for both).

    Args:
        scenario: ``simple_spread`` or ``simple_tag``.
        num_envs: envs in the batch.
        n_agents: learning agents (simple_spread: also the number of landmarks;
            simple_tag: the predators).
        n_landmarks: simple_tag's obstacles (None: 2).
        n_prey: simple_tag's scripted prey.
        continuous_actions: 2-D force in ``[-1, 1]^2`` (else 5 discrete moves).
        episode_limit: truncate after this many steps.
        prey_policy: the scripted prey's policy (``flee``, ``random``, ``still``).
        seed: base seed.
        device: torch device of the returned tensors.
    """

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
        check_mpe_args(scenario, prey_policy)
        self.scenario = scenario
        self.num_envs = num_envs
        self.seed = seed
        self.device = torch.device(device)
        self.continuous = continuous_actions
        self.prey_policy = prey_policy
        self.episode_limit = episode_limit
        if scenario in ("simple_spread", "simple_spread_large"):
            self.n_learners, self.n_prey, self.n_landmarks = n_agents, 0, n_agents
        else:
            self.n_learners, self.n_prey = n_agents, n_prey
            self.n_landmarks = 2 if n_landmarks is None else n_landmarks
        self.n_nodes = self.n_learners + self.n_prey + self.n_landmarks
        self.n_types = 3 if scenario == "simple_tag" else 2
        self._node_type = torch.cat(
            [
                torch.zeros(self.n_learners, dtype=torch.long),
                torch.ones(self.n_prey, dtype=torch.long),
                torch.full((self.n_landmarks,), self.n_types - 1, dtype=torch.long),
            ]
        ).to(self.device)
        self._h = torch.nn.functional.one_hot(self._node_type, self.n_types).float()
        self._agent_node = torch.arange(self.n_learners, device=self.device)
        self._t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._ret = torch.zeros(num_envs, device=self.device)

    def _finish_step(
        self,
        obs: Observation,
        final_obs: Observation,
        reward: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        info: dict[str, Any] | None = None,
    ) -> StepResult:
        """The step's result with the returns and lengths of the episodes that ended (NaN / 0
        elsewhere); their counters start again at zero."""
        done = terminated | truncated
        ep_ret = torch.where(done, self._ret, torch.full_like(self._ret, float("nan")))
        ep_len = torch.where(done, self._t, torch.zeros_like(self._t))
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
            info={} if info is None else info,
        )

    def _make_spec(self, obs_dim: int) -> EnvSpec:
        return EnvSpec(
            n_agents=self.n_learners,
            obs_dim=obs_dim,
            state_dim=obs_dim * self.n_learners,
            action_type="continuous" if self.continuous else "discrete",
            action_dim=2 if self.continuous else 5,
            episode_limit=self.episode_limit,
            action_low=-1.0,
            action_high=1.0,
            n_nodes=self.n_nodes,
            node_feat_dim=self.n_types,
            move_directions=[] if self.continuous else list(MPE_MOVES),
        )


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
        self._vmas_moves = torch.tensor([0, 3, 6, 1, 2], device=self.device)
        with self._own_rng():
            obs0 = self._env.reset()
        obs_dim = int(obs0[0].shape[-1])
        self.spec = self._make_spec(obs_dim)

    # -- helpers -----------------------------------------------------------------
    @contextlib.contextmanager
    def _own_rng(self):
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
            # VMAS discrete actions are Discrete(9): index 3*ix + iy with ix, iy in
            # {0 stay, 1 minus, 2 plus}; map our 5 MPE moves onto it.
            lut = self._vmas_moves
            acts = [lut[a.long()].unsqueeze(-1) for a in acts]
        else:
            acts = [a.clamp(self.spec.action_low, self.spec.action_high) for a in acts]
        return acts

    # -- interface -----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Observation:
        with self._own_rng():
            if seed is not None:
                self._env.seed(seed)
            raw = self._env.reset()
        self._t.zero_()
        self._ret.zero_()
        return self._observation(raw)

    def step(self, actions: Tensor) -> StepResult:
        with self._own_rng():
            raw_obs, rews, dones, _ = self._env.step(self._all_actions(actions))
        reward = torch.stack(rews[: self.n_learners], dim=1)
        obs = self._observation(raw_obs)
        self._t += 1
        self._ret += reward[:, 0]
        terminated = dones.clone() if self.scenario == "simple_tag" else torch.zeros_like(dones)
        truncated = (self._t >= self.episode_limit) & ~terminated
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

    def _state_objects(self):
        for i, ent in enumerate(self._world.entities):
            yield f"{i}.state", ent.state
            if getattr(ent, "action", None) is not None:
                yield f"{i}.action", ent.action

    def state_dict(self) -> dict[str, Any]:
        """Simulator state (every tensor on each entity's state and action) and counters."""
        st: dict[str, Any] = {"t": self._t.clone(), "ret": self._ret.clone(), "rng": list(self._rng_state)}
        for prefix, obj in self._state_objects():
            for name, val in vars(obj).items():
                if isinstance(val, Tensor):
                    st[f"{prefix}.{name}"] = val.clone()
        return st

    def load_state_dict(self, st: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation."""
        self._t.copy_(st["t"])
        self._ret.copy_(st["ret"])
        self._rng_state = list(st["rng"])
        objects = dict(self._state_objects())
        for key, val in st.items():
            if key in ("t", "ret", "rng"):
                continue
            prefix, name = key.rsplit(".", 1)
            setattr(objects[prefix], name, val.clone().to(self.device))
        return self.observe()

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------- mpe2
# Reward of the mpe2 backend (chosen to match VMAS, so that returns compare across
# backends): every learner receives the shared team reward
#   simple_spread: N * global + sum_i collisions_i, with global = -sum over landmarks of
#     the distance of the closest agent and collisions_i = -1 per other agent touching i
#     (VMAS's definition).  mpe2 gives agent i  (1 - lr) * global + lr * collisions_i;
#     with local_ratio lr = 0.5 the team reward is exactly 2 * sum_i r_i.
#   simple_tag: an adversary's mpe2 reward is already the shared one (+10 for every
#     prey-adversary contact), as in VMAS with adversaries_share_rew=True.
import numpy as np  # noqa: E402  (the mpe2 backend's arrays)

_MPE2_LOCAL_RATIO = 0.5


def _mpe2_action(a: np.ndarray, continuous: bool) -> np.ndarray | int:
    """Our action -> an mpe2 action.

    Continuous: a 2-D force ``(ax, ay)`` in [-1, 1]^2 becomes mpe2's [0, 1]^5 vector of
    magnitudes ``[no-op, -x, +x, -y, +y]`` = ``[0, relu(-ax), relu(ax), relu(-ay), relu(ay)]``;
    mpe2 applies ``u = (a[2] - a[1], a[4] - a[3]) * accel``, i.e. exactly ``(ax, ay) * accel``.
    Discrete: the index itself; mpe2's order (``_set_action``: 1 -> u_x = -1, 2 -> +1,
    3 -> u_y = -1, 4 -> +1, 0 no-op) agrees with :data:`MPE_MOVES`.
    """
    if not continuous:
        return int(a)
    ax, ay = np.clip(a, -1.0, 1.0)
    return np.array([0.0, max(-ax, 0.0), max(ax, 0.0), max(-ay, 0.0), max(ay, 0.0)], np.float32)


class _Mpe2Slot:
    """One mpe2 env inside a worker process (an env slot of :class:`ProcessVectorEnv`).

    ``reset(seed)`` and ``step(action)`` return records of numpy arrays: ``obs [A, D]``,
    ``x``/``v [N, 2]`` (entity positions/velocities), ``reward [A]``, ``terminated``,
    ``truncated`` and ``final_obs``/``final_x``/``final_v`` (the last observation of an
    episode that ended at this step, else a copy of the current one).  Autoreset inside.
    """

    def __init__(
        self,
        scenario: str,
        n_agents: int,
        n_landmarks: int,
        n_prey: int,
        continuous_actions: bool,
        episode_limit: int,
        prey_policy: str,
    ) -> None:
        if scenario == "simple_spread":
            from mpe2 import simple_spread_v3

            self.env = simple_spread_v3.parallel_env(
                N=n_agents,
                local_ratio=_MPE2_LOCAL_RATIO,
                max_cycles=episode_limit,
                continuous_actions=continuous_actions,
            )
        else:
            from mpe2 import simple_tag_v3

            self.env = simple_tag_v3.parallel_env(
                num_good=n_prey,
                num_adversaries=n_agents,
                num_obstacles=n_landmarks,
                max_cycles=episode_limit,
                continuous_actions=continuous_actions,
            )
        self.scenario = scenario
        self.continuous = continuous_actions
        self.prey_policy = prey_policy
        self.n_learners = n_agents
        names = list(self.env.possible_agents)
        # learners come first in both scenarios (simple_tag: adversaries, then good agents)
        self.learners, self.prey = names[:n_agents], names[n_agents:]
        world = self.env.unwrapped.world
        self._agents = list(world.agents)
        self._entities = self._agents + list(world.landmarks)
        self._gen = torch.Generator()
        self._gen.manual_seed(0)

    def _graph(self) -> tuple[np.ndarray, np.ndarray]:
        x = np.array([e.state.p_pos for e in self._entities], dtype=np.float32)
        v = np.array(
            [e.state.p_vel if e.movable else np.zeros(2) for e in self._entities],
            dtype=np.float32,
        )
        return x, v

    def _record(self, raw_obs: dict, reward: np.ndarray, term: bool, trunc: bool) -> dict:
        obs = np.stack([raw_obs[n] for n in self.learners]).astype(np.float32)
        x, v = self._graph()
        return {
            "obs": obs,
            "x": x,
            "v": v,
            "reward": reward.astype(np.float32),
            "terminated": np.bool_(term),
            "truncated": np.bool_(trunc),
            "final_obs": obs,
            "final_x": x,
            "final_v": v,
        }

    def reset(self, seed: int | None) -> dict:
        """Reset (reseeding the world and the random prey with ``seed`` if given)."""
        if seed is not None:
            self._gen.manual_seed(int(seed))
        raw_obs, _ = self.env.reset(seed=seed)
        return self._record(raw_obs, np.zeros(self.n_learners), False, False)

    def step(self, action: np.ndarray) -> dict:
        """Step with learner actions ``[A, 2]`` float or ``[A]`` int; autoreset."""
        acts = {n: _mpe2_action(a, self.continuous) for n, a in zip(self.learners, action)}
        if self.prey:
            pos = torch.from_numpy(np.array([a.state.p_pos for a in self._agents], np.float32))
            prey = scripted_prey_action(
                pos[None, self.n_learners :],
                pos[None, : self.n_learners],
                self.prey_policy,
                self.continuous,
                generator=self._gen,
            )[0].numpy()
            acts.update({n: _mpe2_action(a, self.continuous) for n, a in zip(self.prey, prey)})
        raw_obs, rews, terms, truncs, _ = self.env.step(acts)
        if self.scenario == "simple_spread":
            team = 2.0 * sum(rews[n] for n in self.learners)  # see _MPE2_LOCAL_RATIO
        else:
            team = rews[self.learners[0]]
        reward = np.full(self.n_learners, team, dtype=np.float32)
        term = any(terms[n] for n in self.learners)
        trunc = any(truncs[n] for n in self.learners) and not term
        rec = self._record(raw_obs, reward, term, trunc)
        if term or trunc:
            new = self.reset(None)
            for k in ("obs", "x", "v"):
                rec[k] = new[k]
        return rec

    # -- exact resume: the PettingZoo env (its world and np_random) and the prey generator
    def _env_chain(self) -> list[Any]:
        """The PettingZoo wrappers down to the raw env (linked by ``aec_env``/``env``)."""
        out = [self.env]
        while True:
            attrs = vars(out[-1])
            nxt = next((attrs[k] for k in _MPE2_LINKS if k in attrs), None)
            if nxt is None:
                return out
            out.append(nxt)

    def get_state(self) -> bytes:
        """Everything this slot's future depends on, pickled (the PettingZoo envs pickle only
        their constructor arguments, so their attributes are taken one by one; the pygame
        render surfaces are left out)."""

        def picklable(v: Any) -> bool:
            try:
                pickle.dumps(v)
            except Exception:
                return False
            return True

        attrs = [{k: v for k, v in vars(o).items() if k not in _MPE2_LINKS and picklable(v)} for o in self._env_chain()]
        return pickle.dumps({"env": attrs, "gen": self._gen.get_state()})

    def set_state(self, blob: bytes) -> None:
        """Restore :meth:`get_state`."""
        st = pickle.loads(blob)  # our own checkpoint's bytes
        for obj, attrs in zip(self._env_chain(), st["env"]):
            vars(obj).update(attrs)
        world = self.env.unwrapped.world
        self._agents = list(world.agents)
        self._entities = self._agents + list(world.landmarks)
        self._gen.set_state(st["gen"])

    def close(self) -> None:
        self.env.close()


_MPE2_LINKS = ("aec_env", "env")


class Mpe2MPE(MpeBackend):
    """mpe2 (PettingZoo) backend: one mpe2 env per slot, stepped in worker processes.

    Same interface, spec semantics and tensors as :class:`VmasMPE`; the flat observation
    is mpe2's own (``[self_vel, self_pos, landmark_rel, other_rel, ...]``; simple_spread
    appends the (always zero) communication of the other agents).  Rewards: see
    ``_MPE2_LOCAL_RATIO`` above (every learner gets the VMAS-style shared team reward).

    Seeding: ``reset(seed=s)`` resets env ``i`` with seed ``s * 100003 + i``; later
    autoresets continue each env's own random stream, so a run is reproducible.

    Extra args:
        workers: worker processes (see :class:`eqmarl.envs.vector.ProcessVectorEnv`).
    """

    SEED_STRIDE = 100003

    def __init__(self, *args: Any, workers: int = 2, **kwargs: Any) -> None:
        import functools

        try:
            import mpe2  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("env.backend=mpe2 needs mpe2: pip install 'eqmarl[mpe]' (or use env.backend=vmas)") from e
        from eqmarl.envs.vector import ProcessVectorEnv

        super().__init__(*args, **kwargs)
        if self.scenario == "simple_spread_large":
            raise ValueError("env.scenario=simple_spread_large needs env.backend=vmas (it is a VMAS scenario)")
        self._node_mask = torch.ones(self.num_envs, self.n_nodes, dtype=torch.bool, device=self.device)
        factory = functools.partial(
            _Mpe2Slot,
            scenario=self.scenario,
            n_agents=self.n_learners,
            n_landmarks=self.n_landmarks,
            n_prey=self.n_prey,
            continuous_actions=self.continuous,
            episode_limit=self.episode_limit,
            prey_policy=self.prey_policy,
        )
        self._pool = ProcessVectorEnv(
            [factory] * self.num_envs,
            workers=workers,
            preload=["torch", "mpe2.simple_spread_v3", "mpe2.simple_tag_v3", __name__],
        )
        self._last = self._observation(self._pool.reset(self._seeds(self.seed)))
        obs_dim = int(self._last.obs.shape[-1])
        self.spec = self._make_spec(obs_dim)

    @property
    def restarts(self) -> int:
        """Worker processes restarted after a crash or a hang so far."""
        return self._pool.restarts

    @property
    def worker_restarts(self) -> int:
        """The same count, under the name the trainer logs worker processes by."""
        return self._pool.restarts

    @property
    def worker_timeouts(self) -> int:
        """Worker processes killed (and restarted) for not answering in time, so far."""
        return self._pool.timeouts

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current worker processes."""
        return self._pool.worker_pids

    def _seeds(self, seed: int) -> list[int]:
        return [int(seed) * self.SEED_STRIDE + i for i in range(self.num_envs)]

    def _tensor(self, a) -> Tensor:
        return torch.from_numpy(a).to(self.device)

    def _observation(self, rec: dict, prefix: str = "") -> Observation:
        obs = self._tensor(rec[prefix + "obs"])
        e, n = obs.shape[0], self._h.shape[0]
        graph = EntityGraph(
            h=self._h.expand(e, n, -1),
            x=self._tensor(rec[prefix + "x"]),
            v=self._tensor(rec[prefix + "v"]),
            node_mask=self._node_mask,
            agent_node=self._agent_node,
        )
        return Observation(obs=obs, state=obs.reshape(e, -1), graph=graph)

    # -- interface -----------------------------------------------------------------
    def observe(self) -> Observation:
        """The current observation (without stepping)."""
        return self._last

    def reset(self, seed: int | None = None) -> Observation:
        seeds = None if seed is None else self._seeds(seed)
        self._last = self._observation(self._pool.reset(seeds))
        self._t.zero_()
        self._ret.zero_()
        return self._last

    def step(self, actions: Tensor) -> StepResult:
        a = actions.detach().cpu()
        a = a.float().clamp(self.spec.action_low, self.spec.action_high) if self.continuous else a.long()
        rec, restarted_np = self._pool.step(a.numpy())
        obs = self._observation(rec)
        final_obs = self._observation(rec, "final_")
        reward = self._tensor(rec["reward"])
        terminated = self._tensor(rec["terminated"])
        truncated = self._tensor(rec["truncated"])
        restarted = self._tensor(restarted_np)
        if bool(restarted.any()):
            # The worker died before stepping these envs: their episode is cut where it
            # was (truncated, final_obs = the last observation we saw, no reward) and
            # ``obs`` is the first observation of a fresh episode.
            final_obs = self._last.where(restarted, final_obs)
            reward = reward.masked_fill(restarted[:, None], 0.0)
            truncated = truncated | restarted
            terminated = terminated & ~restarted
        self._t += (~restarted).long()
        self._ret += reward[:, 0]
        self._last = obs
        return self._finish_step(obs, final_obs, reward, terminated, truncated, info={"worker_restart": restarted})

    def state_dict(self) -> dict[str, Any] | None:
        """Every slot's PettingZoo env (world, np_random), prey generator, seeds and counters
        (None when a worker crashed or hung meanwhile: the next step restarts it)."""
        last, graph = self._last, self._last.graph
        assert graph is not None  # the mpe2 observation always has its entity graph
        from eqmarl.envs.vector import WorkerCrash

        try:
            slots = self._pool.call("get_state")
        except WorkerCrash as e:
            print(
                f"[eqmarl] warning: {e}; this checkpoint holds no env state (a resume from it starts new "
                "episodes); the worker is restarted at the next step",
                flush=True,
            )
            return None
        return {
            "t": self._t.clone(),
            "ret": self._ret.clone(),
            "seeds": self._pool.seeds,
            "slots": slots,
            "obs": last.obs.cpu().clone(),
            "x": graph.x.cpu().clone(),
            "v": graph.v.cpu().clone(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation."""
        if len(st["slots"]) != self.num_envs:
            raise ValueError(f"env state of {len(st['slots'])} envs for {self.num_envs} envs")
        self._pool.call("set_state", [(b,) for b in st["slots"]])
        self._pool.seeds = st["seeds"]
        self._t.copy_(st["t"])
        self._ret.copy_(st["ret"])
        self._last = self._observation({k: st[k].numpy() for k in ("obs", "x", "v")})
        return self._last

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
