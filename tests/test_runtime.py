"""agent.runtime: torch threads that follow the machine's load, and their overrides."""

import subprocess
import sys

import pytest
import torch

from agent import runtime


def test_one_thread_per_cpu_left_free():
    assert runtime.choose_threads(2, 0.0) == 2
    assert runtime.choose_threads(2, 1.0) == 1  # one busy job on a 2-core machine
    assert runtime.choose_threads(2, 5.0) == 1  # never below one
    assert runtime.choose_threads(8, 2.4) == 6
    assert runtime.choose_threads(4, 0.4) == 4


def test_the_user_fixes_the_count(monkeypatch):
    monkeypatch.setenv("AUTODIDACT_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.requested_threads() == 1  # ours first
    assert runtime.adapt_threads(force=True) == 1 and torch.get_num_threads() == 1
    monkeypatch.delenv("AUTODIDACT_THREADS")
    assert runtime.requested_threads() == 3
    monkeypatch.setenv("AUTODIDACT_THREADS", "two")
    with pytest.raises(ValueError, match=r"AUTODIDACT_THREADS='two'; expected a positive integer"):
        runtime.requested_threads()
    monkeypatch.setenv("AUTODIDACT_THREADS", "1")
    runtime.adapt_threads(force=True)


def test_a_busy_process_takes_a_thread_away():
    """In a child with no override: the auto count on this machine alone, then beside a busy
    loop on every CPU but one (the count must fall to what is left)."""
    code = (
        "import time, agent.runtime as r\n"
        "for _ in range(20):\n"
        "    r.adapt_threads(); time.sleep(0.05)\n"
        "print(r.adapt_threads(force=True), r.available_cpus())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    cpus = runtime.available_cpus()
    if cpus < 2:
        pytest.skip("needs two CPUs")
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus - 1)]
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    finally:
        for process in busy:
            process.kill()
            process.wait()
    threads, available = map(int, out.stdout.split())
    assert available == cpus
    # Every CPU but one is busy (other tests beside this one can only take more).
    assert threads == 1, out.stdout
