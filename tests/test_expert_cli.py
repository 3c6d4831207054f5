"""The `autodidact envs` and `autodidact expert` subcommands, run end to end."""

from __future__ import annotations

import json

import imageio.v2 as imageio

import envs
from train.cli import main


def test_envs_json_lists_every_task(capsys):
    assert main(["envs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == list(envs.task_ids())
    for row in rows:
        assert row["action_dim"] == 4 and row["max_episode_steps"] >= 20
        assert row["instruction"]


def test_envs_table(capsys):
    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert "autodidact/OpenDrawer-v0" in out and "example instruction" in out


def test_expert_json_and_video(tmp_path, capsys):
    video = tmp_path / "reach.mp4"
    code = main(
        ["expert", "reach", "--episodes", "3", "--seed", "5", "--video", str(video), "--json"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 3 and report["success_rate"] == 1.0
    assert 1 <= report["mean_length"] <= envs.max_episode_steps("reach")
    reader = imageio.get_reader(str(video))
    frame = reader.get_data(0)
    assert frame.shape == (256, 256, 3)
    assert reader.count_frames() >= 2


def test_expert_text_report(capsys):
    assert main(["expert", "autodidact/PressButton-v0", "--episodes", "2"]) == 0
    assert "expert success rate 1.00 over 2 episodes" in capsys.readouterr().out


def test_expert_unknown_task_is_an_error_listing_the_ids(capsys):
    assert main(["expert", "pushh", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'pushh'" in err and "autodidact/ReachBall-v0" in err
