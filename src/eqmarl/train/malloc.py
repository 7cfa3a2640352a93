"""Keep freed memory in the process heap instead of returning it to the OS.

PyTorch's CPU allocator uses the C library's ``malloc``.  glibc serves every block above
its mmap threshold (128 KiB at start, adapting up to 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` on free, so a training step that allocates and frees the same
few-MB activation tensors hundreds of times pays a page fault for every 4 KiB page of
each one, every time.  The graph encoders' edge tensors (``[batch, N, N-1, H]``, ~7 MB
per tensor at the default's minibatch) are the worst case: measured on a 2-core CPU,
one E2GN2 Adam step drops from ~300 ms to ~195 ms, an MLP step from ~56 ms to ~47 ms
(``benchmarks/train_throughput.py`` reports the whole loop).

:func:`tune_malloc` raises the mmap threshold to its maximum (32 MiB) and keeps up to
1 GiB of freed memory in the heap (trim threshold), so blocks are reused without
faults.  It only runs on glibc (Linux); elsewhere it does nothing.  Set
``EQMARL_MALLOC_TUNE=0`` to leave malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum on 64-bit
TRIM_THRESHOLD = 1024 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024


@functools.cache
def tune_malloc() -> bool:
    """Apply the settings once per process (cached); True if glibc accepted them."""
    if os.environ.get("EQMARL_MALLOC_TUNE", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (M_TOP_PAD, TOP_PAD),
        )
    )
    return ok
