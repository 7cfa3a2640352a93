"""``learner=`` group: how gradients are computed and applied, and its own check.

Checks that need other groups (micro-batches dividing the PPO minibatch; DeepSpeed
installed for a local run) are in :mod:`eqmarl.config.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from eqmarl.config.errors import ConfigError, check_choice, check_positive


@dataclass
class LearnerConfig:
    """How gradients are computed and applied (``learner=`` group).

    ``ddp``: one process per rank, each with its own envs and seed; gradients are
    averaged over ranks every minibatch, so the effective batch is the per-rank batch
    (``algo.rollout_steps * train.num_envs``) times the world size, and ``env_steps``
    counts the frames of all ranks.  Chosen automatically when a job has several ranks.
    """

    # single (one process) | ddp | deepspeed
    name: str = "single"
    # ddp: torch.distributed backend: auto (nccl on CUDA, gloo on CPU) | nccl | gloo
    backend: str = "auto"
    # ddp: seconds a collective may wait for the other ranks before failing
    timeout_s: int = 600
    # equal micro-batches per PPO minibatch, their gradients accumulated into one
    # optimizer step (memory of the update ~ minibatch / micro_batches); every learner
    micro_batches: int = 1
    # deepspeed: ZeRO stage: 0 (plain data parallel), 1 (shard optimizer state),
    # 2 (+ gradients), 3 (+ parameters); sharding only pays for per-agent parameters
    # (model.share_params=false), see docs/scaling.md
    zero_stage: int = 0
    # deepspeed: keep the optimizer state (and step) on the CPU (ZeRO-Offload; stage >= 1)
    offload_optimizer: bool = False
    # deepspeed: fp32 | bf16 (autocast of the matrix products to bfloat16; parameters,
    # optimizer state, positions and relative vectors stay float32) | bf16_weights
    # (DeepSpeed's bf16: 16-bit weights and gradients, fp32 master weights and Adam state
    # in the optimizer, under autocast; the mode ZeRO's memory savings are quoted for)
    precision: str = "fp32"


# learner.name, learner.backend (ddp's torch.distributed backend), learner.zero_stage,
# learner.precision
LEARNERS = ("single", "ddp", "deepspeed")
DIST_BACKENDS = ("auto", "nccl", "gloo")
ZERO_STAGES = (0, 1, 2, 3)
PRECISIONS = ("fp32", "bf16", "bf16_weights")
# the learner=deepspeed settings with the value every other learner needs
DEEPSPEED_ONLY = {"zero_stage": 0, "offload_optimizer": False, "precision": "fp32"}


def check_learner(ln: LearnerConfig) -> None:
    """Names, sizes, and the DeepSpeed settings only ``learner=deepspeed`` may change.

    Raises:
        ConfigError: naming the key and the allowed values.
    """
    check_choice("learner.name", ln.name, LEARNERS)
    check_choice("learner.backend", ln.backend, DIST_BACKENDS)
    check_positive("learner.timeout_s", ln.timeout_s)
    check_positive("learner.micro_batches", ln.micro_batches)
    check_choice("learner.zero_stage", ln.zero_stage, ZERO_STAGES)
    check_choice("learner.precision", ln.precision, PRECISIONS)
    if ln.name != "deepspeed":
        for key, default in DEEPSPEED_ONLY.items():
            val = getattr(ln, key)
            if val != default:
                raise ConfigError(
                    f"learner.{key}", val, f"{default!r} with learner.name={ln.name} (a learner=deepspeed setting)"
                )
    if ln.offload_optimizer and ln.zero_stage == 0:
        raise ConfigError(
            "learner.offload_optimizer", True, "false with learner.zero_stage=0 (ZeRO-Offload needs stage >= 1)"
        )
