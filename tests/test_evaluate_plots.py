"""Evaluation statistics and success-curve plots (no policy needed)."""

import json

import pytest

from train.results.evaluate import TaskResult, eval_jobs, eval_metrics, wilson_interval
from train.results.plots import plot_campaign, plot_comparison, read_metrics
from train.rundir.runlog import RunLog


def test_wilson_interval_matches_hand_computed_values():
    # 8/10: centre (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.7167; half-width 0.2265
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_eval_jobs_are_fixed_held_out_seeds():
    a = eval_jobs(["autodidact/ReachBall-v0"], 5)
    assert a == eval_jobs(["autodidact/ReachBall-v0"], 5)
    assert [j.seed for j in a] == list(range(10_000_000, 10_000_005))


def test_eval_metrics_pool_tasks():
    metrics = eval_metrics(
        {"a/A-v0": TaskResult("a/A-v0", 3, 10, 5.0), "a/B-v0": TaskResult("a/B-v0", 7, 10, 5.0)}
    )
    assert metrics["eval/success_rate/A-v0"] == 0.3 and metrics["eval/success_rate"] == 0.5
    assert metrics["eval/ci_low"] < 0.5 < metrics["eval/ci_high"]


def _fake_run(path, rates):
    log = RunLog(path)
    for k, rate in enumerate(rates):
        results = {"a/A-v0": TaskResult("a/A-v0", int(rate * 20), 20, 9.0)}
        log.append(k, eval_metrics(results))
    return log


def test_plots_and_summary_table(tmp_path):
    log = _fake_run(tmp_path / "one", [0.1, 0.3, 0.6])
    _fake_run(tmp_path / "two", [0.2, 0.2])
    assert [r["round"] for r in read_metrics(tmp_path / "one")] == [0, 1, 2]
    png = plot_campaign(tmp_path / "one")
    assert png.name == "success_curve.png" and png.read_bytes()[:4] == b"\x89PNG"
    out = plot_comparison([tmp_path / "one", tmp_path / "two"], tmp_path / "cmp.png")
    assert out.stat().st_size > 10_000
    table = log.summary_table(["a/A-v0"])
    assert "| A-v0 | 10% [" in table and "60% [" in table and "+50 pts" in table
    assert "Mean held-out success rose from 10% [" in table and "+50 points" in table
    assert "the 95% intervals are separate" in table  # 2/20 vs 12/20
    flat = _fake_run(tmp_path / "flat", [0.2, 0.3]).summary_table(["a/A-v0"])
    assert "rose from 20%" in flat and "overlap: not a clear change" in flat


def test_metrics_file_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"round": 0}) + "\n{oops\n")
    with pytest.raises(ValueError, match="metrics.jsonl' line 2 is not JSON"):
        read_metrics(tmp_path)
