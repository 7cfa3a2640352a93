"""``train`` node: the training loop's settings, and their own check.

What the machine of a local run must have (a CUDA device for ``train.device=cuda``, the
memory of the run: :mod:`eqmarl.config.memory`) is checked in :mod:`eqmarl.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class TrainConfig:
    """The training loop (``train`` node)."""

    # total env steps (frames: one step of one env with all agents acting)
    total_env_steps: int = 2_000_000
    # parallel environments
    num_envs: int = 200
    # device: cpu | cuda | auto (cuda if available)
    device: str = "cpu"
    # torch CPU threads (intra-op). 0 (default): every core this process may use (on
    # SLURM: the task's cpus), with OpenMP's idle threads sleeping after a ~10 us spin
    # (OMP_WAIT_POLICY=PASSIVE, GOMP_SPINCOUNT=1000, set by eqmarl before torch loads); after
    # each iteration it drops to the cores other processes left free (at least one); one
    # thread where that policy could not be set (eqmarl.train.threads). N: N threads.
    # Measured: docs/results/threads_contention.json (benchmarks/threads_contention.py)
    threads: int = 0
    # evaluate (deterministic actions) every N iterations (0: only at the end)
    eval_every: int = 20
    # episodes per evaluation (run as one batch of envs)
    eval_episodes: int = 200
    # checkpoint every N iterations (0: only at the end)
    checkpoint_every: int = 50
    # checkpoints kept on disk (latest N)
    keep_checkpoints: int = 3
    # stop after this many iterations (None: run to total_env_steps); for tests and benchmarks
    max_iterations: Optional[int] = None
    # envs per policy forward in rollouts and evaluations (0: all at once); bounds inference
    # memory when graphs are large (e.g. complete graphs of hundreds of agents)
    inference_chunk_envs: int = 0
    # stop the run after this many consecutive optimizer steps skipped for a non-finite
    # loss or gradient norm (each skip is logged as nonfinite_skips; see eqmarl.train.nonfinite)
    max_nonfinite_updates: int = 5
    # keep a copy of the parameters and optimizer state before each optimizer step, so a
    # step that makes them non-finite is undone (learners single, ddp, deepspeed ZeRO-0);
    # costs one more copy of the model state (12 B per fp32 parameter with Adam): turn it
    # off for large per-agent models, and such a step then stops the run instead
    rollback_nonfinite: bool = True
    # refuse a run whose estimated peak memory (simulator, rollout, model activations:
    # eqmarl.config.memory) exceeds what this machine has available (local runs) or the
    # job requests (cluster.mem_gb on SLURM), before anything runs; false: run anyway
    memory_check: bool = True
    # torch.compile the rollout's policy step and the PPO loss (forward and backward):
    # none (eager) | default | reduce-overhead (adds CUDA graphs on a GPU) | max-autotune |
    # max-autotune-no-cudagraphs. Compile time (minutes on a small CPU) is reported apart
    # as compile_s. Measured: docs/results/compile_speed.json (benchmarks/compile_speed.py)
    compile: str = "none"


# train.compile (eqmarl.train.compiled keeps the same list; a test checks they agree)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# train.device (auto: cuda if available)
DEVICES = ("cpu", "cuda", "auto")
# train.num_envs / train.eval_episodes: envs stepped as one batch
MAX_ENVS = 1_000_000


def check_train(t: TrainConfig) -> None:
    """Sizes and periods, the device name, and the iteration and non-finite-update limits.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    for k in ("total_env_steps", "num_envs", "eval_episodes", "keep_checkpoints"):
        check_positive(f"train.{k}", getattr(t, k))
    for k in ("eval_every", "checkpoint_every", "threads", "inference_chunk_envs"):
        check_positive(f"train.{k}", getattr(t, k), allow_zero=True)
    for key, n in (("train.num_envs", t.num_envs), ("train.eval_episodes", t.eval_episodes)):
        if n > MAX_ENVS:
            raise ConfigError(key, n, f"an integer in [1, {MAX_ENVS:,}]")
    check_choice("train.device", t.device, DEVICES)
    check_choice("train.compile", t.compile, COMPILE_MODES)
    if t.max_iterations is not None and t.max_iterations < 1:
        raise ConfigError(
            "train.max_iterations", t.max_iterations, "an integer >= 1, or null (train to total_env_steps)"
        )
    if t.max_nonfinite_updates < 1:
        raise ConfigError("train.max_nonfinite_updates", t.max_nonfinite_updates, "an integer >= 1")
