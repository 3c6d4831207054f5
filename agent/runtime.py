"""Process-wide settings that make torch on a CPU fast: keep large freed buffers for reuse.

glibc's malloc serves every request above its mmap threshold (dynamic, from 128 KiB) with a fresh
`mmap` and returns it with `munmap` on free, and it trims the top of the heap back to the OS
whenever more than its trim threshold is free. A policy's activations at batch 32 are buffers of
several MB allocated and freed at every call, so each call page-faults them in anew: the
`default` campaign took 54 million minor page faults and 103 s of system time in 9 minutes
(`/usr/bin/time -v`). Raising both thresholds keeps those buffers in the heap: `act` of
`tiny_vision` runs faster with far fewer page faults and peak memory barely moves (the same
buffers are live at once; BENCHMARKS.md, "Policy", has the figures); memory freed after a peak
is kept by the process instead of returned.

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


# ---- torch threads that follow the machine's load ----------------------------------------------

CHECK_INTERVAL_S = 2.0
"""`adapt_threads` re-decides at most this often (reading /proc costs ~0.1 ms)."""
FORCE_SAMPLES, FORCE_SAMPLE_GAP_S = 10, 0.02
"""`adapt_threads(force=True)` (at a stage's start) averages this many readings, this far apart."""
_SMOOTHING = 0.3
"""Weight of a new load sample in the moving average (samples come with the caller's steps)."""


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _own_running_threads() -> int:
    running = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as handle:
                    state = handle.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            running += state == "R"
    except OSError:
        return 1
    return max(1, running)


def other_runnable() -> float | None:
    """Threads of other processes runnable right now (/proc/stat `procs_running` minus this
    process's running threads); None where /proc is not there."""
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("procs_running"):
                    return max(0.0, float(line.split()[1]) - _own_running_threads())
    except OSError:
        return None
    return None


def requested_threads() -> int | None:
    """Threads fixed by the user: `AUTODIDACT_THREADS`, else `OMP_NUM_THREADS`; None for auto."""
    for name in ("AUTODIDACT_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name)
        if value:
            try:
                threads = int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r}; expected a positive integer") from None
            if threads < 1:
                raise ValueError(f"{name}={value!r}; expected a positive integer")
            return threads
    return None


class _Governor:
    def __init__(self) -> None:
        self.load: float | None = None
        self.checked = -float("inf")
        self.threads: int | None = None


_governor = _Governor()


def choose_threads(cpus: int, others: float) -> int:
    """Torch threads for `cpus` CPUs of which `others` are taken by other processes: one per CPU
    left free (at least one). Threads of one parallel region wait for each other, so a thread
    that must share its CPU with another process stalls all of them (28x slower measured)."""
    return int(max(1, min(cpus, round(cpus - others))))


def adapt_threads(force: bool = False) -> int:
    """Set torch's intra-op threads for the load on the machine now; returns the count.

    Called by the collection loop and the optimizers at every step (it re-decides at most every
    `CHECK_INTERVAL_S`): the load is sampled at each call and smoothed, so a job that starts or
    ends next to a campaign moves its thread count within seconds. `AUTODIDACT_THREADS` or
    `OMP_NUM_THREADS` fix the count instead.
    """
    import time

    import torch

    fixed = requested_threads()
    if fixed is not None:
        if _governor.threads != fixed:
            torch.set_num_threads(fixed)
            _governor.threads = fixed
        return fixed
    if force:  # a stage starts: a short burst of samples instead of one instantaneous reading
        samples = []
        for _ in range(FORCE_SAMPLES):
            samples.append(other_runnable())
            time.sleep(FORCE_SAMPLE_GAP_S)
        known = [x for x in samples if x is not None]
        _governor.load = sum(known) / len(known) if known else None
    elif (sample := other_runnable()) is not None:
        previous = _governor.load
        _governor.load = (
            sample if previous is None else (1 - _SMOOTHING) * previous + _SMOOTHING * sample
        )
    now = time.monotonic()
    if not force and now - _governor.checked < CHECK_INTERVAL_S and _governor.threads:
        return _governor.threads
    _governor.checked = now
    threads = choose_threads(available_cpus(), _governor.load or 0.0)
    if threads != _governor.threads:
        torch.set_num_threads(threads)
        _governor.threads = threads
    return threads
