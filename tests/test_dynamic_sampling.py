"""Dynamic sampling (`collect.min_mixed_groups`): a round whose rollouts hold too few groups
with mixed outcomes collects refill passes of fresh seeds for the short tasks, at most
`collect.max_refills`, and a resume or a repair rebuilds exactly the same round."""

import json
import shutil

import pytest
from cli_helper import cli

import envs
from train.collect.store import EpisodeStore

REFILL = [
    "rounds=1",
    "eval.videos_per_task=0",
    "eval.episodes_per_task=2",
    'optimize.sequence=["sft"]',
    "collect.min_mixed_groups=50",
]
"""50 mixed groups per task: more than a pass of 2 seeds can give, so every pass is needed."""


def _parts(run):
    manifest = json.loads((run / "episodes" / "manifest.json").read_text())
    return {(p["label"]["round"], p["label"]["chunk"]): p for p in manifest["parts"]}


@pytest.fixture(scope="module")
def refilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("refill") / "run"
    proc = cli("run", "--preset", "tiny", "--out", str(out), *REFILL, "collect.max_refills=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_short_tasks_get_refill_passes_and_the_round_ends(refilled):
    rows = [json.loads(line) for line in (refilled / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["rollout/refill_passes"] == 2  # the target is out of reach: max_refills ends it
    assert rows[1]["rollout/episodes"] == 3 * 16  # the base pass and two refills, 2 tasks x 8
    assert 0 <= rows[1]["rollout/mixed_groups"] <= 3 * 2 * 2
    episodes = EpisodeStore(refilled / "episodes").load(where={"round": 1})
    seeds = sorted({e.env_seed - 1_000_000 for e in episodes})
    assert seeds == list(range(6))  # fresh seeds per pass: 0-1, then 2-3, then 4-5
    assert sorted(c for (k, c) in _parts(refilled) if k == 1) == list(range(6))


def test_a_lost_refill_part_is_collected_again_identical(refilled, tmp_path):
    run = shutil.copytree(refilled, tmp_path / "copy")
    last = _parts(run)[(1, 5)]
    (run / "episodes" / last["file"]).unlink()
    assert cli("verify-run", str(run)).returncode == 1
    proc = cli("run", "--resume", "--out", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "collected round 1 chunk 5 again" in proc.stdout + proc.stderr
    assert _parts(run)[(1, 5)]["sha256"] == last["sha256"]


def test_dynamic_sampling_needs_groups(tmp_path):
    proc = cli("run", "--preset", "tiny", "--out", str(tmp_path / "x"), *REFILL,
               "collect.group_size=1")  # fmt: skip
    assert proc.returncode == 2
    assert "collect.group_size must be >= 2" in proc.stderr


def test_a_scene_sampled_under_several_instructions(tmp_path):
    from collections import Counter

    from train.campaign.config import load_campaign_config
    from train.campaign.loop import Campaign

    config = load_campaign_config(preset="tiny", overrides=["collect.instructions_per_scene=2"])
    jobs = Campaign(config, tmp_path / "run")._jobs(1)
    assert len(jobs) == 2 * config.collect.episodes_per_task
    per_scene = Counter((j.task_id, j.seed, j.instruction) for j in jobs)
    assert set(per_scene.values()) == {config.collect.group_size // 2}
    scenes = {(t, s) for t, s, _ in per_scene}
    assert len(per_scene) == 2 * len(scenes)  # two different instructions per scene
    env = envs.make(jobs[0].task_id)
    drawn = env.reset(seed=jobs[0].seed)[0]["instruction"]
    env.close()
    assert jobs[0].instruction == drawn
    with pytest.raises(ValueError, match="instructions_per_scene=3 must be >= 1 and divide"):
        load_campaign_config(preset="tiny", overrides=["collect.instructions_per_scene=3"])
