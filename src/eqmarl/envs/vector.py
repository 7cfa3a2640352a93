"""A worker-process pool that vectorizes unbatched environments.

:class:`ProcessVectorEnv` runs ``num_envs`` single (unbatched) environments spread over
``workers`` processes.  Each env slot is built inside its worker by a picklable factory
(a module-level class or function, or a :func:`functools.partial` of one).  The object
it returns must provide:

* ``reset(seed: int | None) -> dict[str, np.ndarray]``: reset, return a *record*;
* ``step(action: np.ndarray) -> dict[str, np.ndarray]``: step (autoreset inside), return
  a record;
* optionally ``close()``.

Records of ``reset`` and ``step`` must have the same keys, and every key the same shape
and dtype on every call (``reset`` returns a step record of a fresh episode), so that the
pool can stack them: :meth:`ProcessVectorEnv.step` returns ``{key: array[num_envs, ...]}``.

Crashes: a worker that dies (killed, segfault, out of memory) is detected on the next
call (``EOFError``/``BrokenPipeError`` on its pipe, or a dead process), restarted, its
envs rebuilt from their factories and reset with the seeds they were last reset with.
The records of those slots in that call are the reset records, the ``restarted`` mask
returned by :meth:`ProcessVectorEnv.step` marks them, and :attr:`ProcessVectorEnv.restarts`
counts restarts.  A worker that does not answer within ``timeout`` seconds counts as hung:
it is killed and restarted the same way, and :attr:`ProcessVectorEnv.timeouts` counts it
(the restart is counted in ``restarts`` too).  An exception raised by an env's own code is not a crash: it is re-raised
in the parent as :class:`WorkerError`.

Workers are started with the ``forkserver`` context by default: the server process imports
the ``preload`` modules once and every worker is forked from it, which makes (re)starting
a worker cheap.  As with any non-``fork`` start method, scripts that build a pool must
guard their entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

EnvFactory = Callable[[], Any]
Record = dict[str, np.ndarray]


class WorkerError(RuntimeError):
    """An env raised inside a worker process (the worker itself is still alive)."""


class WorkerCrash(RuntimeError):
    """A worker process died or stopped answering."""


def _stack(records: list[Record]) -> Record:
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


def _worker(conn: Connection, env_fns: list[EnvFactory], threads: int) -> None:
    """Worker loop: build the envs of one slice and serve ``reset``/``step``/``close``."""
    try:  # keep the worker from oversubscribing the (few) CPU cores
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    envs: list[Any] = []
    try:
        envs = [fn() for fn in env_fns]
        while True:
            try:
                cmd, data = conn.recv()
            except (EOFError, KeyboardInterrupt):
                break
            out: Any
            try:
                if cmd == "step":
                    out = _stack([env.step(a) for env, a in zip(envs, data)])
                elif cmd == "reset":
                    out = _stack([env.reset(s) for env, s in zip(envs, data)])
                elif cmd == "call":  # a method of every env of the slice, one argument tuple each
                    name, args = data
                    out = [getattr(env, name)(*a) for env, a in zip(envs, args)]
                elif cmd == "close":
                    conn.send(("ok", None))
                    break
                else:
                    raise ValueError(f"unknown command {cmd!r}")
            except Exception:  # an env error: report it, keep serving
                conn.send(("error", traceback.format_exc()))
                continue
            conn.send(("ok", out))
    except (BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        pass
    except Exception:  # env construction failed
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.send(("error", traceback.format_exc()))
    finally:
        for env in envs:
            close = getattr(env, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        conn.close()


class ProcessVectorEnv:
    """``num_envs`` unbatched envs stepped in ``workers`` processes (see module docstring).

    Args:
        env_fns: one picklable zero-argument factory per env slot.
        workers: number of worker processes (at most ``len(env_fns)``); slots are split
            into contiguous slices, slot ``i`` lives in worker ``i * workers // num_envs``.
        context: multiprocessing start method, ``"forkserver"`` or ``"spawn"``.
        preload: modules the forkserver imports once before forking workers.
        threads: torch threads per worker.
        timeout: seconds to wait for one answer of a worker before it counts as hung
            (then it is killed and restarted); None waits forever.
        max_restarts: consecutive failed restarts of one worker before giving up.
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        workers: int = 2,
        context: str = "forkserver",
        preload: Sequence[str] = (),
        threads: int = 1,
        timeout: float | None = 120.0,
        max_restarts: int = 3,
    ) -> None:
        if not env_fns:
            raise ValueError("ProcessVectorEnv needs at least one env factory")
        if context not in ("forkserver", "spawn"):
            raise ValueError(f"context={context!r}; allowed: forkserver, spawn")
        self._closed = True  # until the workers are up (so __del__ is safe)
        self.env_fns = list(env_fns)
        self.num_envs = len(self.env_fns)
        self.num_workers = max(1, min(int(workers), self.num_envs))
        self.timeout = timeout
        self.max_restarts = max_restarts
        self.threads = threads
        self.restarts = 0
        self.timeouts = 0  # workers killed for not answering within ``timeout`` seconds
        self._ctx: Any = mp.get_context(context)  # the chosen start method's context (Process, Pipe)
        if context == "forkserver" and preload:
            # Only honoured before the (process-wide) fork server starts.
            self._ctx.set_forkserver_preload(list(preload))
        bounds = [i * self.num_envs // self.num_workers for i in range(self.num_workers + 1)]
        self._slices = [slice(bounds[w], bounds[w + 1]) for w in range(self.num_workers)]
        self._seeds: list[int | None] = [None] * self.num_envs
        self._procs: list[Any] = [None] * self.num_workers
        self._conns: list[Connection | None] = [None] * self.num_workers
        self._closed = False
        try:
            for w in range(self.num_workers):
                self._start(w)
        except BaseException:
            self.close()
            raise

    # -- process management ------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [p.pid for p in self._procs if p is not None]

    def _start(self, w: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker,
            args=(child, self.env_fns[self._slices[w]], self.threads),
            name=f"eqmarl-env-worker-{w}",
            daemon=True,
        )
        proc.start()
        child.close()  # the worker holds the other end; EOF reaches us when it dies
        self._procs[w], self._conns[w] = proc, parent

    def _stop(self, w: int, graceful: bool) -> None:
        proc, conn = self._procs[w], self._conns[w]
        if conn is not None:
            if graceful and proc is not None and proc.is_alive():
                try:
                    conn.send(("close", None))
                    if conn.poll(2.0):
                        conn.recv()
                except (OSError, EOFError):
                    pass
            conn.close()
        if proc is not None:
            proc.join(timeout=2.0 if graceful else 0.5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2.0)
            if proc.is_alive():  # pragma: no cover - terminate should do
                proc.kill()
                proc.join()
            proc.close()
        self._procs[w], self._conns[w] = None, None

    def _send(self, w: int, msg: tuple[str, Any]) -> bool:
        conn = self._conns[w]
        if conn is None:
            return False
        try:
            conn.send(msg)
            return True
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError):
            return False

    def _recv(self, w: int) -> Any:
        """Answer of worker ``w``; raises :class:`WorkerCrash` if it died or hung."""
        conn, proc = self._conns[w], self._procs[w]
        if conn is None or proc is None:
            raise WorkerCrash(f"env worker {w} is not running")
        start = time.monotonic()
        try:
            while not conn.poll(1.0):
                if not proc.is_alive():
                    raise WorkerCrash(f"env worker {w} (pid {proc.pid}) died")
                if self.timeout is not None and time.monotonic() - start > self.timeout:
                    self.timeouts += 1
                    raise WorkerCrash(f"env worker {w} (pid {proc.pid}) timed out")
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError, OSError) as e:
            raise WorkerCrash(f"env worker {w} (pid {proc.pid}) died: {e!r}") from e
        if status == "error":
            raise WorkerError(f"env worker {w} raised:\n{payload}")
        return payload

    def _restart(self, w: int) -> Record:
        """Restart worker ``w``; rebuild and reset its envs with their seeds."""
        last: Exception | None = None
        for _ in range(self.max_restarts):
            self._stop(w, graceful=False)
            self.restarts += 1
            self._start(w)
            if self._send(w, ("reset", self._seeds[self._slices[w]])):
                try:
                    return self._recv(w)
                except WorkerCrash as e:
                    last = e
        raise WorkerCrash(f"env worker {w} failed {self.max_restarts} restarts") from last

    def _call(self, cmd: str, per_worker: list[Any]) -> tuple[Record, np.ndarray]:
        if self._closed:
            raise RuntimeError("ProcessVectorEnv is closed")
        sent = [self._send(w, (cmd, per_worker[w])) for w in range(self.num_workers)]
        outs: list[Record] = []
        restarted = np.zeros(self.num_envs, dtype=bool)
        error: WorkerError | None = None
        for w in range(self.num_workers):
            try:
                if not sent[w]:
                    raise WorkerCrash(f"env worker {w} is gone")
                outs.append(self._recv(w))
            except WorkerCrash:
                outs.append(self._restart(w))
                restarted[self._slices[w]] = True
            except WorkerError as e:  # collect the other answers first: pipes stay in sync
                error = error or e
                outs.append({})
        if error is not None:
            raise error
        keys = outs[0].keys()
        return {k: np.concatenate([o[k] for o in outs]) for k in keys}, restarted

    # -- interface -----------------------------------------------------------------
    def reset(self, seeds: Sequence[int | None] | None = None) -> Record:
        """Reset every env (slot ``i`` with ``seeds[i]``); returns stacked records."""
        if seeds is None:
            seeds = [None] * self.num_envs
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        for i, s in enumerate(seeds):
            if s is not None:
                self._seeds[i] = int(s)
        out, _ = self._call("reset", [list(seeds[sl]) for sl in self._slices])
        return out

    def step(self, actions: np.ndarray | Sequence[Any]) -> tuple[Record, np.ndarray]:
        """Step every env with ``actions[i]``.

        Returns:
            ``(records, restarted)``: stacked records ``{key: [num_envs, ...]}`` and a
            ``[num_envs]`` bool mask of slots whose worker was restarted during this
            call (their records are fresh reset records, the action was not applied).
        """
        if len(actions) != self.num_envs:
            raise ValueError(f"got {len(actions)} actions for {self.num_envs} envs")
        return self._call("step", [actions[sl] for sl in self._slices])

    def call(self, method: str, args: Sequence[tuple[Any, ...]] | None = None) -> list[Any]:
        """Call ``method`` on every env slot (slot ``i`` with ``*args[i]``); their answers in slot order.

        Unlike :meth:`step`, a crashed or hung worker is not restarted here: it is stopped
        (the next :meth:`step` restarts it and reports its slots as restarted) and
        :class:`WorkerCrash` is raised (the caller's request was not served).
        """
        if self._closed:
            raise RuntimeError("ProcessVectorEnv is closed")
        if args is None:
            args = [()] * self.num_envs
        if len(args) != self.num_envs:
            raise ValueError(f"got {len(args)} argument tuples for {self.num_envs} envs")
        sent = [self._send(w, ("call", (method, list(args[sl])))) for w, sl in enumerate(self._slices)]
        out: list[Any] = []
        error: Exception | None = None
        for w in range(self.num_workers):
            try:
                if not sent[w]:
                    raise WorkerCrash(f"env worker {w} is gone")
                out.extend(self._recv(w))
            except WorkerCrash as e:  # a late answer must not reach the next step: stop it now
                self._stop(w, graceful=False)
                error = error or e
            except WorkerError as e:  # read the other answers first: pipes stay in sync
                error = error or e
        if error is not None:
            raise error
        return out

    @property
    def seeds(self) -> list[int | None]:
        """Each slot's last reset seed (a restarted worker resets its envs with them)."""
        return list(self._seeds)

    @seeds.setter
    def seeds(self, seeds: Sequence[int | None]) -> None:
        self._seeds = list(seeds)

    def close(self) -> None:
        """Stop every worker and reap it (idempotent)."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for w in range(len(self._procs)):
            try:
                self._stop(w, graceful=True)
            except Exception:  # pragma: no cover - best effort at shutdown
                pass

    def __enter__(self) -> ProcessVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
