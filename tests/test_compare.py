"""Honest numbers across runs: paired comparisons on the shared held-out seeds, and campaigns run
over several seeds with the mean curve and its interval across seeds."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from train.campaign.config import load_campaign_config
from train.results.plots import seeds_curve
from train.results.stats import mcnemar_exact_p, paired_difference, t_interval

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
CLI = [sys.executable, "-m", "train.cli"]
EVAL_EPISODES = 6
SMALL = [f"eval.episodes_per_task={EVAL_EPISODES}", "eval.videos_per_task=0"]


def _cli(*args, check=True):
    result = subprocess.run(CLI + list(args), env=ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


# ---- statistics ----------------------------------------------------------------------------


def test_identical_outcomes_differ_by_zero_with_a_zero_interval():
    r = paired_difference([([True, False, True], [True, False, True])])
    assert (r["difference"], r["ci_low"], r["ci_high"], r["p_value"]) == (0, 0, 0, 1)
    assert not r["significant"]


def test_a_consistent_gain_is_significant_and_its_interval_excludes_zero():
    r = paired_difference([([False] * 20, [True] * 12 + [False] * 8)])
    assert r["difference"] == pytest.approx(0.6)
    assert r["ci_low"] > 0 and r["ci_high"] <= 1 and r["significant"]
    assert r["p_value"] == pytest.approx(mcnemar_exact_p(0, 12))
    assert mcnemar_exact_p(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact_p(5, 5) == 1.0


def test_pooling_weights_every_paired_seed_equally():
    r = paired_difference([([False] * 10, [True] * 10), ([True] * 30, [True] * 30)])
    assert r["n"] == 40 and r["difference"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([([True], [True, False])])


def test_t_interval_across_seeds():
    assert t_interval([0.5]) == (0.5, 0.5, 0.5)
    mean, lo, hi = t_interval([0.4, 0.6])
    assert mean == pytest.approx(0.5) and hi - mean == pytest.approx(12.706 * 0.1, rel=1e-3)


# ---- campaigns -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "tiny_seeds"
    result = _cli("run", "--preset", "tiny", "--seeds", "0", "1", "--out", str(out), *SMALL)
    return out, result.stdout


@pytest.mark.slow
def test_seeds_run_one_campaign_each_and_plot_mean_and_interval(sweep, tmp_path):
    out, stdout = sweep
    for seed in (0, 1):
        assert load_campaign_config(out / f"seed_{seed}" / "config.toml").seed == seed
    assert (out / "seeds_curve.png").stat().st_size > 0
    curve = seeds_curve(out)
    finals = []
    for seed in (0, 1):
        rows = [json.loads(line) for line in (out / f"seed_{seed}" / "metrics.jsonl").open()]
        finals.append(rows[-1]["eval/success_rate"])
    assert curve["rounds"] == [0, 1, 2]
    assert curve["mean"][-1] == pytest.approx(sum(finals) / 2)
    assert curve["low"][-1] <= curve["mean"][-1] <= curve["high"][-1]
    assert "mean [95% t across seeds]" in stdout

    # `plot` recognizes a multi-seed directory; `--resume` of a finished sweep redoes nothing.
    _cli("plot", str(out), "-o", str(tmp_path / "seeds.png"))
    assert (tmp_path / "seeds.png").stat().st_size > 0
    again = _cli("run", "--resume", "--seeds", "0", "1", "--out", str(out))
    assert "already complete" in again.stdout and "round 2: collect" not in again.stdout


def test_bad_seed_runs_are_refused(sweep, tmp_path):
    out, _ = sweep
    r = _cli("run", "--preset", "tiny", "--seeds", "0", "--out", str(out), check=False)
    assert r.returncode == 2 and "is not empty; pass --resume" in r.stderr
    r = _cli("run", "--preset", "tiny", "seed=3", "--seeds", "0", "--out", str(tmp_path / "x"),
             check=False)  # fmt: skip
    assert r.returncode == 2 and "drop the seed=... override" in r.stderr
    r = _cli("run", "--preset", "tiny", "--seeds", "1", "1", "--out", str(tmp_path / "y"),
             check=False)  # fmt: skip
    assert r.returncode == 2 and "repeats a seed" in r.stderr


@pytest.mark.slow
def test_a_run_against_its_copy_differs_by_zero(sweep, tmp_path):
    out, _ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(out / "seed_0", copy)
    result = json.loads(_cli("compare", str(out / "seed_0"), str(copy), "--json").stdout)
    (comparison,) = result["comparisons"]
    for r in [*comparison["tasks"].values(), comparison["mean"]]:
        assert r["difference"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0
        assert r["p_value"] == 1 and not r["significant"]
    assert comparison["mean"]["n"] == 2 * EVAL_EPISODES
    table = _cli("compare", str(out / "seed_0"), str(copy)).stdout
    assert "McNemar" in table and "mean" in table


@pytest.mark.slow
def test_compare_of_two_rounds_gives_the_rates_autodidact_eval_gives(sweep):
    out, _ = sweep
    run = out / "seed_0"
    result = json.loads(_cli("compare", f"{run}:0", f"{run}:2", "--json").stdout)
    (comparison,) = result["comparisons"]
    config = load_campaign_config(run / "config.toml")
    for k, side in ((0, "rate_a"), (2, "rate_b")):
        evaluated = json.loads(
            _cli(
                "eval", str(run / "checkpoints" / f"round_{k}"), "--tasks", *config.tasks,
                "--episodes", str(EVAL_EPISODES), "--num-envs", str(config.collect.num_envs),
                "--chunk-episodes", str(config.collect.chunk_episodes), "--json",
            ).stdout
        )  # fmt: skip
        for name, r in comparison["tasks"].items():
            assert r[side] == evaluated[f"eval/success_rate/{name}"], (k, name)


def test_compare_names_bad_input(sweep, tmp_path):
    out, _ = sweep
    r = _cli("compare", str(tmp_path), str(out / "seed_0"), check=False)
    assert r.returncode == 2 and "is not a campaign directory" in r.stderr
    r = _cli("compare", f"{out / 'seed_0'}:7", str(out / "seed_0"), check=False)
    assert r.returncode == 2 and "round '7'" in r.stderr and "[0, 1, 2]" in r.stderr
    r = _cli("compare", str(out / "seed_0"), check=False)
    assert r.returncode == 2 and "at least two sides" in r.stderr
