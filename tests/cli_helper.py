"""Running the command line from tests: `cli(...)` and a finished tiny campaign to damage."""

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
CLI = [sys.executable, "-m", "train.cli"]
SMALL = ["rounds=1", "eval.videos_per_task=0"]
"""A tiny campaign of one improvement round, without videos."""


def cli(*args) -> subprocess.CompletedProcess:
    """`autodidact *args` in a child process; a traceback on stderr fails the test."""
    proc = subprocess.run(CLI + list(args), env=ENV, capture_output=True, text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def finished_tiny_run(out: Path) -> Path:
    """Run the tiny campaign of one improvement round into `out` (copy it before changing it)."""
    proc = cli("run", "--preset", "tiny", "--out", str(out), *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
