"""``learner=deepspeed``: the PPO update on a DeepSpeed engine (ZeRO 0-3, offload, bf16).

Implements :class:`eqmarl.train.learners.Learner` like the ``single`` and ``ddp``
learners, so the trainer does not know which learner it has; ``learners.py`` imports
this module only when ``learner.name=deepspeed`` is built.  What DeepSpeed adds here:

* ZeRO stage 0-3 (``learner.zero_stage``): shards the optimizer state (1), gradients
  (2) and parameters (3) over the data-parallel ranks.  With shared parameters the
  model state is a few MB and sharding saves nothing worth having; with per-agent
  parameters (``model.share_params=false``) it grows with the agent count, which is
  where ZeRO earns its place;
* ZeRO-Offload (``learner.offload_optimizer``): the optimizer state and step on the CPU;
* bf16 (``learner.precision=bf16``): ``torch.autocast`` of the matrix products;
  parameters, optimizer state and the equivariant coordinates stay float32;
* 16-bit weights (``learner.precision=bf16_weights``): DeepSpeed's bf16 mode: the
  policy's weights and gradients in bfloat16, an fp32 master copy and the Adam state in
  the optimizer (2 + 2 + 12 bytes per parameter, the accounting ZeRO's savings are
  quoted in); rollouts and updates run under autocast, inputs (coordinates included)
  stay float32 and log-probs, entropies and values come back as float32.  Checkpoints
  hold the fp32 master weights in DeepSpeed's files and a consolidated policy rounded
  to bfloat16;
* micro-batches (``learner.micro_batches``): DeepSpeed's gradient accumulation, one
  optimizer step per PPO minibatch;
* gradient clipping at ``algo.max_grad_norm`` (DeepSpeed's own default, 1.0, is never used);
* ZeRO-3's external parameters: ZeRO-3 gathers a module's parameters only while that
  module runs, so a parameter read elsewhere must be registered with the module that
  reads it.  The models declare such parameters themselves
  (:class:`~eqmarl.models.heads.ExternalParameters`); this module registers what they
  declare and knows no model's attribute names.

One process works without a launcher: this module starts a one-rank gloo/NCCL process
group itself (DeepSpeed would otherwise look for MPI).  Several ranks come from the
usual launch path (SLURM through submitit, or torchrun): the process group exists
already and DeepSpeed joins it.

Checkpoints: DeepSpeed's sharded files under ``checkpoints/deepspeed/<tag>/`` (every
rank writes its shard); the trainer's ``ckpt_<iteration>.pt`` beside them holds the
counters, RNG and env state and a consolidated plain policy (``eqmarl eval``, cross-play
and render read it without DeepSpeed).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from eqmarl.config import LearnerConfig
from eqmarl.core.log import stdout_to_stderr
from eqmarl.models.heads import ExternalParameters
from eqmarl.train.strategy import RankCollectives, SingleStrategy, grad_norm

INSTALL_HINT = (
    "learner=deepspeed needs DeepSpeed: DS_BUILD_OPS=0 pip install 'eqmarl[deepspeed]' "
    "(or use learner=single / learner=ddp)"
)


def import_deepspeed(device: torch.device) -> Any:
    """``import deepspeed`` with the CPU accelerator on CPU; a clear error when it is missing."""
    if device.type == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        # its logger binds the stdout of import time: bound to stderr, stdout stays the program's
        with stdout_to_stderr():
            import deepspeed
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return deepspeed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_process_group(device: torch.device, timeout_s: float) -> None:
    """Start a one-rank process group when none exists (DeepSpeed needs one).

    The rendezvous is passed explicitly (a free loopback port), not through ``RANK`` /
    ``MASTER_PORT`` environment variables, so nothing leaks into processes started
    later from this one (e.g. SLURM jobs submitted from the same Python process).
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{_free_port()}",
        rank=0,
        world_size=1,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def deepspeed_config(learner: LearnerConfig, max_grad_norm: float, world_size: int) -> dict[str, Any]:
    """The DeepSpeed config dict for ``learner.*`` (see the module docstring).

    Args:
        learner: the ``learner`` config.
        max_grad_norm: ``algo.max_grad_norm`` (<= 0: no clipping).
        world_size: number of data-parallel ranks.
    """
    micro = int(learner.micro_batches)
    # buckets of 2e7 elements (80 MB fp32) instead of DeepSpeed's 5e8: on these models a
    # bucket as large as the default would outweigh the sharded state
    zero: dict[str, Any] = {
        "stage": int(learner.zero_stage),
        "reduce_bucket_size": int(2e7),
        "allgather_bucket_size": int(2e7),
    }
    if learner.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if learner.zero_stage == 3:
        # gather the full weights into the module's state dict when saving
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    extra: dict[str, Any] = {}
    if learner.precision == "bf16_weights":  # 16-bit weights and gradients, fp32 master copy in the optimizer
        extra["bf16"] = {"enabled": True}
    return {
        **extra,
        # one "sample" per micro-batch: the PPO minibatch is the train batch
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": micro,
        "train_batch_size": micro * world_size,
        "gradient_clipping": float(max_grad_norm) if max_grad_norm > 0 else 0.0,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class DeepSpeedStrategy(RankCollectives, SingleStrategy):
    """PPO updates through a DeepSpeed engine.

    Args:
        module: the policy (actor and critic: one engine, one optimizer, one clip norm,
            as with the other learners).
        optimizer: the trainer's torch Adam (DeepSpeed wraps it; ZeRO shards its state).
        max_grad_norm: ``algo.max_grad_norm`` (<= 0: no clipping).
        learner: the ``learner`` config (micro-batches, ZeRO stage, offload, precision).
        keep_snapshots: keep the parameters and optimizer state before each step at ZeRO
            stage 0, so a step can be undone (``train.rollback_nonfinite``).
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float,
        learner: LearnerConfig,
        *,
        keep_snapshots: bool = True,
    ) -> None:
        device = next(module.parameters()).device
        deepspeed = import_deepspeed(device)
        ensure_process_group(device, float(learner.timeout_s))
        import torch.distributed as dist

        super().__init__(
            module,
            optimizer,
            max_grad_norm,
            micro_batches=int(learner.micro_batches),
            keep_snapshots=keep_snapshots,
        )
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device = device
        self.zero_stage = int(learner.zero_stage)
        self.precision = str(learner.precision)
        self.config = deepspeed_config(learner, max_grad_norm, self.world_size)
        self._deepspeed = deepspeed
        if self.zero_stage == 3:
            # each module names the parameters its forward reads outside their owner's forward
            for m in module.modules():
                if isinstance(m, ExternalParameters):
                    for p in m.zero3_external_parameters():
                        deepspeed.zero.register_external_parameter(m, p)
        # DeepSpeed reads LOCAL_RANK (ZeRO-3 also after initializing); a one-process run is
        # local rank 0. Only this variable is set: a job submitted later from this process
        # gets its own from the launcher (submitit overwrites it), never a port or rank.
        os.environ.setdefault("LOCAL_RANK", "0")
        self.engine, self.ds_optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=optimizer, config=self.config, dist_init_required=False
        )
        self._last_norm = torch.zeros(())

    # -- the update ----------------------------------------------------------------
    def forward(self, obs: Any, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.precision in ("bf16", "bf16_weights"):
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                logp, ent, value = self.engine(obs, action)
            return logp.float(), ent.float(), value.float()
        return self.engine(obs, action)

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """Autocast with 16-bit weights (their matrix products need 16-bit inputs)."""
        if self.precision == "bf16_weights":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return super().inference()

    def zero_grad(self) -> None:
        """DeepSpeed zeroes the gradients itself after each optimizer step."""

    def backward(self, loss: Tensor) -> None:
        # the engine divides by gradient_accumulation_steps (= micro_batches) itself
        self.engine.backward(loss)
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # counts the micro-step; the optimizer waits for the boundary

    def optimizer_step(self, loss_finite: bool = True) -> Tensor:
        """Reduce over ranks, clip at ``algo.max_grad_norm`` and step (DeepSpeed does all three).

        Non-finite loss or gradients (eqmarl.train.nonfinite): ZeRO stages 1-2 skip such a
        step themselves (their overflow check); at stage 0 the step is taken and undone
        (the torch optimizer's state is kept before it, as in ``single``); stage 3 cannot
        undo it and stops the run.
        """
        bad_loss = self.any_rank(not loss_finite)
        if self.zero_stage == 0:  # the gradients are reduced into .grad at the boundary: check them first
            norm = grad_norm(self._params)
            self.skipped = self.any_rank(bad_loss or not bool(torch.isfinite(norm)))
            undo = self._take() if self.skipped else None
            if not self.skipped:
                self.snapshot()
            self.engine.step()  # also when skipped: DeepSpeed counts its steps and zeroes the gradients
            if undo is not None:
                self._restore(undo)
            self._last_norm = norm.detach().float().cpu()
            return self._last_norm
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        self._last_norm = torch.as_tensor(0.0 if norm is None else float(norm))
        overflow = bool(getattr(self.ds_optimizer, "overflow", False))  # ZeRO 1-2 skipped the step
        self.skipped = self.any_rank(bad_loss or overflow or not bool(torch.isfinite(self._last_norm)))
        if self.skipped and not overflow:
            self.rollback()  # stages 1-3 cannot undo a step: stops the run
        return self._last_norm

    @property
    def can_rollback(self) -> bool:  # type: ignore[override]
        return self.zero_stage == 0

    def rollback(self) -> None:
        if not self.can_rollback:
            from eqmarl.train.nonfinite import NonFiniteError

            raise NonFiniteError(
                f"a non-finite optimizer step cannot be undone with learner.zero_stage={self.zero_stage} "
                "(its optimizer state is sharded); the run stops here without writing a checkpoint. Likely causes: "
                "algo.lr too high or algo.max_grad_norm off; the newest checkpoint in the run dir is the last good one"
            )
        super().rollback()

    def set_lr(self, lr: float) -> None:
        for g in self.ds_optimizer.param_groups:
            g["lr"] = lr

    # -- collectives (RankCollectives) -------------------------------------------------
    def _collective_device(self) -> torch.device:
        return self.device

    # -- checkpoints -------------------------------------------------------------------
    def optimizer_state(self) -> dict[str, Any] | None:
        return None  # in DeepSpeed's sharded files

    def load_optimizer_state(self, state: dict[str, Any] | None, ckpt_dir: Path, tag: str | None) -> None:
        if tag is None:
            raise ValueError(
                "this checkpoint was not written by learner=deepspeed (no DeepSpeed files); "
                "resume it with the learner that wrote it"
            )
        path, _ = self.engine.load_checkpoint(str(Path(ckpt_dir) / "deepspeed"), tag=tag)
        if path is None:
            raise FileNotFoundError(f"DeepSpeed checkpoint {tag} not found under {Path(ckpt_dir) / 'deepspeed'}")

    def save_sharded(self, ckpt_dir: Path, iteration: int, keep: int) -> str | None:
        tag = f"iter_{iteration:06d}"
        ds_dir = Path(ckpt_dir) / "deepspeed"
        self.engine.save_checkpoint(str(ds_dir), tag=tag)
        self._dist.barrier()
        if self.rank == 0:  # keep the newest `keep` tags, like the ckpt_*.pt files
            tags = sorted(p for p in ds_dir.iterdir() if p.is_dir() and p.name.startswith("iter_"))
            for old in tags[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return tag

    def plain_state_dict(self) -> dict[str, Tensor]:
        """Full fp32 parameters on every rank (ZeRO-3 gathers its shards)."""
        if self.zero_stage == 3:
            params = list(self.module.parameters())
            with self._deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}
