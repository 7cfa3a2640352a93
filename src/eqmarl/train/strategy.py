"""The ``single`` and ``ddp`` learners: how a loss becomes a parameter update.

``single`` is one process.  ``ddp`` is data parallel over ranks (one process each,
torch.distributed: NCCL on GPUs, gloo on CPU): every rank collects its own rollouts,
gradients are averaged over ranks before the optimizer step, so all ranks keep
identical parameters.  Both implement :class:`eqmarl.train.learners.Learner` (the
contract the trainer codes against; ``learners.py`` also builds them by name); only the
learners and ``eqmarl.launch`` touch torch.distributed.

Why ``ddp`` averages gradients itself (one flat all-reduce after backward) rather than
through ``torch.nn.parallel.DistributedDataParallel``: the trainer's update calls
``policy.evaluate``, not ``forward``, so DDP would need a wrapper module whose
``forward`` is ``evaluate`` plus ``find_unused_parameters`` for parameters a rank did
not use (the flat version zero-fills them); and it buys nothing measurable at these
model sizes.  ``benchmarks/grad_allreduce.py`` (2 gloo CPU ranks, the default E2GN2
policy, 29k parameters, one 1,875-frame minibatch step; ``docs/results/grad_allreduce.json``)
measured the same median step time for both and bit-identical parameters after the
steps: the step is dominated by the forward/backward, and a 115 KB all-reduce is one
message either way.  DDP's bucketing and overlap pay off for large models, which is
where ``learner=deepspeed`` comes in.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class SingleStrategy:
    """``learner=single``: one process; backward, clip the global grad norm, Adam step.

    The collective helpers (``all_reduce_sum``, ``any_rank``, ...) are identities here,
    so the trainer calls them unconditionally.

    One optimizer step may accumulate ``micro_batches`` equal micro-batches: the trainer
    calls :meth:`zero_grad`, then :meth:`forward` and :meth:`backward` per micro-batch
    (each loss a micro-batch mean; :meth:`backward` divides it by ``micro_batches``, so
    the gradient is the minibatch mean's), then :meth:`optimizer_step`.

    Args:
        module: the policy.
        optimizer: its optimizer.
        max_grad_norm: global gradient-norm clip (``algo.max_grad_norm``; <= 0: off).
        micro_batches: micro-batches per optimizer step (``learner.micro_batches``).
        keep_snapshots: keep the parameters and optimizer state before each step, so
            :meth:`rollback` can undo it (``train.rollback_nonfinite``); without the copy
            a step that must be undone stops the run instead.
    """

    rank = 0
    world_size = 1

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float,
        *,
        micro_batches: int = 1,
        keep_snapshots: bool = True,
    ) -> None:
        self.module = module
        self.optimizer = optimizer
        self.max_grad_norm = max_grad_norm
        self.micro_batches = micro_batches
        self.keep_snapshots = keep_snapshots
        self.skipped = False
        self._last: tuple[list[Tensor], dict[Any, Any]] | None = None
        self._params = [p for p in module.parameters() if p.requires_grad]

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def step(self, loss: Tensor) -> Tensor:
        """Apply one update from one loss; returns the gradient norm before clipping.

        A shorthand for tests and benchmarks, not part of the
        :class:`~eqmarl.train.learners.Learner` contract (the trainer drives
        :meth:`zero_grad`, :meth:`backward` and :meth:`optimizer_step` itself).
        """
        self.zero_grad()
        self.backward(loss * self.micro_batches)
        return self.optimizer_step()

    def forward(self, obs: Any, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The policy's ``evaluate(obs, action)``: log-prob, entropy, value."""
        return self.module.evaluate(obs, action)  # type: ignore[operator]

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: Tensor) -> None:
        """Accumulate the gradient of one micro-batch's mean loss."""
        (loss / self.micro_batches).backward()

    def optimizer_step(self, loss_finite: bool = True) -> Tensor:
        """Reduce, clip and apply the accumulated gradients; the norm before clipping.

        The step is skipped on every rank (``self.skipped``) when ``loss_finite`` is False on
        any rank or the gradient norm is not finite; before an applied step the parameters
        and optimizer state are kept, so :meth:`rollback` can undo it.
        """
        self.reduce_gradients()
        if self.max_grad_norm > 0:
            gn = nn.utils.clip_grad_norm_(self._params, self.max_grad_norm, foreach=True)
        else:
            gn = grad_norm(self._params)
        self.skipped = self.any_rank(not (loss_finite and bool(torch.isfinite(gn))))
        if self.skipped:
            self.zero_grad()
            return gn
        self.snapshot()
        self.optimizer.step()
        return gn

    # -- undoing a step (eqmarl.train.nonfinite) --
    can_rollback = True

    def _take(self) -> tuple[list[Tensor], dict[Any, Any]]:
        state = {
            p: {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in st.items()}
            for p, st in self.optimizer.state.items()
        }
        return [p.detach().clone() for p in self._params], state

    def _restore(self, snap: tuple[list[Tensor], dict[Any, Any]]) -> None:
        params, state = snap
        with torch.no_grad():
            for s, p in zip(params, self._params):
                p.copy_(s)
        self.optimizer.state.clear()
        self.optimizer.state.update(
            {p: {k: v.clone() if isinstance(v, Tensor) else v for k, v in st.items()} for p, st in state.items()}
        )

    def snapshot(self) -> None:
        """Keep the parameters and optimizer state (before a step)."""
        if self.keep_snapshots:
            self._last = self._take()

    def rollback(self) -> None:
        """Restore the parameters and optimizer state of the last :meth:`snapshot`."""
        if self._last is not None:
            self._restore(self._last)
        elif not self.keep_snapshots:
            from eqmarl.train.nonfinite import NonFiniteError

            raise NonFiniteError(
                "an optimizer step made the parameters non-finite and cannot be undone "
                "(train.rollback_nonfinite=false keeps no copy of the model state); the run stops here without "
                "writing a checkpoint. Likely causes: algo.lr too high or algo.max_grad_norm off; the newest "
                "checkpoint in the run dir is the last good one"
            )

    def set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr

    # -- checkpoints: the plain format (one file with everything; see Trainer.save) --
    def optimizer_state(self) -> dict[str, Any] | None:
        """The optimizer's state for the trainer's checkpoint file (None: kept elsewhere)."""
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any] | None, ckpt_dir: Path, tag: str | None) -> None:
        """Restore :meth:`optimizer_state` (``ckpt_dir``/``tag``: a sharded learner's files)."""
        if state is None:
            raise ValueError(
                f"this checkpoint keeps its optimizer in a sharded learner's files (tag {tag}); "
                f"resume it with the learner that wrote it (learner=deepspeed)"
            )
        self.optimizer.load_state_dict(state)

    def save_sharded(self, ckpt_dir: Path, iteration: int, keep: int) -> str | None:
        """Write a sharded learner's files (every rank calls it); the tag, or None."""
        return None

    def plain_state_dict(self) -> dict[str, Tensor]:
        """The full policy parameters as a plain state dict (every rank calls it)."""
        return self.module.state_dict()

    def inference(self) -> contextlib.AbstractContextManager[Any]:
        """The context rollouts and evaluations run the policy in (16-bit weights need autocast)."""
        return contextlib.nullcontext()

    def reduce_gradients(self) -> None:
        """Hook for distributed strategies (all-reduce); nothing to do for one process."""

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        """Sum a tensor over ranks (identity here)."""
        return x

    def all_reduce_mean(self, x: Tensor) -> Tensor:
        """Average a tensor over ranks (identity here)."""
        return x

    def all_gather_cat(self, x: Tensor) -> Tensor:
        """Concatenate every rank's ``x`` (same shape on all ranks) along dim 0, in rank order."""
        return x

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (a stop request, ...)."""
        return flag

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's picklable ``obj`` as a list on rank 0 (None on the other ranks)."""
        return [obj]


def grad_norm(params: Sequence[Tensor]) -> Tensor:
    """The global 2-norm of the parameters' gradients (0 when there are none)."""
    norms = [torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


class RankCollectives:
    """The collectives over the ranks of an initialized process group (``self._dist``),
    shared by the distributed strategies; ``_collective_device`` says where small
    tensors live (NCCL needs them on the GPU)."""

    _dist: Any
    rank: int
    world_size: int

    def _collective_device(self) -> torch.device:
        raise NotImplementedError

    def all_reduce_sum(self, x: Tensor) -> Tensor:
        y = x.detach().clone()
        self._dist.all_reduce(y, op=self._dist.ReduceOp.SUM)
        return y

    def all_reduce_mean(self, x: Tensor) -> Tensor:
        return self.all_reduce_sum(x) / self.world_size

    def all_gather_cat(self, x: Tensor) -> Tensor:
        x = x.detach().contiguous()
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        self._dist.all_gather(parts, x)
        return torch.cat(parts)

    def any_rank(self, flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=self._collective_device())
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def gather_objects(self, obj: Any) -> list[Any] | None:
        out: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0)
        return out


class DdpStrategy(RankCollectives, SingleStrategy):
    """Data parallel over the ranks of an initialized ``torch.distributed`` process group.

    Parameters are broadcast from rank 0 at construction; after every backward the
    gradients are flattened into one buffer, all-reduced and divided by the world size
    (the gradient of the mean loss over all ranks' minibatches), then clipped and
    applied identically on every rank.  The effective batch is the per-rank batch times
    the world size.
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float,
        *,
        micro_batches: int = 1,
        keep_snapshots: bool = True,
    ) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "learner.name=ddp needs an initialized torch.distributed process group: run it as a SLURM job "
                "with several ranks (python launch.py -m cluster=slurm cluster.nodes=2) or under torchrun; "
                "use learner=single for one process"
            )
        super().__init__(module, optimizer, max_grad_norm, micro_batches=micro_batches, keep_snapshots=keep_snapshots)
        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def reduce_gradients(self) -> None:
        """Average the gradients over ranks (one flat all-reduce)."""
        for p in self._params:
            if p.grad is None:  # a parameter unused on this rank still takes part
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self._params if p.grad is not None]  # all of them, after the loop above
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._dist.all_reduce(flat, op=self._dist.ReduceOp.SUM)
        flat /= self.world_size
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    def _collective_device(self) -> torch.device:
        return self._params[0].device if self._params else torch.device("cpu")


def init_distributed(backend: str, timeout_s: float, device: torch.device) -> tuple[int, int]:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT``.

    The launcher exports those variables (``eqmarl.launch.job`` does it from the SLURM
    environment through submitit; torchrun sets them itself).

    Args:
        backend: ``auto`` (nccl when ``device`` is CUDA, else gloo), ``nccl`` or ``gloo``.
        timeout_s: how long a collective waits for the other ranks.
        device: this rank's training device.

    Returns:
        (rank, world size).
    """
    import torch.distributed as dist

    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type == "cuda":
        torch.cuda.set_device(
            device.index
            if device.index is not None
            else int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        )
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def destroy_distributed() -> None:
    """Leave the process group (no-op when none was joined)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
