"""Process-wide settings that make torch on a CPU fast: keep large freed buffers for reuse.

glibc's malloc serves every request above its mmap threshold (dynamic, from 128 KiB) with a fresh
`mmap` and returns it with `munmap` on free, and it trims the top of the heap back to the OS
whenever more than its trim threshold is free. A policy's activations at batch 32 are buffers of
several MB allocated and freed at every call, so each call page-faults them in anew: the
`default` campaign took 54 million minor page faults and 103 s of system time in 9 minutes
(`/usr/bin/time -v`). Raising both thresholds keeps those buffers in the heap: the vision tower
runs 1.6x faster and `act` 1.17x (BENCHMARKS.md, "Policy"). Peak memory is unchanged (the same
buffers are live at once); memory freed after a peak is kept by the process instead of returned.

`MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` in the environment (glibc's own variables)
or `AUTODIDACT_MALLOC=default` leave malloc as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 32 << 20
"""Requests up to 32 MiB (glibc's largest allowed threshold on 64-bit) come from the heap."""
TRIM_THRESHOLD = 1 << 30
"""Return freed heap memory to the OS only when more than 1 GiB of it is free at the top."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

_tuned: bool | None = None


def tune_allocator() -> bool:
    """Raise glibc malloc's mmap and trim thresholds (once per process); True if applied."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if (
        not sys.platform.startswith("linux")
        or os.environ.get("AUTODIDACT_MALLOC") == "default"
        or "MALLOC_MMAP_THRESHOLD_" in os.environ
        or "MALLOC_TRIM_THRESHOLD_" in os.environ
    ):
        return _tuned
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return _tuned
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned
