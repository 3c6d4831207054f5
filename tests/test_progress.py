"""Progress where there is no terminal: a log line with the rate and the time left."""

import logging

from train.progress import Progress


def test_without_a_terminal_progress_is_logged_with_rate_and_time_left(caplog):
    caplog.set_level(logging.INFO, logger="autodidact")
    progress = Progress(10, "round 1: collect", unit="episodes", every_s=0.0, terminal=False)
    progress.update(4)
    progress.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("round 1: collect: 4/10 episodes (")
    assert "episodes/s" in line and "left)" in line


def test_progress_logs_at_most_every_interval(caplog):
    caplog.set_level(logging.INFO, logger="autodidact")
    progress = Progress(100, "sft", unit="steps", every_s=3600.0, terminal=False)
    for _ in range(50):
        progress.update(1)
    assert not caplog.records  # the first line comes after an hour
