"""Running one training job: fresh or resumed, one rank or several, local or on SLURM.

:func:`run_training` trains in this process.  :class:`TrainJob` is the submitit entry
of a cluster job: it sets up the ranks (``torch.distributed`` from the SLURM
environment), resumes from the run directory's newest checkpoint when the job was
requeued, and turns the preemption signal (USR2, also sent before the time limit) into
a checkpoint at the next iteration boundary followed by submitit's requeue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from eqmarl.config import Config
from eqmarl.core import stop
from eqmarl.core.log import get_logger
from eqmarl.train.rundir import remove_unstarted_run, slurm_restart_count

log = get_logger("launch")


def save_resolved_config(cfg: Config, run_dir: Path) -> Path:
    """Write the typed, resolved config as ``config.json`` (no secrets live in Config)."""
    from eqmarl.train.checkpoint import atomic_write_bytes

    path = Path(run_dir) / "config.json"
    atomic_write_bytes(path, json.dumps(dataclasses.asdict(cfg), indent=2).encode())
    return path


def run_name(cfg: Config) -> str:
    """The run's display name (W&B run name, plot title)."""
    return f"{cfg.env.name}-{getattr(cfg.env, 'scenario', '')}-{cfg.model.name}-{cfg.algo.name}-s{cfg.seed}"


def run_training(
    cfg: Config,
    run_dir: Path,
    checkpoint: Path | None = None,
    *,
    rank: int = 0,
    world_size: int = 1,
    on_trainer: Callable[[Any], None] | None = None,
    lock: Any = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train in this process; continue from ``checkpoint`` when given.

    Writes into ``run_dir`` (rank 0 only): ``config.json``, ``metrics.csv``,
    ``checkpoints/``, ``learning_curve.png`` and (unless disabled) ``wandb/``.

    A SIGINT/SIGTERM that arrives before training starts (:mod:`eqmarl.core.stop`) trains
    nothing; a fresh run that ends that way, before its first checkpoint, leaves nothing
    behind (:func:`eqmarl.train.rundir.remove_unstarted_run`).

    Args:
        cfg: the validated config.
        run_dir: the run directory.
        checkpoint: a checkpoint file to continue from.
        rank, world_size: this process's place in a multi-rank job (the process group is
            already initialized when ``world_size > 1``).
        on_trainer: called with the Trainer once it exists (the job uses it to request a stop).
        lock: the run dir's lock, already held (hydra's callback took it); default: rank 0
            takes it here.
        fresh: a new run (no checkpoint, not a requeue): the lock is taken only if the
            directory holds no run yet (checked while the lock is held).

    Returns:
        the last metrics logged.

    Raises:
        eqmarl.train.rundir.RunDirError: another live process trains in ``run_dir``, or
            it is not writable (rank 0 holds the run dir's lock; see eqmarl.train.rundir).
            In a multi-rank job every rank raises it, with rank 0's message.
    """
    run_dir = Path(run_dir)
    held = _lock_run_dir(run_dir, rank, world_size, lock, fresh)
    trainers: list[Any] = []

    def attach(trainer: Any) -> None:
        trainers.append(trainer)
        if on_trainer is not None:
            on_trainer(trainer)

    stopped = False
    try:
        metrics = _train(cfg, run_dir, checkpoint, rank, world_size, attach)
        stopped = bool(trainers) and trainers[0].stop_signal is not None
        return metrics
    except (stop.StopRequested, KeyboardInterrupt, SystemExit):
        stopped = True
        raise
    finally:
        if held is not None:
            held.release()
        if stopped and fresh and rank == 0:  # nothing to resume: leave nothing (the stop message says so)
            remove_unstarted_run(run_dir, _hydra_job_name())


def _lock_run_dir(run_dir: Path, rank: int, world_size: int, lock: Any, fresh: bool) -> Any:
    """Rank 0 takes the run dir's lock (unless ``lock`` is held already); every rank learns
    whether it could, so a refused lock stops the whole job at once with one message.

    Returns:
        the lock rank 0 holds (None on other ranks).

    Raises:
        eqmarl.train.rundir.RunDirError: on every rank when rank 0 was refused.
    """
    from eqmarl.train.rundir import RunDirError, RunDirLock

    held, refusal = None, None
    if rank == 0:
        try:
            held = lock if lock is not None else RunDirLock(run_dir, fresh=fresh).acquire()
        except RunDirError as e:
            refusal = str(e)
    if world_size > 1:  # the other ranks would otherwise wait in a collective until it times out
        import torch.distributed as dist

        shared = [refusal]
        dist.broadcast_object_list(shared, src=0)
        refusal = shared[0]
    if refusal is not None:
        raise RunDirError(refusal)
    return held


def _hydra_job_name() -> str:
    """hydra's job name (its log file is ``<name>.log``); ``launch`` outside hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().job.name)
    except Exception:  # no hydra run in this process (a test, a library call)
        return "launch"


def _train(
    cfg: Config, run_dir: Path, checkpoint: Path | None, rank: int, world_size: int, on_trainer: Any
) -> dict[str, Any]:
    """:func:`run_training`'s body (the run dir already locked)."""
    from eqmarl.eval.plots import plot_learning_curve
    from eqmarl.train.checkpoint import load_checkpoint
    from eqmarl.train.logger import Logger, file_problem
    from eqmarl.train.trainer import Trainer

    main = rank == 0
    if world_size == 1:
        cfg = one_rank_learner(cfg)
        stop.check()  # alone, a stop needs no agreement: nothing is written yet
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            save_resolved_config(cfg, run_dir)
        except OSError as e:  # a run file the disk refuses: said in one line, training goes on
            log.warning(
                f"cannot write {file_problem(e, run_dir / 'config.json')}; training goes on (checkpoints hold it too)"
            )
    trainer = Trainer(cfg, run_dir, rank=rank, world_size=world_size)
    if on_trainer is not None:
        on_trainer(trainer)
    resume_iteration = None
    if checkpoint is not None:
        trainer.load_state_dict(load_checkpoint(checkpoint, map_location=trainer.device), checkpoint=Path(checkpoint))
        resume_iteration = trainer.iteration
        if main:
            log.info(f"resumed {run_dir} at iteration {trainer.iteration} ({trainer.env_steps} env steps)")
    if world_size > 1 and main:
        log.info(
            f"{cfg.learner.name} over {world_size} ranks: per-rank batch {trainer.batch_frames} frames, "
            f"effective batch {trainer.frames_per_iteration} frames per iteration"
        )
    # not rank 0 (only rank 0 logs, plots and writes files), or a stop requested while the
    # envs were built: the trainer takes the stop over and trains nothing (on every rank)
    if not main or stop.requested() is not None:
        return trainer.run(None)
    name = run_name(cfg)
    logger = Logger(
        cfg.logger,
        run_dir,
        dataclasses.asdict(cfg),
        total_env_steps=trainer.num_iterations * trainer.frames_per_iteration,
        start_env_steps=trainer.env_steps,
        resume_iteration=resume_iteration,
        wandb_run_id=trainer.wandb_run_id,
        run_name=name,
        facts=job_facts(cfg, trainer) if cfg.logger.wandb_mode != "disabled" else None,
    )
    _attach_media(cfg, trainer, logger, name)
    error: BaseException | None = None
    try:
        metrics = trainer.run(logger)
        if trainer.stop_signal is not None:
            stop.note(trainer.stop_signal)  # a further signal while closing aborts
        if (run_dir / "metrics.csv").exists() and trainer.done:
            try:
                png = plot_learning_curve(run_dir / "metrics.csv", run_dir / "learning_curve.png", title=name)
            except OSError as e:  # metrics.csv unreadable or the PNG unwritable: the run itself is done
                log.warning(f"no learning curve drawn: {file_problem(e, run_dir / 'learning_curve.png')}")
            else:
                logger.log_image("learning_curve", png)
    except BaseException as e:
        error = e
        raise
    finally:
        try:
            report_outcome(cfg, trainer, logger, error, run_dir)
        except Exception as e:  # W&B's record of the end never changes how the run ends
            log.warning(f"the run's end was not recorded in W&B ({type(e).__name__}: {e})")
        logger.close()
    return metrics


def _attach_media(cfg: Config, trainer: Any, logger: Any, name: str) -> None:
    """``logger.media_every``: the trainer's evaluations drawn as W&B media (when W&B runs)."""
    if cfg.logger.media_every == 0 or not logger.media_enabled:
        return
    from eqmarl.eval.render import EvalMedia

    spec = trainer.eval_env.spec
    trainer.eval_media = EvalMedia(
        cfg.logger.media_every, spec.n_agents, spec.action_type == "mixed", name, logger.log_video
    )


def stop_reason(trainer: Any, error: BaseException | None) -> str:
    """Why a run ended, for the runs table: ``finished``, ``preempted`` (SLURM's USR2),
    ``signal:<NAME>``, ``non_finite``, ``checkpoint_failed``, ``aborted`` or ``error:<type>``."""
    from eqmarl.train.checkpoint import CheckpointWriteError
    from eqmarl.train.nonfinite import NonFiniteError

    if isinstance(error, NonFiniteError):
        return "non_finite"
    if isinstance(error, CheckpointWriteError):
        return "checkpoint_failed"
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return "aborted"
    if error is not None:
        return f"error:{type(error).__name__}"
    if trainer.done:
        return "finished"
    if trainer.stop_signal is not None:
        return f"signal:{signal.Signals(trainer.stop_signal).name}"
    if trainer.stopped_early:  # a stop with no signal of its own: TrainJob's preemption (USR2)
        return "preempted"
    return "stopped"


def report_outcome(cfg: Config, trainer: Any, logger: Any, error: BaseException | None, run_dir: Path) -> None:
    """The run's end in W&B: ``stop_reason``; alerts (each also the summary field ``alert/<name>``)
    on a non-finite stop, a failed final checkpoint and a preemption past ``cluster.max_requeues``;
    with ``logger.log_checkpoints``, the finished run's policy as a model artifact."""
    from eqmarl.train.checkpoint import resolve_checkpoint

    reason = stop_reason(trainer, error)
    logger.summary({"stop_reason": reason, "iteration": trainer.iteration, "env_steps": trainer.env_steps})
    if reason == "non_finite":
        logger.alert("non_finite_stop", str(error))
    elif reason == "checkpoint_failed":
        logger.alert("checkpoint_failed", str(error))
    elif reason == "preempted" and slurm_restart_count() >= cfg.cluster.max_requeues:
        logger.alert(
            "requeue_limit",
            f"preempted after {slurm_restart_count()} requeues (cluster.max_requeues={cfg.cluster.max_requeues}): "
            f"not requeued; continue with: {resume_command(run_dir)}",
        )
    if cfg.logger.log_checkpoints and reason == "finished":
        try:
            ckpt = resolve_checkpoint(run_dir)
        except FileNotFoundError:
            log.warning("logger.log_checkpoints: no checkpoint to log")
            return
        final = ckpt.name == f"ckpt_{trainer.iteration:06d}.pt"
        logger.log_policy(ckpt, ["final", "latest"] if final else ["latest"])


def job_facts(cfg: Config, trainer: Any) -> dict[str, Any]:
    """Where and what ran, as W&B config keys ``job.*`` (unknown facts left out): SLURM job and array
    ids, nodes, ranks, requeues, container runtime/image (``EQMARL_IMAGE_DIGEST`` where the site sets
    it), eqmarl version and git commit, torch/jax versions, device."""
    import socket
    from importlib import metadata

    import torch

    import eqmarl

    env = os.environ
    try:
        jax_version: str | None = metadata.version("jax")
    except metadata.PackageNotFoundError:
        jax_version = None
    device = str(trainer.device)
    if trainer.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(trainer.device)})"
    facts = {
        "job.slurm_job_id": env.get("SLURM_JOB_ID"),
        "job.slurm_array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
        "job.slurm_array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
        "job.nodes": env.get("SLURM_JOB_NODELIST") or socket.gethostname(),
        "job.world_size": trainer.world_size,
        "job.requeues": slurm_restart_count(),
        "job.container_runtime": container_runtime(cfg),
        "job.container_image": env.get("APPTAINER_CONTAINER") or cfg.container.image,
        "job.image_digest": env.get("EQMARL_IMAGE_DIGEST"),
        "job.eqmarl_version": getattr(eqmarl, "__version__", None),
        "job.git_commit": git_commit(),
        "job.torch_version": torch.__version__,
        "job.jax_version": jax_version,
        "job.device": device,
    }
    return {k: v for k, v in facts.items() if v is not None}


def container_runtime(cfg: Config) -> str:
    """The container this process runs in: what the process sees (docker, apptainer,
    charliecloud), else ``container.runtime`` (``none``)."""
    if os.path.exists("/.dockerenv"):
        return "docker"
    if "APPTAINER_CONTAINER" in os.environ or "SINGULARITY_CONTAINER" in os.environ:
        return "apptainer"
    if os.path.exists("/ch/environment"):
        return "charliecloud"
    return cfg.container.runtime


def git_commit() -> str | None:
    """The git commit eqmarl runs from (``EQMARL_GIT_COMMIT`` first; None: not a git checkout)."""
    import subprocess

    if os.environ.get("EQMARL_GIT_COMMIT"):
        return os.environ["EQMARL_GIT_COMMIT"]
    try:
        p = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def one_rank_learner(cfg: Config) -> Config:
    """The config one process trains: ``learner=ddp`` alone is ``learner=single`` (with a note)."""
    if cfg.learner.name != "ddp":
        return cfg
    log.info("learner=ddp with one rank: training with learner=single")
    return dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, name="single"))


def resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in ``run_dir``, ready to paste into a shell.

    ``python launch.py resume=<run dir>`` from the repository root; from another working
    directory the path of ``launch.py`` instead.  The value is quoted for hydra's override
    grammar and the argument for the shell when the path needs it (spaces, ``,``, ``=``...).
    """
    import re
    import shlex

    script = "launch.py"
    here = Path(__file__).resolve().parents[3] / "launch.py"  # src/eqmarl/launch/job.py -> the repository
    if here.exists():
        local = Path.cwd() / "launch.py"
        if not (local.exists() and local.resolve() == here):
            script = str(here)
    value = str(run_dir)
    if not re.fullmatch(r"[A-Za-z0-9_./+\-:@%]+", value):  # hydra reads anything else only quoted
        # in a quoted value backslashes are literal, except a run of them before a quote
        # (or the closing quote), which hydra halves
        value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        value = "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"
    arg = "resume=" + value
    if shlex.quote(arg) == arg:
        shell_arg = arg
    elif not set('"$`\\!') & set(arg):
        shell_arg = f'"{arg}"'  # reads better than shlex's '"'"' around hydra's quotes
    else:
        shell_arg = shlex.quote(arg)
    return f"python {shlex.quote(script)} {shell_arg}"


def start_over(run_dir: str | Path) -> None:
    """A requeued attempt whose predecessor saved no checkpoint trains from the start: its
    rows in ``metrics.csv`` would otherwise come twice."""
    (Path(run_dir) / "metrics.csv").unlink(missing_ok=True)


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir/checkpoints`` holds a checkpoint (``resume=<run dir>`` can continue it)."""
    ckpts = Path(run_dir) / "checkpoints"
    return ckpts.is_dir() and any(p.name.startswith("ckpt_") for p in ckpts.iterdir())


def stop_message(signum: int, run_dir: str | Path, trainer: Any = None) -> str:
    """What a stop by ``signum`` left: the resume command when a checkpoint exists, else that
    nothing was saved.

    Args:
        signum: SIGINT or SIGTERM.
        run_dir: the run directory.
        trainer: the Trainer, when one was built (its counters say where it stopped).
    """
    name = signal.Signals(signum).name
    trained = trainer is not None and trainer.iteration > getattr(trainer, "run_start_iteration", trainer.iteration)
    if trainer is not None and trainer.done:
        return f"{name}: the run had already finished; {run_dir} is complete"
    if not has_checkpoint(run_dir):
        gone = "" if Path(run_dir).exists() else f"; {run_dir} was removed"
        return (
            f"stopped by {name} before the first checkpoint: nothing was saved{gone}. "
            "Run the same command again to start over"
        )
    if trained:
        return (
            f"stopped by {name} at iteration {trainer.iteration} ({trainer.env_steps} env steps); "
            f"checkpoint saved. Continue with: {resume_command(run_dir)}"
        )
    where = f" at iteration {trainer.iteration}" if trainer is not None else ""
    return (
        f"stopped by {name} before training went on: {run_dir} is unchanged{where}. "
        f"Continue with: {resume_command(run_dir)}"
    )


def exit_if_stopped(trainer: Any, run_dir: Path, sweep: bool = False) -> None:
    """After a run that SIGINT/SIGTERM stopped: say how to resume, exit ``128 + signal``.

    The exit status follows the shell convention (130 after SIGINT, 143 after SIGTERM),
    so scripts and schedulers see the run did not finish; in a local sweep the exit also
    ends the sweep (hydra's launcher starts no further job).  Returns when no signal
    stopped the run.
    """
    sig = None if trainer is None else trainer.stop_signal
    if sig is None:
        return
    if trainer.rank == 0:
        log.info(stop_message(sig, run_dir, trainer))
        if sweep:
            log.info("the sweep stops here: no further jobs are started")
        sys.stderr.flush()
    sys.exit(128 + sig)


def default_wandb_group(cfg: Config, sweep_dir: str | Path | None) -> str | None:
    """W&B group of a run whose ``logger.group`` is unset.

    A sweep's runs share one group named after its multirun directory (e.g.
    ``2026-11-21_10-00-00``), prefixed by ``experiment`` when a preset is in use; a single
    run is grouped by its experiment (or not at all).
    """
    if cfg.logger.group is not None:
        return cfg.logger.group
    if sweep_dir is None:
        return cfg.experiment
    p = Path(str(sweep_dir))
    sweep = f"{p.parent.name}_{p.name}" if p.parent.name else p.name
    return f"{cfg.experiment}-{sweep}" if cfg.experiment else sweep


def parameter_digest(state: dict[str, Any]) -> str:
    """sha256 (16 hex digits) of a state dict's tensors, in key order (equal iff bitwise equal)."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ cluster jobs
def in_submitit_job() -> bool:
    """True inside a job started by submitit (SLURM or submitit's local executor)."""
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def job_world_size() -> int:
    """Ranks of this job: SLURM tasks under submitit, ``WORLD_SIZE`` under torchrun, else 1."""
    if in_submitit_job():
        import submitit

        return int(submitit.JobEnvironment().num_tasks)
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup_ranks(cfg: Config) -> tuple[Config, int, int]:
    """Join the job's process group; pick ``learner=ddp`` when there are several ranks.

    Under submitit the rendezvous (``MASTER_ADDR`` = first node, ``MASTER_PORT`` derived
    from the job id, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) comes from the SLURM
    environment via ``submitit.helpers.TorchDistributedEnvironment``.

    Returns:
        (the config actually trained, rank, world size).
    """
    from eqmarl.train.strategy import init_distributed
    from eqmarl.train.trainer import resolve_device

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cfg.train.threads == 0 and cpus:  # torch would otherwise use every core of the node
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=int(cpus)))
    world = job_world_size()
    if world <= 1:
        return one_rank_learner(cfg), 0, 1
    if cfg.learner.name == "single":
        cfg = dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, name="ddp"))
    if cfg.learner.name not in ("ddp", "deepspeed"):
        raise ValueError(f"learner.name={cfg.learner.name!r} with {world} ranks; allowed: ddp, deepspeed")
    if in_submitit_job():
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    rank, world = init_distributed(cfg.learner.backend, cfg.learner.timeout_s, resolve_device(cfg.train.device))
    import torch.distributed as dist

    log.info(
        f"rank {rank}/{world}: torch.distributed {dist.get_backend()} "
        f"via {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    )
    return cfg, rank, world


def _preempt_signal() -> signal.Signals:
    """The signal submitit treats as preemption/timeout (USR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


class TrainJob:
    """A training run as a submitit job: ``executor.submit(TrainJob(cfg, run_dir))``.

    Calling it trains (every rank of the job calls it) and returns rank 0's last
    metrics.  It is *checkpointable* in submitit's sense (it has ``checkpoint()``):

    - On USR2 (preemption, or ``signal_delay_s`` before the time limit) the handler only
      asks the trainer to stop; the ranks agree to stop at the end of the current
      iteration and save one consistent checkpoint (model, optimizer, RNG, env state,
      counters, W&B run id).  Then submitit's own handler runs: it calls
      :meth:`checkpoint`, writes the returned ``DelayedSubmission`` and requeues the job.
    - The requeued job calls a fresh ``TrainJob`` on the same run directory, which
      resumes from the newest checkpoint there, so the result equals an uninterrupted
      run (CPU, same seed) and the W&B run continues under the same id.
    - Requeues are bounded: submitit's ``max_num_timeout`` (= ``cluster.max_requeues``)
      for timeouts, and :meth:`checkpoint` refuses once SLURM's restart count reaches
      ``cluster.max_requeues`` (preemptions included); the job then fails with its
      checkpoint on disk (``resume=<run dir>`` continues it).

    Args:
        cfg: the validated config.
        run_dir: the run directory (its ``checkpoints/`` decide where training starts).
        checkpoint: start from this checkpoint instead of the run directory's newest.
    """

    _active: ClassVar[TrainJob | None] = None

    def __init__(self, cfg: Config, run_dir: str | Path, checkpoint: str | Path | None = None) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.checkpoint_path = None if checkpoint is None else Path(checkpoint)
        self._trainer: Any = None
        self._signalled = False
        self.preempted = False

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "run_dir": self.run_dir, "checkpoint_path": self.checkpoint_path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cfg"], state["run_dir"], state["checkpoint_path"])  # type: ignore[misc]

    @classmethod
    def active(cls) -> TrainJob | None:
        """The TrainJob running in this process, if any (the hydra launcher asks)."""
        return cls._active

    def __call__(self) -> dict[str, Any]:
        from eqmarl.train.checkpoint import resolve_checkpoint
        from eqmarl.train.strategy import destroy_distributed

        TrainJob._active = self
        stop.set_abort_on_repeat(False)  # SLURM may send SIGTERM to a task more than once
        cfg, rank, world = setup_ranks(self.cfg)
        ckpt = self.checkpoint_path
        requeued = slurm_restart_count() > 0
        fresh = ckpt is None and not requeued  # a new run: its dir must hold no run
        if ckpt is None or requeued:  # a requeued job continues from the run's newest checkpoint
            with contextlib.suppress(FileNotFoundError):
                ckpt = resolve_checkpoint(self.run_dir)
        if requeued and ckpt is None and rank == 0:
            start_over(self.run_dir)
        sig = _preempt_signal()
        submitit_handler = signal.getsignal(sig) if in_submitit_job() else None
        if submitit_handler is not None:
            signal.signal(sig, self._on_preempt)
        try:
            metrics = run_training(
                cfg, self.run_dir, ckpt, rank=rank, world_size=world, on_trainer=self._attach, fresh=fresh
            )
            trainer = self._trainer
            # preempted: stopped early by USR2 (here or on another rank), not by SIGTERM/SIGINT
            self.preempted = bool(trainer.stopped_early and (self._signalled or trainer.stop_signal is None))
        finally:
            if submitit_handler is not None:
                signal.signal(sig, submitit_handler)
        if world > 1:  # ranks must end in sync; the digest makes that checkable from the job logs
            digest = parameter_digest(trainer.strategy.plain_state_dict())
            log.info(f"rank {rank}/{world}: parameter digest {digest}")
        if self.preempted and callable(submitit_handler):
            if rank == 0:
                log.info("checkpoint saved; handing over to submitit to requeue")
                submitit_handler(sig, None)  # calls checkpoint(), requeues, exits
            else:  # the requeue stops this rank with the whole job
                time.sleep(180)
        destroy_distributed()
        TrainJob._active = None
        return metrics

    @property
    def trainer(self) -> Any:
        """The Trainer of the last call (None before it exists)."""
        return self._trainer

    def _attach(self, trainer: Any) -> None:
        self._trainer = trainer
        # SIGTERM checkpoints too, but the preemption signal stays submitit's (and ours), and
        # SLURM may deliver SIGTERM to a task more than once: a repeat does not abort here
        trainer.stop_signals = tuple(s for s in trainer.stop_signals if s != _preempt_signal())
        trainer.abort_on_repeat = False
        if self._signalled:
            trainer.request_stop()

    def _on_preempt(self, signum: int, frame: Any) -> None:
        """USR2: stop (and checkpoint) at the end of the current iteration; never mid-update."""
        self._signalled = True
        log.info(f"got {signal.Signals(signum).name}: checkpointing at the end of this iteration")
        if self._trainer is not None:
            self._trainer.request_stop()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """What submitit requeues: a fresh TrainJob that resumes from the newest checkpoint.

        Called by submitit's signal handler after :meth:`__call__` has stopped the trainer
        at an iteration boundary and saved, so the checkpoint on disk is consistent.  If
        submitit calls it mid-iteration (its handler not deferred), nothing is saved here
        and the job resumes from the last periodic checkpoint.

        Returns:
            a ``submitit.helpers.DelayedSubmission``, or None (no requeue) once the job
            was restarted ``cluster.max_requeues`` times.
        """
        from submitit.helpers import DelayedSubmission

        restarts = slurm_restart_count()
        if restarts >= self.cfg.cluster.max_requeues:
            log.info(
                f"not requeued: restarted {restarts} times "
                f"(cluster.max_requeues={self.cfg.cluster.max_requeues}); "
                f"continue with: {resume_command(self.run_dir)}"
            )
            return None
        if not self.preempted:
            log.info(
                "checkpoint() outside an iteration boundary: the requeued job resumes from the last saved checkpoint"
            )
        return DelayedSubmission(TrainJob(self.cfg, self.run_dir))
