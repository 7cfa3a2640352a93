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
counts restarts.  An exception raised by an env's own code is not a crash: it is re-raised
in the parent as :class:`WorkerError`.

Hangs: every exchange with a worker (:meth:`~ProcessVectorEnv.reset`,
:meth:`~ProcessVectorEnv.step`, :meth:`~ProcessVectorEnv.call`,
:meth:`~ProcessVectorEnv.close`) is bounded: sending the request may take ``timeout``
seconds, and the answer must be complete ``timeout`` seconds after the request was sent
(requests go to all workers first, so their answers are awaited together).  The pipe's
socket carries send and receive timeouts, so neither a request too large for the socket
buffer nor an answer cut off half-way (a worker stopped with SIGSTOP mid-write) can block
the parent.  A worker that misses its deadline counts as hung: it is killed with SIGKILL
(SIGTERM does not end a stopped process), :attr:`ProcessVectorEnv.timeouts` counts it,
and it is restarted like a crashed one (the restart is counted in ``restarts`` too;
after a failed :meth:`~ProcessVectorEnv.call` at the next step, or at once through
:meth:`~ProcessVectorEnv.revive`).  A newly started worker's first answer may take
``STARTUP_GRACE_S`` longer (it imports the main module and builds its envs first).
:meth:`~ProcessVectorEnv.close` kills a worker that does not finish within ``timeout``,
and every pool still open when the interpreter exits is closed before
:mod:`multiprocessing`'s own exit hook, which would otherwise wait forever on a stopped
daemon worker.

Workers are started with the ``forkserver`` context by default: the server process imports
the ``preload`` modules once and every worker is forked from it, which makes (re)starting
a worker cheap.  As with any non-``fork`` start method, scripts that build a pool must
guard their entry point with ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import multiprocessing.util  # its exit hook is registered first, so ours (at the end) runs before it
import os
import socket
import struct
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np

from eqmarl.core.log import get_logger

log = get_logger("envs")

EnvFactory = Callable[[], Any]
Record = dict[str, np.ndarray]

# seconds a worker that began its answer by the deadline may take to deliver the rest
# (its last bytes may still be in flight); then it counts as hung as well
ANSWER_GRACE_S = 0.5
# seconds :meth:`ProcessVectorEnv.close` waits for workers when ``timeout`` is None
CLOSE_WAIT_S = 10.0
# seconds a newly (re)started worker may take on top of ``timeout`` for its first answer:
# it imports the parent's main module (multiprocessing's start methods do; a script that
# imports hydra and eqmarl takes seconds) and builds its envs before it answers (not if
# it is stopped: that is no start-up)
STARTUP_GRACE_S = 60.0


class WorkerError(RuntimeError):
    """An env raised inside a worker process (the worker itself is still alive)."""


class WorkerCrash(RuntimeError):
    """A worker process died or stopped answering."""


def _stack(records: list[Record]) -> Record:
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


def _worker(conn: Connection, env_fns: list[EnvFactory], threads: int) -> None:
    """Worker loop: build the envs of one slice and serve ``reset``/``step``/``call``/``close``."""
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


def _stopped(pid: int | None) -> bool:
    """The process is stopped (SIGSTOP, SIGTSTP, a tracer): state ``T`` or ``t`` in
    ``/proc/<pid>/stat`` (False where that cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t")
    except (OSError, IndexError):
        return False


def _timeval(seconds: float) -> bytes:
    """``struct timeval`` of ``seconds`` for ``SO_SNDTIMEO``/``SO_RCVTIMEO`` (at least 1 ms: 0 means never)."""
    seconds = max(seconds, 1e-3)
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


class ProcessVectorEnv:
    """``num_envs`` unbatched envs stepped in ``workers`` processes (see module docstring).

    Args:
        env_fns: one picklable zero-argument factory per env slot.
        workers: number of worker processes (at most ``len(env_fns)``); slots are split
            into contiguous slices, slot ``i`` lives in worker ``i * workers // num_envs``.
        context: multiprocessing start method, ``"forkserver"`` or ``"spawn"``.
        preload: modules the forkserver imports once before forking workers.
        threads: torch threads per worker.
        timeout: seconds a worker may take to read a request, and to answer it from when
            it was sent, before it counts as hung (then it is killed and restarted; see the
            module docstring); None waits forever (except in :meth:`close`).
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
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout={timeout!r}; allowed: a number of seconds > 0, or None")
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
        # a second handle on each pipe's socket, to set its send/receive timeouts
        self._socks: list[socket.socket | None] = [None] * self.num_workers
        # workers that have not answered yet since they started (see STARTUP_GRACE_S)
        self._starting = [False] * self.num_workers
        # when each worker's answer is due (its request's send time + timeout; None: never)
        self._due: list[float | None] = [None] * self.num_workers
        self._closed = False
        _OPEN_POOLS.add(self)
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
        self._starting[w] = True
        try:  # duplex pipes are socket pairs; without one, the poll deadline still bounds the wait
            sock = socket.socket(fileno=os.dup(parent.fileno()))
            sock.settimeout(None)  # blocking, whatever socket.setdefaulttimeout says
            self._socks[w] = sock
        except OSError:  # pragma: no cover - not a socket (another platform's pipe)
            self._socks[w] = None

    def _deadline(self, w: int) -> float | None:
        """When an exchange with worker ``w`` starting now is due (None: no timeout); a
        worker's first answer after its start gets STARTUP_GRACE_S more."""
        if self.timeout is None:
            return None
        return time.monotonic() + self.timeout + (STARTUP_GRACE_S if self._starting[w] else 0.0)

    def _bound_io(self, w: int, deadline: float | None, grace: float = 0.0) -> None:
        """Make the socket operations of worker ``w``'s pipe give up at ``deadline`` (+ ``grace``)."""
        sock = self._socks[w]
        if sock is None:
            return
        tv = struct.pack("ll", 0, 0) if deadline is None else _timeval(deadline + grace - time.monotonic())
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)

    def _kill(self, w: int) -> None:
        """Kill worker ``w`` at once (SIGKILL: it also ends a stopped process) and reap it."""
        proc, conn, sock = self._procs[w], self._conns[w], self._socks[w]
        self._procs[w], self._conns[w], self._socks[w] = None, None, None
        for handle in (conn, sock):
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        if proc is not None:
            with contextlib.suppress(Exception):
                if proc.is_alive():
                    proc.kill()
                proc.join(timeout=5.0)
                proc.close()

    def _hung(self, w: int, what: str) -> WorkerCrash:
        """Count worker ``w`` as hung, kill it; the error to raise."""
        proc = self._procs[w]
        pid = proc.pid if proc is not None else "?"
        self.timeouts += 1
        self._kill(w)
        error = WorkerCrash(f"env worker {w} (pid {pid}) timed out after {self.timeout} s ({what}); killed")
        log.warning(f"{error} (counted in env_timeouts; a live pool restarts it)")
        return error

    def _send(self, w: int, msg: tuple[str, Any]) -> WorkerCrash | None:
        """Send ``msg`` to worker ``w`` and start the wait for its answer; None when sent,
        else why not (it is gone, or it hung and was killed and counted)."""
        conn = self._conns[w]
        if conn is None:
            return WorkerCrash(f"env worker {w} is not running")
        buf = ForkingPickler.dumps(msg)  # what ``conn.send`` would write
        self._bound_io(w, self._deadline(w))
        try:
            conn.send_bytes(buf)
        except BlockingIOError:  # the socket's send timeout: the worker stopped reading
            return self._hung(w, "sending the request")
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as e:
            return WorkerCrash(f"env worker {w} is gone: {e!r}")
        self._due[w] = self._deadline(w)
        return None

    def _recv(self, w: int) -> Any:
        """Answer of worker ``w`` to its last request; raises :class:`WorkerCrash` if it died or hung."""
        conn, proc, due = self._conns[w], self._procs[w], self._due[w]
        if conn is None or proc is None:
            raise WorkerCrash(f"env worker {w} is not running")
        try:
            while not conn.poll(1.0 if due is None else min(1.0, max(due - time.monotonic(), 0.0))):
                if not proc.is_alive():
                    raise WorkerCrash(f"env worker {w} (pid {proc.pid}) died")
                if due is not None and self._starting[w] and _stopped(proc.pid):
                    due -= STARTUP_GRACE_S  # a stopped worker is not starting up: no grace
                    self._starting[w] = False
                if due is not None and time.monotonic() >= due:
                    raise self._hung(w, "waiting for its answer")
            self._bound_io(w, due, grace=ANSWER_GRACE_S)
            status, payload = conn.recv()
            self._starting[w] = False
        except BlockingIOError:  # the socket's receive timeout: the answer stopped half-way
            raise self._hung(w, "reading its answer") from None
        except (EOFError, ConnectionResetError, BrokenPipeError, OSError) as e:
            raise WorkerCrash(f"env worker {w} (pid {proc.pid}) died: {e!r}") from e
        if status == "error":
            raise WorkerError(f"env worker {w} raised:\n{payload}")
        return payload

    def _restart(self, w: int) -> Record:
        """Restart worker ``w``; rebuild and reset its envs with their seeds."""
        last: Exception | None = None
        for _ in range(self.max_restarts):
            self._kill(w)
            self.restarts += 1
            self._start(w)
            last = self._send(w, ("reset", self._seeds[self._slices[w]]))
            if last is None:
                try:
                    return self._recv(w)
                except WorkerCrash as e:
                    last = e
        raise WorkerCrash(f"env worker {w} failed {self.max_restarts} restarts") from last

    def _call(self, cmd: str, per_worker: list[Any]) -> tuple[Record, np.ndarray]:
        if self._closed:
            raise RuntimeError("ProcessVectorEnv is closed")
        unsent = [self._send(w, (cmd, per_worker[w])) for w in range(self.num_workers)]
        outs: list[Record] = []
        restarted = np.zeros(self.num_envs, dtype=bool)
        error: WorkerError | None = None
        for w in range(self.num_workers):
            try:
                failed = unsent[w]
                if failed is not None:
                    raise failed
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

        Unlike :meth:`step`, a crashed or hung worker is not restarted here: it is killed
        (the next :meth:`step` restarts it and reports its slots as restarted, or
        :meth:`revive` does at once) and :class:`WorkerCrash` is raised (the caller's
        request was not served; the other workers' was).
        """
        if self._closed:
            raise RuntimeError("ProcessVectorEnv is closed")
        if args is None:
            args = [()] * self.num_envs
        if len(args) != self.num_envs:
            raise ValueError(f"got {len(args)} argument tuples for {self.num_envs} envs")
        unsent = [self._send(w, ("call", (method, list(args[sl])))) for w, sl in enumerate(self._slices)]
        out: list[Any] = []
        error: Exception | None = None
        for w in range(self.num_workers):
            try:
                failed = unsent[w]
                if failed is not None:
                    raise failed
                out.extend(self._recv(w))
            except WorkerCrash as e:  # a late answer must not reach the next step: stop it now
                self._kill(w)
                error = error or e
            except WorkerError as e:  # read the other answers first: pipes stay in sync
                error = error or e
        if error is not None:
            raise error
        return out

    def revive(self) -> tuple[np.ndarray, Record | None]:
        """Restart every worker a failed :meth:`call` left stopped (or that died since).

        Returns:
            ``(restarted, records)``: the ``[num_envs]`` bool mask of the slots whose worker
            was restarted, and their reset records stacked in slot order (None if none).
        """
        restarted = np.zeros(self.num_envs, dtype=bool)
        records: list[Record] = []
        for w in range(self.num_workers):
            proc = self._procs[w]
            if proc is not None and proc.is_alive():
                continue
            records.append(self._restart(w))
            restarted[self._slices[w]] = True
        if not records:
            return restarted, None
        return restarted, {k: np.concatenate([r[k] for r in records]) for k in records[0]}

    @property
    def seeds(self) -> list[int | None]:
        """Each slot's last reset seed (a restarted worker resets its envs with them)."""
        return list(self._seeds)

    @seeds.setter
    def seeds(self, seeds: Sequence[int | None]) -> None:
        self._seeds = list(seeds)

    def close(self) -> None:
        """Stop every worker and reap it (idempotent), within ``timeout`` seconds.

        Each worker is asked to close its envs and exit; one that has not exited by then is
        killed (and counted in :attr:`timeouts` if it never answered).
        """
        if getattr(self, "_closed", True):
            return
        self._closed = True
        _OPEN_POOLS.discard(self)
        if self.timeout is None:
            self.timeout = CLOSE_WAIT_S
        asked = [self._procs[w] is not None and self._send(w, ("close", None)) is None for w in range(len(self._procs))]
        for w, proc in enumerate(self._procs):
            if proc is None:
                continue
            try:
                if asked[w]:
                    self._recv(w)  # "ok": it closes its envs and exits
                    due = self._due[w]
                    proc.join(timeout=ANSWER_GRACE_S if due is None else max(due - time.monotonic(), ANSWER_GRACE_S))
            except WorkerCrash:  # hung (killed and counted) or died meanwhile
                pass
            except Exception:  # pragma: no cover - best effort at shutdown
                pass
            self._kill(w)

    def __enter__(self) -> ProcessVectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


# pools with live workers; closed at exit before multiprocessing's own hook joins their
# (daemon) workers, which never returns for a stopped one
_OPEN_POOLS: weakref.WeakSet[ProcessVectorEnv] = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_OPEN_POOLS):
        with contextlib.suppress(Exception):
            pool.close()
