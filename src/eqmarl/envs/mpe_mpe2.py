"""``env.backend=mpe2``: the MPE tasks of :mod:`eqmarl.envs.mpe` on the PettingZoo/mpe2
reference implementation, one env per worker slot, stepped in worker processes (see
:mod:`eqmarl.envs.vector`).

Reward (chosen to match VMAS, so that returns compare across backends): every learner
receives the shared team reward

* simple_spread: ``N * global + sum_i collisions_i``, with ``global`` = minus the sum over
  landmarks of the distance of the closest agent and ``collisions_i`` = -1 per other
  agent touching i (VMAS's definition).  mpe2 gives agent i
  ``(1 - lr) * global + lr * collisions_i``; with local_ratio ``lr = 0.5`` the team reward
  is exactly ``2 * sum_i r_i``.
* simple_tag: an adversary's mpe2 reward is already the shared one (+10 for every
  prey-adversary contact), as in VMAS with ``adversaries_share_rew=True``.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.core.env import Observation, StepResult
from eqmarl.core.errors import InvalidOption
from eqmarl.core.log import get_logger
from eqmarl.envs.mpe import MpeBackend, scripted_prey_action

log = get_logger("envs")

_MPE2_LOCAL_RATIO = 0.5  # see the module docstring


def _mpe2_action(action: np.ndarray, continuous: bool) -> np.ndarray | int:
    """Our action -> an mpe2 action.

    Continuous: a 2-D force ``(ax, ay)`` in [-1, 1]^2 becomes mpe2's [0, 1]^5 vector of
    magnitudes ``[no-op, -x, +x, -y, +y]`` = ``[0, relu(-ax), relu(ax), relu(-ay), relu(ay)]``;
    mpe2 applies ``u = (a[2] - a[1], a[4] - a[3]) * accel``, i.e. exactly ``(ax, ay) * accel``.
    Discrete: the index itself; mpe2's order (``_set_action``: 1 -> u_x = -1, 2 -> +1,
    3 -> u_y = -1, 4 -> +1, 0 no-op) agrees with :data:`eqmarl.envs.mpe.MPE_MOVES`.
    """
    if not continuous:
        return int(action)
    ax, ay = np.clip(action, -1.0, 1.0)
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
        x = np.array([entity.state.p_pos for entity in self._entities], dtype=np.float32)
        v = np.array(
            [entity.state.p_vel if entity.movable else np.zeros(2) for entity in self._entities],
            dtype=np.float32,
        )
        return x, v

    def _record(self, raw_obs: dict, reward: np.ndarray, terminated: bool, truncated: bool) -> dict:
        obs = np.stack([raw_obs[name] for name in self.learners]).astype(np.float32)
        x, v = self._graph()
        return {
            "obs": obs,
            "x": x,
            "v": v,
            "reward": reward.astype(np.float32),
            "terminated": np.bool_(terminated),
            "truncated": np.bool_(truncated),
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
        by_name = {name: _mpe2_action(act, self.continuous) for name, act in zip(self.learners, action)}
        if self.prey:
            pos = torch.from_numpy(np.array([agent.state.p_pos for agent in self._agents], np.float32))
            prey_actions = scripted_prey_action(
                pos[None, self.n_learners :],
                pos[None, : self.n_learners],
                self.prey_policy,
                self.continuous,
                generator=self._gen,
            )[0].numpy()
            by_name.update({name: _mpe2_action(act, self.continuous) for name, act in zip(self.prey, prey_actions)})
        raw_obs, rewards, terms, truncs, _ = self.env.step(by_name)
        if self.scenario == "simple_spread":
            team = 2.0 * sum(rewards[name] for name in self.learners)  # see _MPE2_LOCAL_RATIO
        else:
            team = rewards[self.learners[0]]
        reward = np.full(self.n_learners, team, dtype=np.float32)
        terminated = any(terms[name] for name in self.learners)
        truncated = any(truncs[name] for name in self.learners) and not terminated
        record = self._record(raw_obs, reward, terminated, truncated)
        if terminated or truncated:
            first = self.reset(None)
            for key in ("obs", "x", "v"):
                record[key] = first[key]
        return record

    # -- exact resume: the PettingZoo env (its world and np_random) and the prey generator
    def _env_chain(self) -> list[Any]:
        """The PettingZoo wrappers down to the raw env (linked by ``aec_env``/``env``)."""
        out = [self.env]
        while True:
            attrs = vars(out[-1])
            inner = next((attrs[key] for key in _MPE2_LINKS if key in attrs), None)
            if inner is None:
                return out
            out.append(inner)

    def get_state(self) -> bytes:
        """Everything this slot's future depends on, pickled (the PettingZoo envs pickle only
        their constructor arguments, so their attributes are taken one by one; the pygame
        render surfaces are left out)."""

        def picklable(value: Any) -> bool:
            try:
                pickle.dumps(value)
            except Exception:
                return False
            return True

        attrs = [
            {key: value for key, value in vars(obj).items() if key not in _MPE2_LINKS and picklable(value)}
            for obj in self._env_chain()
        ]
        return pickle.dumps({"env": attrs, "gen": self._gen.get_state()})

    def set_state(self, blob: bytes) -> None:
        """Restore :meth:`get_state`."""
        state = pickle.loads(blob)  # our own checkpoint's bytes
        for obj, attrs in zip(self._env_chain(), state["env"]):
            vars(obj).update(attrs)
        world = self.env.unwrapped.world
        self._agents = list(world.agents)
        self._entities = self._agents + list(world.landmarks)
        self._gen.set_state(state["gen"])

    def close(self) -> None:
        self.env.close()


_MPE2_LINKS = ("aec_env", "env")


class Mpe2MPE(MpeBackend):
    """mpe2 (PettingZoo) backend: one mpe2 env per slot, stepped in worker processes.

    Same interface, spec semantics and tensors as :class:`eqmarl.envs.mpe_vmas.VmasMPE`;
    the flat observation is mpe2's own (``[self_vel, self_pos, landmark_rel, other_rel,
    ...]``; simple_spread appends the (always zero) communication of the other agents).
    Rewards: see the module docstring (every learner gets the VMAS-style shared team reward).

    Seeding: ``reset(seed=s)`` resets env ``i`` with seed ``s * 100003 + i``; later
    autoresets continue each env's own random stream, so a run is reproducible.

    Hung workers: every exchange with the worker processes (reset, step, the state export
    of a checkpoint, its restore on resume, close) waits at most ``worker_timeout_s``
    seconds; a worker that has not answered by then is killed, restarted (its envs' episodes
    are cut where they were, truncated, and new ones start) and counted in
    :attr:`worker_timeouts` (see :mod:`eqmarl.envs.vector`).

    Extra args:
        workers: worker processes (see :class:`eqmarl.envs.vector.ProcessVectorEnv`).
        worker_timeout_s: seconds a worker may take to answer before it counts as hung.
    """

    SEED_STRIDE = 100003

    def __init__(self, *args: Any, workers: int = 2, worker_timeout_s: float = 60.0, **kwargs: Any) -> None:
        try:
            import mpe2  # noqa: F401
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("env.backend=mpe2 needs mpe2: pip install 'eqmarl[mpe]' (or use env.backend=vmas)") from e
        from eqmarl.envs.vector import ProcessVectorEnv

        super().__init__(*args, **kwargs)
        if self.scenario == "simple_spread_large":
            raise InvalidOption("env.backend", "mpe2", "vmas (env.scenario=simple_spread_large is a VMAS scenario)")
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
            timeout=worker_timeout_s,
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

    def _tensor(self, array: np.ndarray) -> Tensor:
        return torch.from_numpy(array).to(self.device)

    def _observation(self, record: dict, prefix: str = "") -> Observation:
        """The observation in a slot record (``prefix='final_'``: the ended episodes' last one)."""
        return self._observation_from(
            self._tensor(record[prefix + "obs"]),
            self._tensor(record[prefix + "x"]),
            self._tensor(record[prefix + "v"]),
            self._node_mask,
        )

    # -- interface -----------------------------------------------------------------
    def observe(self) -> Observation:
        """The current observation (without stepping)."""
        return self._last

    def reset(self, seed: int | None = None) -> Observation:
        seeds = None if seed is None else self._seeds(seed)
        self._last = self._observation(self._pool.reset(seeds))
        self._episodes.reset()
        return self._last

    def step(self, actions: Tensor) -> StepResult:
        learner_actions = actions.detach().cpu()
        if self.continuous:
            learner_actions = learner_actions.float().clamp(self.spec.action_low, self.spec.action_high)
        else:
            learner_actions = learner_actions.long()
        record, restarted_np = self._pool.step(learner_actions.numpy())
        obs = self._observation(record)
        final_obs = self._observation(record, "final_")
        reward = self._tensor(record["reward"])
        terminated = self._tensor(record["terminated"])
        truncated = self._tensor(record["truncated"])
        restarted = self._tensor(restarted_np)
        if bool(restarted.any()):
            # The worker died before stepping these envs: their episode is cut where it
            # was (truncated, final_obs = the last observation we saw, no reward) and
            # ``obs`` is the first observation of a fresh episode.
            final_obs = self._last.where(restarted, final_obs)
            reward = reward.masked_fill(restarted[:, None], 0.0)
            truncated = truncated | restarted
            terminated = terminated & ~restarted
        self._episodes.add(reward[:, 0], steps=(~restarted).long())
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
            log.warning(
                f"{e}; this checkpoint holds no env state (a resume from it starts new "
                "episodes); the worker is restarted at the next step"
            )
            return None
        return {
            **self._episodes.state_dict(),
            "seeds": self._pool.seeds,
            "slots": slots,
            "obs": last.obs.cpu().clone(),
            "x": graph.x.cpu().clone(),
            "v": graph.v.cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> Observation:
        """Restore :meth:`state_dict`; returns the current observation.

        A worker that crashes or hangs meanwhile is killed and restarted at once: its envs
        start new episodes from their saved seeds (said in a warning), the others resume
        exactly.
        """
        from eqmarl.envs.vector import WorkerCrash

        if len(state["slots"]) != self.num_envs:
            raise ValueError(f"env state of {len(state['slots'])} envs for {self.num_envs} envs")
        self._pool.seeds = state["seeds"]
        restarted, fresh = np.zeros(self.num_envs, dtype=bool), None
        try:
            self._pool.call("set_state", [(blob,) for blob in state["slots"]])
        except WorkerCrash as e:
            restarted, fresh = self._pool.revive()
            log.warning(
                f"{e}; restarted it: its {int(restarted.sum())} envs start new episodes (the others resume exactly)"
            )
        self._episodes.load_state_dict(state)
        saved = {key: state[key].numpy() for key in ("obs", "x", "v")}
        if fresh is not None:
            for key in saved:
                saved[key][restarted] = fresh[key]
            self._episodes.finish(self._tensor(restarted), report=torch.zeros_like(self._tensor(restarted)))
        self._last = self._observation(saved)
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
