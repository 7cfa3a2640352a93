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

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import hydra
from omegaconf import DictConfig, OmegaConf

from eqmarl.config import ConfigError, register_configs, to_config

register_configs()

from eqmarl.launch import register_resolvers  # noqa: E402

register_resolvers()

# Keys a resumed run may change from the command line; everything else comes from the
# checkpoint, so the run continues exactly as it started.
RESUMABLE_OVERRIDES = ("train.total_env_steps", "train.max_iterations", "logger.")


def _resume_config(dict_cfg: DictConfig, target: str):
    """The checkpoint's config plus the command line's resumable overrides."""
    from hydra.core.hydra_config import HydraConfig

    from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint, run_dir_of

    ckpt = resolve_checkpoint(target)
    saved = OmegaConf.merge(dict_cfg, load_checkpoint(ckpt)["config"])
    overrides = [
        o for o in HydraConfig.get().overrides.task if o.split("=", 1)[0].lstrip("+~").startswith(RESUMABLE_OVERRIDES)
    ]
    if overrides:
        saved = OmegaConf.merge(saved, OmegaConf.from_dotlist(overrides))
    OmegaConf.update(saved, "resume", str(target))
    return to_config(saved), run_dir_of(ckpt), ckpt


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def main(dict_cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from eqmarl.launch.job import TrainJob, default_wandb_group, exit_if_stopped, in_submitit_job, run_training

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        cfg = to_config(dict_cfg)
        if cfg.cluster.name == "slurm" and not multirun:
            print(
                "eqmarl: cluster=slurm submits jobs through hydra's submitit launcher, which runs in multirun mode "
                "only: add -m, e.g. python launch.py -m cluster=slurm seed=0",
                file=sys.stderr,
            )
            sys.exit(2)
        run_dir, ckpt = Path(HydraConfig.get().runtime.output_dir), None
        if cfg.resume:
            cfg, run_dir, ckpt = _resume_config(dict_cfg, cfg.resume)
    except (ConfigError, FileNotFoundError) as e:
        print(f"eqmarl: {e}", file=sys.stderr)
        sys.exit(2)
    cfg.logger.group = default_wandb_group(cfg, HydraConfig.get().sweep.dir if multirun else None)
    if in_submitit_job():  # a SLURM job: ranks, preemption, requeue (eqmarl.launch.job.TrainJob)
        job = TrainJob(cfg, run_dir, ckpt)
        metrics, trainer = job(), job.trainer
    else:
        trainers: list = []
        metrics = run_training(cfg, run_dir, ckpt, on_trainer=trainers.append)
        trainer = trainers[0]
    print(f"[eqmarl] run dir: {run_dir}")
    exit_if_stopped(trainer, run_dir, sweep=multirun)  # SIGINT/SIGTERM: resume hint, exit 130/143
    if "eval_return" in metrics:
        print(f"[eqmarl] final eval return: {metrics['eval_return']:.2f} after {int(metrics['env_steps'])} env steps")
    return metrics.get("eval_return")


if __name__ == "__main__":
    main()
