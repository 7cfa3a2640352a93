"""eqmarl entry point: compose the config with hydra, validate it, dispatch the run.

    python launch.py                               # embedded default, local
    python launch.py model=mlp algo=mappo seed=3   # any override
    python launch.py resume=outputs/<run dir>      # continue a stopped run exactly
    python launch.py -m seed=0,1,2                 # a sweep
    python launch.py -m cluster=slurm seed=0,1,2   # a sweep of SLURM jobs (submitit)

Bad values stop here, before anything runs, with exit code 2 and a message naming the
key and the allowed values.  SIGINT and SIGTERM are handled from the first statement on
(eqmarl.core.stop): exit code 130 / 143 and a message at any moment, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

# first: a signal from here on stops cleanly; importing eqmarl also sets OpenMP's thread
# policy before anything loads torch (eqmarl/__init__.py: OpenMP reads it once)
from eqmarl.core import stop

stop.install()

with stop.exit_on_stop():  # importing takes seconds: a signal meanwhile is one line, exit 130/143
    import hydra
    from omegaconf import DictConfig

    from eqmarl.config import ConfigError, register_configs
    from eqmarl.launch import register_resolvers
    from eqmarl.launch.checks import checked_config, checked_resume, resume_group_overrides, run_main

    register_configs()
    register_resolvers()


def _checked_run(dict_cfg: DictConfig, hydra_dir: Path, multirun: bool) -> tuple:
    """(config, run dir, checkpoint or None, fresh): a resume, a requeued SLURM job, or a new run.

    Bad input prints one line and exits 2.
    """
    from hydra.core.hydra_config import HydraConfig

    from eqmarl.launch.job import in_submitit_job, start_over
    from eqmarl.train.checkpoint import resolve_checkpoint
    from eqmarl.train.resume import ResumeError, check_resume_value
    from eqmarl.train.rundir import RunDirError, own_slurm_requeue, slurm_job_id, slurm_restart_count

    task = list(HydraConfig.get().overrides.task)
    try:
        check_resume_value(dict_cfg.get("resume"))
        if dict_cfg.get("resume") is not None:
            return (*checked_resume(dict_cfg, task, multirun), False)
        cfg = checked_config(dict_cfg, task, multirun)
    except (ConfigError, FileNotFoundError, ResumeError, RunDirError) as e:
        print(f"eqmarl: {e}", file=sys.stderr)
        sys.exit(2)
    if in_submitit_job():  # TrainJob: a requeued job continues from its run dir's newest checkpoint
        return cfg, hydra_dir, None, slurm_restart_count() == 0
    if own_slurm_requeue(hydra_dir):  # `sbatch --requeue` of this command: continue its own run
        try:
            ckpt = resolve_checkpoint(hydra_dir)
            how = f"continuing from {ckpt}"
        except FileNotFoundError:
            ckpt, how = None, "it saved no checkpoint: starting over"
            start_over(hydra_dir)
        _log().info(
            f"SLURM job {slurm_job_id()} restarted ({slurm_restart_count()}x) on its run dir {hydra_dir}: {how}"
        )
        return cfg, hydra_dir, ckpt, False
    return cfg, hydra_dir, None, True


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(dict_cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from eqmarl.train.rundir import remove_hydra_only_dir, remove_unstarted_run, take_claimed_lock

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    hydra_dir, job_name = Path(HydraConfig.get().runtime.output_dir), HydraConfig.get().job.name
    resume = dict_cfg.get("resume")
    run_dir = hydra_dir if resume is None else _named_run_dir(resume)
    lock = take_claimed_lock(hydra_dir)  # hydra's callback locked a fresh run's dir before hydra wrote there
    try:
        if not os.environ.get("SUBMITIT_EXECUTOR"):  # a submitit job keeps submitit's handlers until it trains
            stop.defer()  # hydra's callback did, unless a launcher started this job: stop only where it is safe
        return _main(dict_cfg, hydra_dir, lock, multirun)
    except BaseException as e:  # leave nothing behind that a run which trained nothing wrote
        if lock is not None:
            lock.release()
        stopped = isinstance(e, (stop.StopRequested, KeyboardInterrupt)) or (
            isinstance(e, SystemExit) and e.code in (130, 143)
        )
        if stopped and lock is not None and lock.fresh:
            remove_unstarted_run(hydra_dir, job_name)  # kept if it saved a checkpoint
        elif stopped or (isinstance(e, SystemExit) and e.code == 2 and not multirun):
            remove_hydra_only_dir(hydra_dir, job_name)
        if isinstance(e, stop.StopRequested):
            _stopped(e, run_dir, multirun)
        raise
    finally:
        if lock is not None:
            lock.release()
        if resume is not None and not multirun:  # it continued in its checkpoint's dir: drop hydra's
            remove_hydra_only_dir(hydra_dir, job_name, keep=run_dir)


def _main(dict_cfg: DictConfig, hydra_dir: Path, lock: Any, multirun: bool) -> float | None:
    """:func:`main`'s run: check, train, report; every way it can end is an exit code."""
    from hydra.core.hydra_config import HydraConfig

    from eqmarl.launch.job import default_wandb_group, exit_if_stopped, in_submitit_job

    if in_submitit_job():
        stop.set_abort_on_repeat(False)  # SLURM may send SIGTERM to a task more than once
    cfg, run_dir, ckpt, fresh = _checked_run(dict_cfg, hydra_dir, multirun)
    stop.check()
    cfg.logger.group = default_wandb_group(cfg, HydraConfig.get().sweep.dir if multirun else None)
    metrics, trainer = _train(cfg, run_dir, ckpt, lock, fresh, multirun)
    print(f"[eqmarl] run dir: {run_dir}")
    exit_if_stopped(trainer, run_dir, sweep=multirun)  # SIGINT/SIGTERM: resume hint, exit 130/143
    if "eval_return" in metrics:
        print(f"[eqmarl] final eval return: {metrics['eval_return']:.2f} after {int(metrics['env_steps'])} env steps")
    return metrics.get("eval_return")


def _train(cfg: Any, run_dir: Path, ckpt: Path | None, lock: Any, fresh: bool, multirun: bool) -> tuple[dict, Any]:
    """Train (here, or as this SLURM job's TrainJob); every way it can end becomes an exit code.

    Returns:
        (the last metrics, the trainer).
    """
    from eqmarl.launch.job import TrainJob, has_checkpoint, in_submitit_job, resume_command, run_training
    from eqmarl.train.checkpoint import CheckpointWriteError
    from eqmarl.train.rundir import RunDirError

    try:
        if in_submitit_job():  # a SLURM job: ranks, preemption, requeue (eqmarl.launch.job.TrainJob)
            job = TrainJob(cfg, run_dir, ckpt)
            return job(), job.trainer
        trainers: list = []
        metrics = run_training(cfg, run_dir, ckpt, on_trainer=trainers.append, lock=lock, fresh=fresh)
        return metrics, trainers[0]
    except RunDirError as e:  # another process trains there, or it is not writable
        print(f"eqmarl: {e}", file=sys.stderr)
        sys.exit(2)
    except CheckpointWriteError as e:  # the final (or stop) checkpoint: the run ends without it
        print(
            f"eqmarl: {e}. The run stopped; {resume_command(run_dir)} continues from the last saved one",
            file=sys.stderr,
        )
        sys.exit(1)
    except (KeyboardInterrupt, SystemExit) as e:  # a second signal aborted (the trainer said so)
        code = 130 if isinstance(e, KeyboardInterrupt) else e.code
        if code in (130, 143) and has_checkpoint(run_dir):
            _log().info(f"the last checkpoint is kept: continue with {resume_command(run_dir)}")
        elif code in (130, 143):
            gone = "" if run_dir.exists() else f"; {run_dir} was removed"
            _log().info(f"nothing was saved (no checkpoint yet){gone}")
        sys.exit(code)


def _stopped(e: stop.StopRequested, run_dir: Path, multirun: bool) -> None:
    """Say what a stop before training left (nothing, or the run unchanged) and exit 128 + signal."""
    from eqmarl.launch.job import stop_message

    _log().info(stop_message(e.signum, run_dir))
    if multirun:
        _log().info("the sweep stops here: no further jobs are started")
    sys.stderr.flush()
    sys.exit(e.exit_code)


def _named_run_dir(target: object) -> Path:
    """The run dir a ``resume=`` value names (a run dir, its checkpoints/, or a checkpoint file)."""
    p = Path(str(target)).absolute()
    if p.is_file():
        p = p.parent
    return p.parent if p.name == "checkpoints" else p


def _log() -> Any:
    from eqmarl.core.log import get_logger

    return get_logger("launch")


if __name__ == "__main__":
    with stop.exit_on_stop():
        sys.argv += resume_group_overrides(sys.argv[1:])  # resume=<run>: compose that run's env group
    run_main(main)  # bad input of any kind: one line, exit 2; a stop: exit 130/143
