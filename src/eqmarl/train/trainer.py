"""The PPO training loop: rollout -> GAE -> update -> (eval) -> log -> (checkpoint).

:class:`Trainer` owns the run: it builds the envs, the agent and the learner in named
phases (seeding every random stream once, in :meth:`Trainer.__init__`), and
:meth:`Trainer.run` reads as the loop, one named step each: learning-rate schedule,
rollout (``train/rollout.py``: collection, truncation bootstrap, GAE, crash masks),
update (``train/update.py``: epochs, minibatches, micro-batches, KL stop), counters,
evaluation, metrics, checkpoint.  What a non-finite loss, gradient or checkpoint does is
``train/nonfinite.py``'s :class:`~eqmarl.train.nonfinite.NonFiniteGuard`.

``state_dict()``/``load_state_dict()`` cover everything a run needs to continue exactly:
parameters, optimizer, value normalizer, counters (the non-finite streak included), RNG
states, the env's simulator state (where the backend can export it) and the W&B run id;
also the ``metrics.csv`` rows the disk refused, which a resume writes.
"""

from __future__ import annotations

import dataclasses
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from eqmarl.algos.ppo import ValueNorm
from eqmarl.build import env_symmetry, make_agent, make_env
from eqmarl.config import Config
from eqmarl.core import Observation
from eqmarl.core import stop as stop_requests
from eqmarl.core.episodes import run_episodes
from eqmarl.core.log import get_logger
from eqmarl.models import Policy
from eqmarl.models.policy import over_env_chunks
from eqmarl.train.checkpoint import CheckpointWriteError, save_checkpoint
from eqmarl.train.learners import Learner, make_learner
from eqmarl.train.malloc import tune_malloc
from eqmarl.train.nonfinite import NonFiniteGuard
from eqmarl.train.resume import inexact_resume_note
from eqmarl.train.rollout import Rollout, RolloutCollector, worker_counts
from eqmarl.train.rollout import as_float32 as _float32
from eqmarl.train.threads import AdaptiveThreads
from eqmarl.train.update import PPOUpdate
from eqmarl.wrappers.eqc import EQC
from eqmarl.wrappers.other_play import OtherPlay

log = get_logger("train")

if TYPE_CHECKING:
    from eqmarl.train.logger import EpisodeMedia, Logger

# state_dict entries that differ between ranks (own envs, own random streams)
RANK_STATE_KEYS = ("rng", "env", "obs", "other_play")


def resolve_device(name: str) -> torch.device:
    """The torch device ``train.device`` names (``auto``: CUDA where visible, else CPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible; use train.device=cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's random streams."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (seeds the global stream that libraries draw from)
    torch.manual_seed(seed)


class Trainer:
    """PPO over a batch of multi-agent envs (IPPO or MAPPO, per ``cfg.algo.name``).

    Args:
        cfg: the validated config.
        run_dir: where metrics, checkpoints and plots go.
        rank: this process's place in a distributed job (one process: 0).
        world_size: the number of processes in the job (one process: 1).
        strategy: learner factory override (the signature of :func:`~eqmarl.train.learners.make_learner`).
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: Path,
        rank: int = 0,
        world_size: int = 1,
        strategy: Callable[..., Learner] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.env_seed = cfg.seed + 1_000_003 * rank  # each rank its own envs and random streams
        self._setup_devices()
        # every random stream is seeded here, in this order (exact resume and reproducible
        # runs depend on it); the phases below draw from them but seed nothing
        with torch.random.fork_rng(devices=[]):  # building the eval env leaves the training streams alone
            self.eval_env = make_env(cfg.env, cfg.train.eval_episodes, cfg.seed + 777, str(self.device))
        seed_everything(self.env_seed)
        self._build_env()
        seed_everything(cfg.seed)  # same initial parameters on every rank
        self._build_agent()
        self._build_learner(strategy)
        seed_everything(self.env_seed + 1)  # each rank's own rollout streams
        self._init_state()
        self._build_phases()
        self._init_stop()

    # ---------------------------------------------------------------- construction
    def _setup_devices(self) -> None:
        """The device (``train.device``), the allocator and the CPU threads (``train.threads``)."""
        self.device = resolve_device(self.cfg.train.device)
        tune_malloc()  # reuse freed activation memory instead of re-faulting it (see malloc.py)
        # 0: every core other processes leave free, where idle threads sleep (re-decided per iteration)
        self.thread_policy = AdaptiveThreads(self.cfg.train.threads)
        self.threads = self.thread_policy.current

    def _build_env(self) -> None:
        """The training envs (``train.num_envs`` of ``env.*``) and what they report."""
        self.env = make_env(self.cfg.env, self.cfg.train.num_envs, self.env_seed, str(self.device))
        self.spec = self.env.spec
        # envs that restart crashed games or workers report it; their restarts are logged
        self._counts_restarts = hasattr(self.env, "restarts")
        self._counts_timeouts = hasattr(self.env, "worker_timeouts")  # ... and hung workers
        # the eval env's workers (or games) are restarted and counted too, in the iteration
        # they fail in
        self._eval_worker_counts = self._eval_restarts()

    def _eval_restarts(self) -> tuple[int, int]:
        """The eval env's (restarts, hung workers killed) so far."""
        restarts, timeouts = worker_counts(self.eval_env)
        return restarts or getattr(self.eval_env, "restarts", 0), timeouts

    def _build_agent(self) -> None:
        """The policy (``model.*``; orbit-initialised, EQC-wrapped) and Other-Play's relabelling."""
        cfg, a = self.cfg, self.cfg.algo
        # the policy (orbit init, EQC: eqmarl.build.make_agent); checkpoints hold the plain policy
        agent = make_agent(cfg.model, self.env, centralized_critic=a.name == "mappo", device=self.device)
        self._keep_graph = agent.policy.uses_graph
        self._knn = cfg.model.knn if self._keep_graph else 0
        self.policy: Policy | EQC = agent.module
        self.other_play: OtherPlay | None = None
        if a.other_play is not None:
            self.other_play = OtherPlay(
                env_symmetry(self.env, a.other_play).to(self.device), cfg.train.num_envs, self.spec.n_agents
            )

    def _build_learner(self, strategy: Callable[..., Learner] | None) -> None:
        """The value normalizer, the optimizer and the learner strategy (``learner.*``)."""
        cfg, a = self.cfg, self.cfg.algo
        self.value_norm = ValueNorm(a.value_norm).to(self.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=a.lr, eps=1e-5, foreach=True)
        self.strategy: Learner = (strategy or make_learner)(
            cfg.learner,
            self.policy,
            self.optimizer,
            max_grad_norm=a.max_grad_norm,
            keep_snapshots=cfg.train.rollback_nonfinite,
        )

    def _init_state(self) -> None:
        """Batch sizes, counters, the run's bookkeeping and the envs' first observation."""
        cfg = self.cfg
        self.batch_frames = cfg.algo.rollout_steps * cfg.train.num_envs
        self.frames_per_iteration = self.batch_frames * self.world_size
        self.num_iterations = max(1, math.ceil(cfg.train.total_env_steps / self.frames_per_iteration))
        self.iteration = 0
        self.env_steps = 0
        self.wall_s = 0.0
        self.wandb_run_id: str | None = None
        self.last_eval: dict[str, float] = {}
        self._logger: Logger | None = None  # the run's metrics sinks (rank 0, while run() runs)
        self._held_rows: list[dict[str, str]] = []  # metrics.csv rows a checkpoint held back, to write
        # W&B media of evaluation episodes (logger.media_every; set by the launcher on rank 0)
        self.eval_media: EpisodeMedia | None = None
        self._untimed_s = 0.0  # seconds of this run() left out of wall_s (drawing the media)
        self.obs = self.env.reset(seed=self.env_seed)

    def _build_phases(self) -> None:
        """The iteration's phases: the rollout collector, the PPO update and the non-finite guard."""
        cfg = self.cfg
        self.collector = RolloutCollector(
            self.env,
            self.policy,
            self.strategy,
            self.value_norm,
            self.other_play,
            algo=cfg.algo,
            chunk=cfg.train.inference_chunk_envs,
            knn=self._knn,
            keep_graph=self._keep_graph,
            device=self.device,
            compile_mode=cfg.train.compile,
        )
        self.nonfinite = NonFiniteGuard(
            cfg.train.max_nonfinite_updates,
            self.strategy,
            lr=cfg.algo.lr,
            max_grad_norm=cfg.algo.max_grad_norm,
            run_dir=self.run_dir,
        )
        self.updater = PPOUpdate(
            cfg.algo, self.strategy, self.nonfinite, self.batch_frames, self.device, compile_mode=cfg.train.compile
        )

    def _init_stop(self) -> None:
        """No stop requested yet; SIGINT and SIGTERM will request one (see :meth:`run`)."""
        self._stop_requested = False
        # the signal (SIGINT/SIGTERM) that stopped the run, None while none arrived
        self.stop_signal: int | None = None
        # the iteration the last :meth:`run` started at (it trained iff ``iteration`` is past it)
        self.run_start_iteration = 0
        # signals that stop the run at the end of the iteration (a cluster job removes
        # its preemption signal); a repeat of one aborts unless ``abort_on_repeat`` is off
        self.stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
        self.abort_on_repeat = True

    # ------------------------------------------------------------- rollout, update
    def rollout(self) -> Rollout:
        """Collect ``T`` steps from every env; compute advantages and value targets (train/rollout.py)."""
        rollout, self.obs = self.collector.collect(self.obs)
        return rollout

    def update(self, rollout: Rollout) -> dict[str, float]:
        """``algo.epochs`` passes of ``algo.num_minibatches`` optimizer steps over ``rollout`` (train/update.py).

        Returns:
            the loss terms, ``grad_norm``, ``explained_var`` and ``nonfinite_skips``.
        """
        return self.updater(rollout, self.iteration + 1)

    # ----------------------------------------------------------------- evaluate
    @torch.no_grad()
    def evaluate(self, on_step: Callable[..., None] | None = None) -> dict[str, float]:
        """One episode in each of ``train.eval_episodes`` envs with deterministic actions.

        ``on_step`` is :func:`~eqmarl.core.episodes.run_episodes`' hook (the media recorder).
        Runs under a forked RNG with a fixed env seed (:func:`~eqmarl.core.episodes.run_episodes`),
        so evaluation neither perturbs training nor varies between evaluations except
        through the policy.
        """
        chunk = self.cfg.train.inference_chunk_envs

        def act(obs: Observation) -> Tensor:
            with self.strategy.inference():
                mode = over_env_chunks(lambda o: self.policy.distribution(o).mode(), obs, chunk)
            return _float32(mode)

        return run_episodes(self.eval_env, act, seed=self.cfg.seed + 777, on_step=on_step).summary()

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to continue this run exactly.

        ``nonfinite`` holds the non-finite streak (:class:`~eqmarl.train.nonfinite.NonFiniteGuard`);
        ``metrics_backlog``, present only while ``metrics.csv`` cannot be written, the rows
        not written yet (a resume writes them).
        """
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),  # noqa: NPY002  (the global stream, checkpointed for exact resume)
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        env_state = self.env.state_dict() if hasattr(self.env, "state_dict") else None
        backlog = self._held_rows or (self._logger.held_rows() if self._logger is not None else [])
        held = {"metrics_backlog": backlog} if backlog else {}
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
            "nonfinite": self.nonfinite.state_dict(),
            **held,
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
        self.nonfinite.load_state_dict(state.get("nonfinite"))  # absent before it was saved: 0
        self._held_rows = list(state.get("metrics_backlog") or [])
        if self.other_play is not None and state.get("other_play") is not None:
            self.other_play.load_state_dict(state["other_play"])
        if state.get("env") is not None and hasattr(self.env, "load_state_dict"):
            self.obs = self.env.load_state_dict(state["env"])
        else:  # the backend cannot export its simulator state: start fresh episodes
            if self.rank == 0:
                log.warning(f"{inexact_resume_note(self.cfg.env)}")
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
        if not self.nonfinite.checkpoint_allowed(
            self.iteration, state["policy"], state["optimizer"], state["value_norm"]
        ):
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

    @property
    def done(self) -> bool:
        """The run reached its end: ``train.total_env_steps`` (or ``train.max_iterations``)."""
        max_iterations = self.cfg.train.max_iterations
        return self.iteration >= self.num_iterations or (
            max_iterations is not None and self.iteration >= max_iterations
        )

    @property
    def stop_requested(self) -> bool:
        """A stop was requested (:meth:`request_stop`, a signal; after an iteration: on any rank)."""
        return self._stop_requested

    @property
    def stopped_early(self) -> bool:
        """A stop request ended the run before it was :attr:`done`."""
        return self._stop_requested and not self.done

    def run(self, logger: Logger | None = None) -> dict[str, float]:
        """Train until ``train.total_env_steps`` (or ``train.max_iterations``, or a stop request).

        Ctrl-C (SIGINT) and SIGTERM (what SLURM, docker and kubernetes send before a
        kill) are deferred to the end of the iteration: the trainer saves a checkpoint,
        sets :attr:`stop_signal` and returns; ``resume=<run dir>`` continues.  A second
        one aborts.  A signal that ``launch.py`` received before training started
        (:mod:`eqmarl.core.stop`) stops the run before its first iteration: nothing is
        trained or saved.

        A checkpoint the disk refuses (full, read-only) replaces nothing: a periodic one
        warns and training goes on (the next one tries again); the final or stop
        checkpoint raises :class:`~eqmarl.train.checkpoint.CheckpointWriteError`.

        Args:
            logger: where each iteration's metrics go (None: nowhere; ranks > 0).

        Returns:
            the last logged metrics.
        """
        if logger is not None:
            self.wandb_run_id = logger.wandb_run_id
            self._logger = logger
            logger.restore_rows(self._held_rows)  # rows the run before could not write
            self._held_rows = []
        self.run_start_iteration = self.iteration
        previous_handlers = _install_stop_handlers(self)
        self._take_pending_stop()
        metrics: dict[str, float] = {}
        start_wall = time.perf_counter() - self.wall_s
        self._untimed_s = 0.0
        self.thread_policy.start()
        try:
            stop = self.strategy.any_rank(self._stop_requested)  # all ranks agree on stopping
            while not self.done and not stop:
                metrics, stop = self._iteration(logger, start_wall)
                self.threads = self.thread_policy.step()
        finally:
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            self._logger = None
        return metrics

    def _take_pending_stop(self) -> None:
        """A SIGINT/SIGTERM that arrived before training started (``eqmarl.core.stop``, from
        ``launch.py``'s first line on) stops the run before its first iteration: nothing is
        trained and nothing saved."""
        sig = stop_requests.requested()
        if sig is not None and self.stop_signal is None and sig in self.stop_signals:
            self.stop_signal = sig
            self.request_stop()

    def _iteration(self, logger: Logger | None, start_wall: float) -> tuple[dict[str, float], bool]:
        """One iteration: lr schedule, rollout, update, counters, eval, metrics, log, checkpoint.

        Args:
            logger: where the metrics go (None: nowhere).
            start_wall: ``time.perf_counter()`` when the run (with its earlier wall time) began.

        Returns:
            the iteration's metrics, and whether all ranks agreed to stop after it.
        """
        lr = self._schedule_lr()
        started = time.perf_counter()
        rollout = self.rollout()
        rolled_out = time.perf_counter()
        metrics = self.update(rollout)
        updated = time.perf_counter()
        stop = self._advance()
        last = self.done
        if self._eval_due(last):
            media = self.eval_media.start(self._evaluation_number(), last) if self.eval_media is not None else None
            self.last_eval = self.evaluate(on_step=media)
            metrics.update(self.last_eval)
        self.wall_s = time.perf_counter() - start_wall - self._untimed_s
        metrics.update(self._iteration_metrics(rollout, lr, started, rolled_out, updated))
        if self.eval_media is not None:  # drawn after the timings: not in wall_s nor steps_per_s
            media_s = self.eval_media.finish(self.iteration, self.env_steps)
            if media_s is not None:
                metrics["media_s"] = media_s
                self._untimed_s += media_s
        if logger is not None and (last or self.iteration % self.cfg.logger.log_every == 0):
            logger.log(metrics)
        self._checkpoint_if_due(final=last or stop)
        return metrics, stop

    def _evaluation_number(self) -> int:
        """Which evaluation of the run (1-based) the one after this iteration is."""
        every = self.cfg.train.eval_every
        return max(1, math.ceil(self.iteration / every)) if every > 0 else 1

    def _schedule_lr(self) -> float:
        """Set this iteration's learning rate (``algo.anneal_lr``: linear to 0 at the last)."""
        algo = self.cfg.algo
        remaining = 1.0 - self.iteration / self.num_iterations
        lr = algo.lr * remaining if algo.anneal_lr else algo.lr
        self.strategy.set_lr(lr)
        return lr

    def _advance(self) -> bool:
        """Count the iteration and its frames; all ranks agree whether to stop after it.

        Returns:
            True when a stop was requested on any rank.
        """
        self.iteration += 1
        self.env_steps += self.frames_per_iteration
        self._stop_requested = self.strategy.any_rank(self._stop_requested)
        return self._stop_requested

    def _eval_due(self, last: bool) -> bool:
        """Evaluate after the last iteration and every ``train.eval_every`` (0: only the last)."""
        every = self.cfg.train.eval_every
        return last or (every > 0 and self.iteration % every == 0)

    def _iteration_metrics(
        self, rollout: Rollout, lr: float, started: float, rolled_out: float, updated: float
    ) -> dict[str, float]:
        """Counters, timings, the learning rate and the rollout's episode statistics (over all ranks).

        Args:
            rollout: the iteration's rollout.
            lr: the iteration's learning rate.
            started: ``time.perf_counter()`` when the rollout began.
            rolled_out: ... when it ended (and the update began).
            updated: ... when the update ended.
        """
        train_return = self._mean_over_ranks(rollout.episode_returns)
        metrics = {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "wall_s": self.wall_s,
            "steps_per_s": self.frames_per_iteration / (time.perf_counter() - started),
            "train_return": train_return,
            "lr": lr,
            "rollout_s": rolled_out - started,
            "update_s": updated - rolled_out,
        }
        if rollout.episode_wins is not None:
            metrics["win_rate"] = self._mean_over_ranks(rollout.episode_wins)
        if self.cfg.train.compile != "none":  # seconds spent compiling by this process (within wall_s)
            metrics["compile_s"] = self.collector.policy_step.compile_s + self.updater.loss.compile_s
        if self._counts_restarts:
            before, self._eval_worker_counts = self._eval_worker_counts, self._eval_restarts()
            restarts = rollout.env_restarts + self._eval_worker_counts[0] - before[0]
            timeouts = rollout.env_timeouts + self._eval_worker_counts[1] - before[1]
            restarted = torch.tensor([restarts, timeouts], device=self.device)
            restarted = self.strategy.all_reduce_sum(restarted)
            metrics["env_restarts"] = float(restarted[0])
            if self._counts_timeouts:
                metrics["env_timeouts"] = float(restarted[1])
        return metrics

    def _mean_over_ranks(self, values: torch.Tensor) -> float:
        """The mean of ``values`` over every rank's (NaN when no rank has any)."""
        total = self.strategy.all_reduce_sum(values.new_tensor([values.sum(), values.numel()]))
        return float(total[0] / total[1]) if total[1] > 0 else float("nan")

    def _checkpoint_if_due(self, final: bool) -> None:
        """Checkpoint after the last iteration, a stop, and every ``train.checkpoint_every``.

        Args:
            final: the last iteration or a stop: a refused write raises; otherwise it warns
                and the next checkpoint tries again.
        """
        every = self.cfg.train.checkpoint_every
        if not (final or (every > 0 and self.iteration % every == 0)):
            return
        try:
            self.save()
        except CheckpointWriteError as e:  # final/stop checkpoint: the run fails with it
            if final:
                raise
            log.warning(f"{e}; training continues and tries again")


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
                log.info(f"{name} again: still checkpointing at the end of this iteration")
                return
            log.info(f"{name} again: aborting without a checkpoint")
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        trainer.stop_signal = signum
        log.info(f"stop requested ({name}): checkpointing at the end of this iteration ({again} again to abort)")
        trainer.request_stop()

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in trainer.stop_signals}
