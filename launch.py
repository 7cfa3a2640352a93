"""eqmarl entry point: compose the config with hydra, validate it, dispatch the run.

    python launch.py                               # embedded default, local
    python launch.py model=mlp algo=mappo seed=3   # any override
    python launch.py resume=outputs/<run dir>      # continue a stopped run exactly
    python launch.py -m seed=0,1,2                 # a sweep
    python launch.py -m cluster=slurm seed=0,1,2   # a sweep of SLURM jobs (submitit)

Bad values stop here, before anything runs, with exit code 2 and a message naming the
key and the allowed values.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# before anything loads torch (see eqmarl/__init__.py: OpenMP reads it once)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import hydra
from omegaconf import DictConfig, OmegaConf

from eqmarl.config import ConfigError, register_configs, to_config
from eqmarl.launch.checks import checked_config, run_main

register_configs()

from eqmarl.launch import register_resolvers  # noqa: E402

register_resolvers()


def _resume_config(dict_cfg: DictConfig, target: str, wanted):
    """The checkpoint's config plus the command line's resumable overrides (eqmarl.train.resume)."""
    import dataclasses

    from hydra.core.hydra_config import HydraConfig

    from eqmarl.train.checkpoint import run_dir_of
    from eqmarl.train.resume import ResumeError, load_resume_checkpoint, refused_message, refused_overrides, resumable

    ckpt, state = load_resume_checkpoint(target)
    task = list(HydraConfig.get().overrides.task)
    refused = refused_overrides(task, dataclasses.asdict(wanted), state["config"])
    if refused:
        raise ResumeError(refused_message(target, refused))
    saved = OmegaConf.merge(dict_cfg, state["config"])
    overrides = [o for o in task if resumable(o.split("=", 1)[0].lstrip("+~"))]
    if overrides:
        saved = OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides))
    OmegaConf.update(saved, "resume", str(target))
    return to_config(saved), run_dir_of(ckpt), ckpt


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(dict_cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from eqmarl.launch.job import TrainJob, default_wandb_group, exit_if_stopped, in_submitit_job, run_training
    from eqmarl.train.checkpoint import CheckpointWriteError
    from eqmarl.train.resume import ResumeError, check_resume_value
    from eqmarl.train.rundir import RunDirError, check_fresh_run_dir, remove_hydra_only_dir

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    hydra_dir, refused = HydraConfig.get().runtime.output_dir, False
    try:
        check_resume_value(dict_cfg.get("resume"))
        cfg = checked_config(dict_cfg, HydraConfig.get().overrides.task, multirun)
        run_dir, ckpt = Path(hydra_dir), None
        if cfg.resume:
            cfg, run_dir, ckpt = _resume_config(dict_cfg, cfg.resume, cfg)
        elif not (in_submitit_job() and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0):
            check_fresh_run_dir(run_dir)  # a requeued SLURM job continues in its own run dir
    except (ConfigError, FileNotFoundError, ResumeError, RunDirError) as e:
        print(f"eqmarl: {e}", file=sys.stderr)
        refused = True
        sys.exit(2)
    finally:  # a refused launch, or a resume (it continues in its checkpoint's dir): drop hydra's empty dir
        if (refused or dict_cfg.get("resume") is not None) and not multirun:
            remove_hydra_only_dir(hydra_dir, HydraConfig.get().job.name)
    cfg.logger.group = default_wandb_group(cfg, HydraConfig.get().sweep.dir if multirun else None)
    try:
        if in_submitit_job():  # a SLURM job: ranks, preemption, requeue (eqmarl.launch.job.TrainJob)
            job = TrainJob(cfg, run_dir, ckpt)
            metrics, trainer = job(), job.trainer
        else:
            trainers: list = []
            metrics = run_training(cfg, run_dir, ckpt, on_trainer=trainers.append)
            trainer = trainers[0]
    except RunDirError as e:  # another process trains there, or it is not writable
        print(f"eqmarl: {e}", file=sys.stderr)
        sys.exit(2)
    except CheckpointWriteError as e:  # the final (or stop) checkpoint: the run ends without it
        print(f"eqmarl: {e}. The run stopped; resume={run_dir} continues from the last saved one", file=sys.stderr)
        sys.exit(1)
    print(f"[eqmarl] run dir: {run_dir}")
    exit_if_stopped(trainer, run_dir, sweep=multirun)  # SIGINT/SIGTERM: resume hint, exit 130/143
    if "eval_return" in metrics:
        print(f"[eqmarl] final eval return: {metrics['eval_return']:.2f} after {int(metrics['env_steps'])} env steps")
    return metrics.get("eval_return")


if __name__ == "__main__":
    run_main(main)  # bad input of any kind: one line, exit 2
