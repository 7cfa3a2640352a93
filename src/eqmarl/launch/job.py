"""Running one training job: fresh or resumed, writing into its run directory."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from eqmarl.config import Config


def save_resolved_config(cfg: Config, run_dir: Path) -> Path:
    """Write the typed, resolved config as ``config.json`` (no secrets live in Config)."""
    from eqmarl.train.checkpoint import atomic_write_bytes

    path = Path(run_dir) / "config.json"
    atomic_write_bytes(path, json.dumps(dataclasses.asdict(cfg), indent=2).encode())
    return path


def run_training(cfg: Config, run_dir: Path, checkpoint: Path | None = None) -> dict[str, Any]:
    """Train in this process; continue from ``checkpoint`` when given.

    Writes into ``run_dir``: ``config.json``, ``metrics.csv``, ``checkpoints/``,
    ``learning_curve.png`` and (unless disabled) ``wandb/``.

    Returns:
        the last metrics logged.
    """
    from eqmarl.eval.plots import plot_learning_curve
    from eqmarl.logging import Logger
    from eqmarl.train.checkpoint import load_checkpoint
    from eqmarl.train.trainer import Trainer

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(cfg, run_dir)
    trainer = Trainer(cfg, run_dir)
    resume_iteration = None
    if checkpoint is not None:
        trainer.load_state_dict(load_checkpoint(checkpoint, map_location=trainer.device))
        resume_iteration = trainer.iteration
        print(f"[eqmarl] resumed {run_dir} at iteration {trainer.iteration} ({trainer.env_steps} env steps)")
    name = f"{cfg.env.name}-{getattr(cfg.env, 'scenario', '')}-{cfg.model.name}-{cfg.algo.name}-s{cfg.seed}"
    logger = Logger(
        cfg.logger,
        run_dir,
        dataclasses.asdict(cfg),
        total_env_steps=trainer.num_iterations * trainer.frames_per_iteration,
        start_env_steps=trainer.env_steps,
        resume_iteration=resume_iteration,
        wandb_run_id=trainer.wandb_run_id,
        run_name=name,
    )
    try:
        metrics = trainer.run(logger)
        if (run_dir / "metrics.csv").exists():
            png = plot_learning_curve(run_dir / "metrics.csv", run_dir / "learning_curve.png", title=name)
            logger.log_image("learning_curve", png)
    finally:
        logger.close()
    return metrics
