"""The campaign end to end through the command line: artifacts, kill-and-resume, bad configs."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agent import Policy
from train.campaign.config import load_campaign_config
from train.campaign.loop import Campaign
from train.collect.store import EpisodeStore

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
CLI = [sys.executable, "-m", "train.cli"]
TIMING = ("per_s", "seconds", "time")
TINY = load_campaign_config(preset="tiny")
DEMO_PARTS = -(-2 * TINY.demos.episodes_per_task // TINY.collect.chunk_episodes)


def _run(args, **kwargs):
    return subprocess.run(
        CLI + args, env=ENV, capture_output=True, text=True, timeout=1200, **kwargs
    )


def _comparable(rows):
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in rows]


def _rows(run: Path):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign") / "tiny"
    start = time.monotonic()
    proc = _run(["run", "--preset", "tiny", "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    TINY_SECONDS.append(time.monotonic() - start)
    return out, proc.stdout


TINY_SECONDS: list[float] = []
"""How long the uninterrupted tiny campaign took here (the window kill moments are drawn from)."""


def kill_at_a_random_moment(args: list[str], seed: int, window_s: float) -> tuple[float, bool]:
    """Run the CLI with `args` and SIGKILL it at a moment drawn uniformly from (0.5 s, window_s)
    by `seed`; returns the moment and whether the process was still running then."""
    moment = random.Random(seed).uniform(0.5, window_s)
    proc = subprocess.Popen(
        CLI + args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=moment)
        return moment, False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return moment, True


@pytest.mark.slow
@pytest.mark.parametrize("draw", [1, 2, 3])
def test_a_campaign_killed_at_a_drawn_moment_resumes_to_the_same_result(tiny_run, tmp_path, draw):
    reference, _ = tiny_run
    out = tmp_path / "killed"
    moment, killed = kill_at_a_random_moment(
        ["run", "--preset", "tiny", "--out", str(out)], seed=draw, window_s=0.9 * TINY_SECONDS[0]
    )
    # Killed before its config was written, a campaign is simply started again.
    again = ["run", "--resume", "--out", str(out)]
    if not (out / "config.toml").is_file():
        again = ["run", "--preset", "tiny", "--out", str(out)]
    resumed = _run(again)
    assert resumed.returncode == 0, (moment, killed, resumed.stderr[-3000:])
    assert _comparable(_rows(out)) == _comparable(_rows(reference)), (moment, killed)
    a, b = EpisodeStore(reference / "episodes").load(), EpisodeStore(out / "episodes").load()
    assert sorted(e.episode_id for e in a) == sorted(e.episode_id for e in b)


@pytest.mark.slow
def test_tiny_campaign_writes_every_artifact(tiny_run):
    out, stdout = tiny_run
    rows = _rows(out)
    assert [r["round"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert 0.0 <= r["eval/ci_low"] <= r["eval/success_rate"] <= r["eval/ci_high"] <= 1.0
    assert rows[0]["demos/episodes"] == 2 * TINY.demos.episodes_per_task
    assert rows[1]["rollout/episodes"] == 2 * TINY.collect.episodes_per_task
    assert "train/sft_loss" in rows[0] and "organize/sft_episodes" in rows[1]
    for r in rows:  # how much each round's policy reads image and instruction, on its own data
        assert r["diag/image_gain"] == pytest.approx(
            r["diag/action_ce_images_shuffled"] - r["diag/action_ce"]
        )
        assert r["diag/instruction_gain"] == pytest.approx(
            r["diag/action_ce_instructions_shuffled"] - r["diag/action_ce"]
        )
    for k in range(3):
        assert (out / "checkpoints" / f"round_{k}" / "config.json").is_file()
        videos = list((out / "videos" / f"round_{k}").glob("*.mp4"))
        assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)
    for k in (1, 2):
        verdicts = (out / "verdicts" / f"round_{k}.jsonl").read_text().splitlines()
        assert {json.loads(v)["verifier"] for v in verdicts} >= {"environment", "time_limit"}
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "success_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "config.toml").is_file() and json.loads((out / "state.json").read_text()) == {
        "completed_round": 2
    }
    assert (
        len(list((out / "episodes").glob("part-*.parquet"))) == DEMO_PARTS + 2 + 2
    )  # demos, 2 chunks x 2 rounds
    summary = (out / "summary.md").read_text()
    assert "**mean**" in summary and "ReachBall-v0" in summary and summary.strip() in stdout
    assert "round 1:" in stdout and "collect" not in summary


@pytest.mark.slow
def test_killed_campaign_resumes_to_the_same_result(tiny_run, tmp_path):
    reference, _ = tiny_run
    out = tmp_path / "killed"
    proc = subprocess.Popen(CLI + ["run", "--preset", "tiny", "--out", str(out)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 900
    # Kill once the first chunk of round 1 is in the store: mid-round, between two chunks.
    while (
        time.time() < deadline
        and len(list((out / "episodes").glob("part-*.parquet"))) < DEMO_PARTS + 1
    ):
        assert proc.poll() is None, "campaign ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.jsonl").exists() or len(_rows(out)) < 3

    resumed = _run(["run", "--resume", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _comparable(_rows(out)) == _comparable(_rows(reference))
    from train.collect.store import EpisodeStore

    a, b = EpisodeStore(reference / "episodes").load(), EpisodeStore(out / "episodes").load()
    assert sorted(e.episode_id for e in a) == sorted(
        e.episode_id for e in b
    )  # none lost, none twice


def test_bad_config_is_a_clear_error(tmp_path):
    proc = _run(["run", "--preset", "tiny", "--out", str(tmp_path / "x"), "collect.episodes=3"])
    assert proc.returncode == 2
    assert "unknown key 'collect.episodes'" in proc.stderr and "episodes_per_task" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run(["run", "--preset", "tiny", "--out", str(tmp_path / "y"), 'tasks=["reachh"]'])
    assert proc.returncode == 2 and "unknown task 'reachh'" in proc.stderr
    proc = _run(["run", "--resume", "--out", str(tmp_path / "nothing")])
    assert proc.returncode == 2 and "cannot resume" in proc.stderr


def test_bfloat16_rollouts_feed_a_float32_policy(tmp_path):
    """`collect.dtype = "bfloat16"`: rollouts come from a bf16 copy; training, checkpoints and
    evaluation stay float32 (in process, one round of SFT + RL, RL beside the demonstrations)."""
    # A seed fitted on more demonstrations and 4 seeds x 4 samples per task: enough verified
    # successes that some group has mixed outcomes for RL to train on
    overrides = ['collect.dtype="bfloat16"', "rounds=1", 'optimize.sequence=["sft", "rl"]']
    overrides += ["collect.episodes_per_task=16", "demos.episodes_per_task=24"]
    overrides += ["optimize.rl.demo_weight=0.5"]  # the campaign hands RL its demonstrations
    config = load_campaign_config(preset="tiny", overrides=overrides)
    Campaign(config, tmp_path / "bf16").run()
    rows = _rows(tmp_path / "bf16")
    assert rows[1]["rollout/episodes"] == 2 * 16
    assert "train/rl_loss" in rows[1] and np.isfinite(rows[1]["train/rl_loss"])
    assert 0 < rows[1]["train/rl_demo_nll"] < np.log(256) + 1
    rollouts = EpisodeStore(tmp_path / "bf16" / "episodes").load(where={"round": 1})
    assert len(rollouts) == rows[1]["rollout/episodes"]
    for episode in rollouts:
        assert np.isfinite(episode.logprobs).all() and (episode.logprobs <= 0).all()
    policy = Policy.from_pretrained(tmp_path / "bf16" / "checkpoints" / "round_1")
    assert policy.backbone.dtype == torch.float32
