"""The PPO training loop: rollout -> GAE -> update -> (eval) -> log -> (checkpoint).

Rollouts are tensor ops over ``[T, E, A, ...]`` on the device: no Python loop over
envs or agents.  ``state_dict()``/``load_state_dict()`` cover everything a run needs to
continue exactly: parameters, optimizer, value normalizer, counters, RNG states, the
env's simulator state (where the backend can export it) and the W&B run id.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.algos.gae import gae
from eqmarl.algos.ppo import ValueNorm, normalize_advantages, ppo_loss
from eqmarl.build import env_symmetry, make_agent, make_env
from eqmarl.config import Config
from eqmarl.core import Observation
from eqmarl.core.episodes import run_episodes
from eqmarl.models import Policy
from eqmarl.models.policy import ActOutput, over_env_chunks
from eqmarl.train.checkpoint import CheckpointWriteError, save_checkpoint
from eqmarl.train.learners import Learner, make_learner
from eqmarl.train.malloc import tune_malloc
from eqmarl.train.nonfinite import NonFiniteError, NonFiniteGuard, all_finite, state_is_finite, stop_message
from eqmarl.train.resume import inexact_resume_note
from eqmarl.wrappers.eqc import EQC
from eqmarl.wrappers.other_play import OtherPlay

LOSS_KEYS = ("loss", "pg_loss", "v_loss", "entropy", "approx_kl", "clipfrac")
# state_dict entries that differ between ranks (own envs, own random streams)
RANK_STATE_KEYS = ("rng", "env", "obs", "other_play")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    return torch.device(name)


def _take(x: Tensor, idx: Tensor) -> Tensor:
    return x[idx]


def _float32(x: Tensor) -> Tensor:
    """Float tensors as float32 (16-bit weights give 16-bit outputs); others unchanged."""
    return x.float() if x.is_floating_point() else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds the global stream that libraries draw from)
    torch.manual_seed(seed)


@dataclasses.dataclass
class Rollout:
    """One iteration's data, ``[T, E, ...]`` (``value``/``returns`` on the critic's scale)."""

    obs: Observation
    action: Tensor
    logprob: Tensor
    value: Tensor
    advantages: Tensor
    returns: Tensor
    episode_returns: Tensor
    explained_var: float
    # win flags (1/0) of the episodes that ended, where the env reports info['win'] (SMACv2)
    episode_wins: Tensor | None = None
    # [T, E, A] 0 for transitions of a crashed game (info['crashed'], the StarCraft II
    # backend), which the update must not learn from; None when no game crashed
    valid: Tensor | None = None
    # games or env worker processes restarted after a crash or a hang during this rollout
    env_restarts: float = 0.0
    # of those, workers killed for not answering in time
    env_timeouts: float = 0.0


class Trainer:
    """PPO over a batch of multi-agent envs (IPPO or MAPPO, per ``cfg.algo.name``).

    Args:
        cfg: the validated config.
        run_dir: where metrics, checkpoints and plots go.
        rank / world_size: this process's place in a distributed job (1 process: 0 / 1).
        strategy: learner factory override (the signature of :func:`~eqmarl.train.learners.make_learner`).
    """

    def __init__(self, cfg: Config, run_dir: Path, rank: int = 0, world_size: int = 1, strategy=None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.device = resolve_device(cfg.train.device)
        tune_malloc()  # reuse freed activation memory instead of re-faulting it (see malloc.py)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        a = cfg.algo
        self.env_seed = cfg.seed + 1_000_003 * rank
        with torch.random.fork_rng(devices=[]):
            self.eval_env = make_env(cfg.env, cfg.train.eval_episodes, cfg.seed + 777, str(self.device))
        seed_everything(self.env_seed)
        self.env = make_env(cfg.env, cfg.train.num_envs, self.env_seed, str(self.device))
        self.spec = self.env.spec
        seed_everything(cfg.seed)  # same initial parameters on every rank
        # the policy (orbit init, EQC: eqmarl.build.make_agent); checkpoints hold the plain policy
        agent = make_agent(cfg.model, self.env, centralized_critic=a.name == "mappo", device=self.device)
        self._keep_graph = agent.policy.uses_graph
        # envs that restart crashed games or workers report it; their restarts are logged
        self._counts_restarts = hasattr(self.env, "restarts")
        self._counts_timeouts = hasattr(self.env, "worker_timeouts")  # ... and hung workers
        self._knn = cfg.model.knn if self._keep_graph else 0
        self.policy: Policy | EQC = agent.module
        self.other_play: OtherPlay | None = None
        if a.other_play is not None:
            self.other_play = OtherPlay(
                env_symmetry(self.env, a.other_play).to(self.device), cfg.train.num_envs, self.spec.n_agents
            )
        self.value_norm = ValueNorm(a.value_norm).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=a.lr, eps=1e-5, foreach=True)
        self.strategy: Learner = (strategy or make_learner)(
            cfg.learner,
            self.policy,
            self.optimizer,
            max_grad_norm=a.max_grad_norm,
            keep_snapshots=cfg.train.rollback_nonfinite,
        )
        seed_everything(self.env_seed + 1)
        self.batch_frames = a.rollout_steps * cfg.train.num_envs
        self.frames_per_iteration = self.batch_frames * world_size
        self.num_iterations = max(1, math.ceil(cfg.train.total_env_steps / self.frames_per_iteration))
        self.iteration = 0
        self.env_steps = 0
        self.wall_s = 0.0
        self.wandb_run_id: str | None = None
        self.obs = self.env.reset(seed=self.env_seed)
        self._worker_counts = self._worker_counts_now()
        self._stop_requested = False
        # the signal (SIGINT/SIGTERM) that stopped the run, None while none arrived
        self.stop_signal: int | None = None
        # signals that stop the run at the end of the iteration (a cluster job removes
        # its preemption signal); a repeat of one aborts unless ``abort_on_repeat`` is off
        self.stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
        self.abort_on_repeat = True
        self.last_eval: dict[str, float] = {}
        self.nonfinite = NonFiniteGuard(cfg.train.max_nonfinite_updates)

    # ------------------------------------------------------------------ rollout
    def _worker_counts_now(self) -> tuple[int, int]:
        """The env's (worker restarts, worker timeouts) so far (0, 0 without workers)."""
        return getattr(self.env, "worker_restarts", 0), getattr(self.env, "worker_timeouts", 0)

    def _act(self, obs: Observation, chunk: int) -> ActOutput:
        """The policy's action, log-prob and value (float32 whatever the learner's weights)."""
        with self.strategy.inference():
            out = self.policy.act(obs, chunk=chunk)
        return ActOutput(_float32(out.action), out.logprob.float(), out.value.float())

    def _value(self, obs: Observation, chunk: int) -> Tensor:
        with self.strategy.inference():
            return over_env_chunks(self.policy.value, obs, chunk).float()

    @torch.no_grad()
    def rollout(self) -> Rollout:
        """Collect ``T`` steps from every env; compute advantages and value targets."""
        a = self.cfg.algo
        env = self.env
        obs_l, act_l, logp_l, val_l, rew_l, term_l, done_l = [], [], [], [], [], [], []
        boot: list[tuple[int, Tensor, Tensor]] = []
        ep_rets: list[Tensor] = []
        wins: list[Tensor] = []
        crashed_l: list[Tensor | None] = []
        restarts = torch.zeros((), device=self.device)  # summed on device; read once per rollout
        # env worker processes (mpe2) restarted after a crash or a hang: counted by the env,
        # since the last rollout (a hang met while checkpointing counts in the next one)
        workers0, timeouts0 = self._worker_counts
        obs = self.obs
        op = self.other_play
        chunk = self.cfg.train.inference_chunk_envs
        for t in range(a.rollout_steps):
            if op is not None:  # act (and store) in each agent's relabelled world
                obs = op.observation(obs)
            if self._knn and obs.graph is not None:  # the update reuses this exact graph
                obs = dataclasses.replace(obs, graph=obs.graph.with_knn(self._knn))
            out = self._act(obs, chunk)
            res = env.step(out.action if op is None else op.env_action(out.action))
            obs_l.append(obs if self._keep_graph else dataclasses.replace(obs, graph=None))
            act_l.append(out.action)
            logp_l.append(out.logprob)
            val_l.append(out.value)
            rew_l.append(res.reward)
            term_l.append(res.terminated)
            done_l.append(res.done)
            if bool(res.truncated.any()):
                final = res.final_obs if op is None else op.observation(res.final_obs)
                boot.append((t, res.truncated, self._value(final, chunk)))
            ep_rets.append(res.episode_return)
            if "win" in res.info:
                wins.append(res.info["win"])
            crashed_l.append(res.info.get("crashed"))
            if "restarts" in res.info:  # games restarted (StarCraft II)
                restarts += res.info["restarts"].float().sum()
            if op is not None:
                op.new_episodes(res.done)
            obs = res.obs
        self.obs = obs
        value = torch.stack(val_l)
        last_obs = obs if op is None else op.observation(obs)
        next_value = torch.cat([value[1:], self._value(last_obs, chunk).unsqueeze(0)])
        for t, mask, v_final in boot:
            next_value[t] = torch.where(mask.unsqueeze(-1), v_final, next_value[t])
        vn = self.value_norm
        value_d, next_d = vn.denormalize(value), vn.denormalize(next_value)
        adv, returns = gae(
            torch.stack(rew_l), value_d, next_d, torch.stack(term_l), torch.stack(done_l), a.gamma, a.gae_lambda
        )
        var_y = returns.var()
        explained_var = float(1 - (returns - value_d).var() / var_y) if var_y > 0 else float("nan")
        vn.update(self.strategy.all_gather_cat(returns))  # same statistics on every rank
        ep = torch.stack(ep_rets).flatten()
        won = torch.stack(wins).flatten() if wins else None
        valid = None
        if any(c is not None and bool(c.any()) for c in crashed_l):
            zeros = torch.zeros(env.num_envs, device=self.device)
            crashed = torch.stack([zeros if c is None else c.to(zeros) for c in crashed_l])  # [T, E]
            valid = (crashed == 0).float().unsqueeze(-1).expand_as(torch.stack(logp_l)).contiguous()
        self._worker_counts = self._worker_counts_now()
        return Rollout(
            obs=Observation.stack(obs_l),
            action=torch.stack(act_l),
            logprob=torch.stack(logp_l),
            value=value,
            advantages=adv,
            returns=vn.normalize(returns),
            episode_returns=ep[~torch.isnan(ep)],
            explained_var=explained_var,
            episode_wins=None if won is None else won[~torch.isnan(won)],
            valid=valid,
            env_restarts=float(restarts) + self._worker_counts[0] - workers0,
            env_timeouts=float(self._worker_counts[1] - timeouts0),
        )

    # ------------------------------------------------------------------- update
    def update(self, ro: Rollout) -> dict[str, float]:
        """``epochs`` passes of ``num_minibatches`` Adam steps over the rollout."""
        a = self.cfg.algo
        n = self.batch_frames
        flat = lambda x: x.reshape((n, *x.shape[2:]))  # noqa: E731
        obs = ro.obs.map(flat)
        action, logprob, value = flat(ro.action), flat(ro.logprob), flat(ro.value)
        adv, returns = flat(ro.advantages), flat(ro.returns)
        weights = None if ro.valid is None else flat(ro.valid)
        mb = n // a.num_minibatches
        micro = self.strategy.micro_batches  # equal micro-batches accumulated into one step
        mm = mb // micro
        sums = torch.zeros(len(LOSS_KEYS) + 1, device=self.device)
        steps = skips = 0
        strat = self.strategy
        mterms = torch.zeros(len(LOSS_KEYS), device=self.device)
        for _ in range(a.epochs):
            perm = torch.randperm(n, device=self.device)
            for i in range(a.num_minibatches):
                idx = perm[i * mb : (i + 1) * mb]
                adv_mb = adv[idx]
                if a.norm_adv:  # over the whole minibatch, before it is split
                    adv_mb = normalize_advantages(adv_mb, None if weights is None else weights[idx])
                strat.zero_grad()
                mterms = torch.zeros(len(LOSS_KEYS), device=self.device)
                for j in range(micro):
                    sub = idx[j * mm : (j + 1) * mm]
                    new_logp, entropy, new_value = strat.forward(
                        obs.map(functools.partial(_take, idx=sub)), action[sub]
                    )
                    terms = ppo_loss(
                        new_logp,
                        logprob[sub],
                        adv_mb[j * mm : (j + 1) * mm],
                        new_value,
                        value[sub],
                        returns[sub],
                        entropy,
                        clip_coef=a.clip_coef,
                        vf_coef=a.vf_coef,
                        ent_coef=a.ent_coef,
                        clip_vloss=a.clip_vloss,
                        norm_adv=False,
                        weights=None if weights is None else weights[sub],
                    )
                    strat.backward(terms["loss"])
                    mterms += torch.stack([terms[k].detach() for k in LOSS_KEYS])
                grad_norm = strat.optimizer_step(bool(torch.isfinite(mterms[0])))
                mterms /= micro
                if strat.skipped:
                    skips += 1
                    self._skipped_step(rollback=self.nonfinite.record(skipped=True))
                    continue
                self.nonfinite.record(skipped=False)
                sums += torch.cat([mterms, grad_norm.detach().reshape(1).to(mterms)])
                steps += 1
            approx_kl = mterms[LOSS_KEYS.index("approx_kl")]
            if a.target_kl is not None and float(strat.all_reduce_mean(approx_kl)) > a.target_kl:
                break
        if self.nonfinite.pending:  # the last step's parameters must give finite outputs
            with torch.no_grad():
                outs = strat.forward(obs.map(functools.partial(_take, idx=idx)), action[idx])
            finite = not strat.any_rank(not all_finite(outs))
            rollback = self.nonfinite.confirm(finite)
            if not finite:
                skips += 1
                self._skipped_step(rollback)
        means = (sums / steps).tolist() if steps else [float("nan")] * (len(LOSS_KEYS) + 1)
        out = dict(zip((*LOSS_KEYS, "grad_norm"), means))
        out["explained_var"] = ro.explained_var
        out["nonfinite_skips"] = float(skips)
        return out

    def _skipped_step(self, rollback: bool) -> None:
        """A skipped optimizer step (eqmarl.train.nonfinite): roll back the unconfirmed step
        before it, warn, and stop the run after ``train.max_nonfinite_updates`` in a row."""
        guard = self.nonfinite
        if rollback:
            self.strategy.rollback()
        if self.strategy.is_main:
            print(
                f"[eqmarl] warning: iteration {self.iteration + 1}: non-finite loss or gradient norm, optimizer step "
                f"skipped{' and the one before rolled back' if rollback else ''} ({guard.streak} in a row; the run "
                f"stops at train.max_nonfinite_updates={guard.max_consecutive})",
                flush=True,
            )
        if guard.exhausted:
            a = self.cfg.algo
            msg = stop_message(guard.streak, self.iteration + 1, a.lr, a.max_grad_norm, self._last_checkpoint())
            raise NonFiniteError(msg)

    def _last_checkpoint(self) -> str | None:
        from eqmarl.train.checkpoint import resolve_checkpoint

        try:
            return str(resolve_checkpoint(self.run_dir))
        except (FileNotFoundError, OSError, ValueError):
            return None

    # ----------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """One episode in each of ``train.eval_episodes`` envs with deterministic actions.

        Runs under a forked RNG with a fixed env seed (:func:`~eqmarl.core.episodes.run_episodes`),
        so evaluation neither perturbs training nor varies between evaluations except
        through the policy.
        """
        chunk = self.cfg.train.inference_chunk_envs

        def act(obs: Observation) -> Tensor:
            with self.strategy.inference():
                mode = over_env_chunks(lambda o: self.policy.distribution(o).mode(), obs, chunk)
            return _float32(mode)

        return run_episodes(self.eval_env, act, seed=self.cfg.seed + 777).summary()

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002  (the global stream, checkpointed for exact resume)
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        env_state = self.env.state_dict() if hasattr(self.env, "state_dict") else None
        return {
            "format": 1,
            "config": dataclasses.asdict(self.cfg),
            "policy": self.strategy.plain_state_dict(),
            "value_norm": self.value_norm.state_dict(),
            "optimizer": self.strategy.optimizer_state(),
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "rng": rng,
            "env": env_state,
            "obs": None if env_state is not None else self.obs,
            "wandb_run_id": self.wandb_run_id,
            "last_eval": self.last_eval,
            "other_play": None if self.other_play is None else self.other_play.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], checkpoint: Path | None = None) -> None:
        """Continue from :meth:`state_dict`'s output.

        Args:
            state: the saved state.
            checkpoint: the file it came from (a sharded learner's files sit beside it;
                default: this run's ``checkpoints/``).
        """
        ranks = state.get("ranks")
        if ranks and self.world_size > 1 and self.rank < len(ranks):  # this rank's own streams
            state = {**state, **ranks[self.rank]}
        self.policy.load_state_dict(state["policy"])
        self.value_norm.load_state_dict(state["value_norm"])
        ckpt_dir = Path(checkpoint).parent if checkpoint is not None else self.run_dir / "checkpoints"
        self.strategy.load_optimizer_state(state["optimizer"], ckpt_dir, state.get("sharded_tag"))
        self.iteration = int(state["iteration"])
        self.env_steps = int(state["env_steps"])
        self.wall_s = float(state["wall_s"])
        self.wandb_run_id = state.get("wandb_run_id")
        self.last_eval = dict(state.get("last_eval") or {})
        if self.other_play is not None and state.get("other_play") is not None:
            self.other_play.load_state_dict(state["other_play"])
        if state.get("env") is not None and hasattr(self.env, "load_state_dict"):
            self.obs = self.env.load_state_dict(state["env"])
        else:  # the backend cannot export its simulator state: start fresh episodes
            if self.rank == 0:
                print(f"[eqmarl] warning: {inexact_resume_note(self.cfg.env)}", file=sys.stderr, flush=True)
            self.obs = self.env.reset(seed=self.env_seed + self.iteration)
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])  # noqa: NPY002  (restores the global stream)
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0); in a multi-rank job every rank must call it (it gathers
        each rank's RNG and env state, so a resumed job continues every rank exactly)."""
        state = self.state_dict()
        if self.strategy.any_rank(not state_is_finite(state["policy"], state["optimizer"], state["value_norm"])):
            if self.strategy.is_main:  # a checkpoint never holds NaN/inf: resume finds the last finite one
                print(
                    f"[eqmarl] warning: checkpoint of iteration {self.iteration} not written: the parameters or "
                    f"optimizer state hold non-finite values; the last good checkpoint is "
                    f"{self._last_checkpoint() or '(none yet)'}",
                    flush=True,
                )
            return None
        state["sharded_tag"] = self.strategy.save_sharded(
            self.run_dir / "checkpoints", self.iteration, self.cfg.train.keep_checkpoints
        )
        per_rank = self.strategy.gather_objects({k: state.get(k) for k in RANK_STATE_KEYS})
        if not self.strategy.is_main:
            return None
        if self.world_size > 1:
            state["ranks"] = per_rank
        return save_checkpoint(self.run_dir, self.iteration, state, self.cfg.train.keep_checkpoints)

    # ---------------------------------------------------------------------- run
    def request_stop(self) -> None:
        """Ask the loop to checkpoint and return at the end of the current iteration."""
        self._stop_requested = True

    def _done(self) -> bool:
        mi = self.cfg.train.max_iterations
        return self.iteration >= self.num_iterations or (mi is not None and self.iteration >= mi)

    def run(self, logger=None) -> dict[str, float]:
        """Train until ``train.total_env_steps`` (or ``train.max_iterations``, or a stop request).

        Ctrl-C (SIGINT) and SIGTERM (what SLURM, docker and kubernetes send before a
        kill) are deferred to the end of the iteration: the trainer saves a checkpoint,
        sets :attr:`stop_signal` and returns; ``resume=<run dir>`` continues.  A second
        one aborts.

        A checkpoint the disk refuses (full, read-only) replaces nothing: a periodic one
        warns and training goes on (the next one tries again); the final or stop
        checkpoint raises :class:`~eqmarl.train.checkpoint.CheckpointWriteError`.

        Returns:
            the last logged metrics.
        """
        cfg = self.cfg
        if logger is not None:
            self.wandb_run_id = logger.wandb_run_id
        prev = _install_stop_handlers(self)
        metrics: dict[str, float] = {}
        start_wall = time.perf_counter() - self.wall_s
        try:
            stop = self.strategy.any_rank(self._stop_requested)  # all ranks agree on stopping
            while not self._done() and not stop:
                frac = 1.0 - self.iteration / self.num_iterations
                lr = cfg.algo.lr * frac if cfg.algo.anneal_lr else cfg.algo.lr
                self.strategy.set_lr(lr)
                t0 = time.perf_counter()
                ro = self.rollout()
                t1 = time.perf_counter()
                metrics = self.update(ro)
                t2 = time.perf_counter()
                self.iteration += 1
                self.env_steps += self.frames_per_iteration
                stop = self._stop_requested = self.strategy.any_rank(self._stop_requested)
                last = self._done()
                ev = cfg.train.eval_every
                if last or (ev > 0 and self.iteration % ev == 0):
                    self.last_eval = self.evaluate()
                    metrics.update(self.last_eval)
                self.wall_s = time.perf_counter() - start_wall
                eps = self.strategy.all_reduce_sum(
                    ro.episode_returns.new_tensor([ro.episode_returns.sum(), ro.episode_returns.numel()])
                )
                metrics.update(
                    iteration=self.iteration,
                    env_steps=self.env_steps,
                    wall_s=self.wall_s,
                    steps_per_s=self.frames_per_iteration / (time.perf_counter() - t0),
                    train_return=float(eps[0] / eps[1]) if eps[1] > 0 else float("nan"),
                    lr=lr,
                    rollout_s=t1 - t0,
                    update_s=t2 - t1,
                )
                if ro.episode_wins is not None:
                    w = self.strategy.all_reduce_sum(
                        ro.episode_wins.new_tensor([ro.episode_wins.sum(), ro.episode_wins.numel()])
                    )
                    metrics["win_rate"] = float(w[0] / w[1]) if w[1] > 0 else float("nan")
                if self._counts_restarts:
                    restarted = torch.tensor([ro.env_restarts, ro.env_timeouts], device=self.device)
                    restarted = self.strategy.all_reduce_sum(restarted)
                    metrics["env_restarts"] = float(restarted[0])
                    if self._counts_timeouts:
                        metrics["env_timeouts"] = float(restarted[1])
                if logger is not None and (last or self.iteration % cfg.logger.log_every == 0):
                    logger.log(metrics)
                ck = cfg.train.checkpoint_every
                if last or stop or (ck > 0 and self.iteration % ck == 0):
                    try:
                        self.save()
                    except CheckpointWriteError as e:  # final/stop checkpoint: the run fails with it
                        if last or stop:
                            raise
                        print(f"[eqmarl] warning: {e}; training continues and tries again", file=sys.stderr)
        finally:
            for sig, handler in prev.items():
                signal.signal(sig, handler)
        return metrics


def _install_stop_handlers(trainer: Trainer) -> dict[int, Any]:
    """Route ``trainer.stop_signals`` to a stop at the end of the iteration.

    Returns:
        the handlers replaced (to restore); empty outside the main thread, where Python
        cannot install signal handlers.
    """

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else name
        if trainer.stop_signal is not None:
            if not trainer.abort_on_repeat:
                print(f"\n[eqmarl] {name} again: still checkpointing at the end of this iteration", flush=True)
                return
            print(f"\n[eqmarl] {name} again: aborting without a checkpoint", flush=True)
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        trainer.stop_signal = signum
        print(
            f"\n[eqmarl] stop requested ({name}): checkpointing at the end of this iteration ({again} again to abort)",
            flush=True,
        )
        trainer.request_stop()

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in trainer.stop_signals}
