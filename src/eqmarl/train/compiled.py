"""``train.compile``: the rollout's policy step and the PPO loss through ``torch.compile``.

Two phases are compiled whole (LeanRL's recipe; the optimizer step, the collectives and
the env stay eager):

* the policy step of the rollout (``policy.act``: graph encoders, action head, critic,
  sampling), and
* the loss of one PPO micro-batch (``learner.forward`` and the clipped loss terms), whose
  backward AOTAutograd compiles with it.

The policy has no host syncs and no data-dependent shapes on these paths (the graph
encoders skip their mask-free fast paths while compiling, with the same results), so
each phase is one graph.  Random ops keep torch's own generator
(``torch._inductor.config.fallback_random``): a compiled rollout draws the same actions
as an eager one, and a resumed run the same as an uninterrupted one.  Compilation
happens on the first calls; :attr:`CompiledPhase.compile_s` counts the seconds of the
calls that compiled, which the trainer reports apart from the training time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

import torch
from torch.utils._pytree import tree_map

# train.compile: none (eager) or a torch.compile mode ("reduce-overhead" adds CUDA graphs
# on a GPU; on a CPU it is the default mode)
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

P = ParamSpec("P")
R = TypeVar("R")


def _graphs_compiled() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class CompiledPhase(Generic[P, R]):
    """``fn`` compiled with ``torch.compile(mode=mode)``, or ``fn`` itself for ``none``.

    Args:
        fn: the phase.
        mode: one of :data:`COMPILE_MODES`.
    """

    def __init__(self, fn: Callable[P, R], mode: str) -> None:
        if mode not in COMPILE_MODES:
            raise ValueError(f"train.compile={mode!r}; allowed: {', '.join(COMPILE_MODES)}")
        self.mode = mode
        # seconds of the calls that compiled (and of the backward passes that followed them)
        self.compile_s = 0.0
        # the last call compiled a graph: its backward (compiled on first use) is timed too
        self.compiled_last_call = False
        self._fn: Callable[P, R] = fn
        if mode != "none":
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True  # torch's generator: the same draws as eager
            self._fn = torch.compile(fn, mode=None if mode == "default" else mode)

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if not self.enabled:
            return self._fn(*args, **kwargs)
        graphs = _graphs_compiled()
        start = time.perf_counter()
        out = self._fn(*args, **kwargs)
        if self.mode == "reduce-overhead":  # CUDA graphs reuse their output buffers on the next replay
            out = tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, out)
        self.compiled_last_call = _graphs_compiled() != graphs  # the first call, or a new shape
        if self.compiled_last_call:
            self.compile_s += time.perf_counter() - start
        return out

    def backward(self, run: Callable[[], None]) -> None:
        """Run ``run`` (the backward of the last call's output), timed as compilation when
        the last call compiled (AOTAutograd compiles the backward on its first use)."""
        if not self.compiled_last_call:
            run()
            return
        start = time.perf_counter()
        run()
        self.compile_s += time.perf_counter() - start
        self.compiled_last_call = False
