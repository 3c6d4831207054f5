"""`train.results.export`: a campaign exported as a LeRobotDataset v3.0, read back by a reader written from
the format alone (nothing imported from train.results.export), compared with the episode store."""

import argparse
import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pyarrow.parquet as pq
import pytest

from train.campaign.config import load_campaign_config
from train.campaign.loop import Campaign
from train.cli.commands import export
from train.collect.store import EpisodeStore
from train.results.export import export as export_run
from train.results.export import export_lerobot

FPS = 10


def read_lerobot(root: Path) -> dict:
    """A LeRobot v3.0 dataset: info, tasks, stats, and per episode its metadata row, task string,
    data rows (column -> array) and decoded frames, all located through info.json's path templates
    and the episode rows' chunk / file indices and timestamps."""
    info = json.loads((root / "meta/info.json").read_text())
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pylist()
    task_of = {row["task_index"]: row["task"] for row in tasks}
    rows = []
    for path in sorted((root / "meta/episodes").glob("chunk-*/file-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    data_files, video_files, episodes = {}, {}, []
    for row in rows:
        data_path = info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        if data_path not in data_files:
            table = pq.read_table(root / data_path)
            data_files[data_path] = {
                name: np.asarray(table.column(name).to_pylist()) for name in table.column_names
            }
        data = data_files[data_path]
        mine = (data["index"] >= row["dataset_from_index"]) & (
            data["index"] < row["dataset_to_index"]
        )
        key = "observation.image"
        video_path = info["video_path"].format(
            video_key=key,
            chunk_index=row[f"videos/{key}/chunk_index"],
            file_index=row[f"videos/{key}/file_index"],
        )
        if video_path not in video_files:
            with imageio.get_reader(root / video_path) as reader:
                video_files[video_path] = np.stack(list(reader.iter_data()))
        first = round(row[f"videos/{key}/from_timestamp"] * info["fps"])
        last = round(row[f"videos/{key}/to_timestamp"] * info["fps"])
        episodes.append(
            {
                "row": row,
                "task": task_of[int(data["task_index"][mine][0])],
                "data": {name: values[mine] for name, values in data.items()},
                "frames": video_files[video_path][first:last],
            }
        )
    stats = json.loads((root / "meta/stats.json").read_text())
    return {
        "info": info,
        "tasks": tasks,
        "stats": stats,
        "episodes": episodes,
        "files": (data_files, video_files),
    }


def _expected_verified(run: Path) -> dict[str, bool]:
    """episode_id -> verified, from the verdict files as a campaign defines it; episodes without
    verdicts (round 0's demonstrations) count when the environment judged them a success."""
    opinions: dict[str, list[bool]] = {}
    for path in (run / "verdicts").glob("round_*.jsonl"):
        for line in path.read_text().splitlines():
            verdict = json.loads(line)
            opinions.setdefault(verdict["episode_id"], [])
            if verdict["passed"] is not None:
                opinions[verdict["episode_id"]].append(verdict["passed"])
    episodes = EpisodeStore(run / "episodes").load()
    return {
        e.episode_id: (
            bool(opinions[e.episode_id]) and all(opinions[e.episode_id])
            if e.episode_id in opinions
            else e.is_success
        )
        for e in episodes
    }


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    run = tmp_path_factory.mktemp("campaign") / "tiny"
    overrides = ["rounds=1", "eval.episodes_per_task=4", "eval.videos_per_task=0"]
    Campaign(load_campaign_config(preset="tiny", overrides=overrides), run).run()
    return run


@pytest.fixture(scope="module")
def exported(campaign, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "lerobot"
    summary = export_lerobot(campaign, out, fps=FPS)
    return out, summary, read_lerobot(out)


def test_episodes_round_trip_the_store(campaign, exported):
    out, summary, dataset = exported
    stored = EpisodeStore(campaign / "episodes").load(with_frames=True)
    stored.sort(key=lambda e: e.round)
    assert [e["row"]["autodidact/episode_id"] for e in dataset["episodes"]] == [
        e.episode_id for e in stored
    ]
    for episode, e in zip(dataset["episodes"], stored, strict=True):
        T = e.length
        row, data = episode["row"], episode["data"]
        assert row["length"] == T == len(data["index"]) == len(episode["frames"])
        assert episode["task"] == e.instruction and row["tasks"] == [e.instruction]
        np.testing.assert_array_equal(data["action"], e.actions)
        np.testing.assert_array_equal(data["observation.state"], e.states[:-1])
        np.testing.assert_array_equal(data["next.reward"], e.rewards)
        np.testing.assert_array_equal(data["action_bins"], e.action_bins)
        np.testing.assert_array_equal(data["frame_index"], np.arange(T))
        np.testing.assert_allclose(data["timestamp"], np.arange(T) / FPS, rtol=1e-6)
        assert data["next.done"].tolist() == [False] * (T - 1) + [True]
        assert data["next.success"].tolist() == [False] * (T - 1) + [e.is_success]
        # lossless H.264 (RGB, qp 0): the decoded frames are the stored ones exactly
        np.testing.assert_array_equal(episode["frames"], e.frames[:-1])
        assert row["autodidact/round"] == e.round and row["autodidact/env_seed"] == e.env_seed
        assert row["autodidact/is_success"] == e.is_success
    verified = _expected_verified(campaign)
    for episode in dataset["episodes"]:
        row = episode["row"]
        if row["autodidact/round"] == 0:
            assert row["autodidact/verified"] is None and row["autodidact/verdicts"] == "{}"
        else:
            assert row["autodidact/verified"] == verified[row["autodidact/episode_id"]]
            assert "environment" in json.loads(row["autodidact/verdicts"])
    assert summary == {
        "episodes": len(stored),
        "frames": sum(e.length for e in stored),
        "tasks": len({e.instruction for e in stored}),
        "out": str(out),
    }


def test_indices_contiguous_and_totals_match_the_files(exported):
    _, _, dataset = exported
    info, episodes = dataset["info"], dataset["episodes"]
    assert info["codebase_version"] == "v3.0"
    index = np.concatenate([e["data"]["index"] for e in episodes])
    np.testing.assert_array_equal(index, np.arange(len(index)))
    assert [e["row"]["episode_index"] for e in episodes] == list(range(len(episodes)))
    for i, e in enumerate(episodes):
        assert set(e["data"]["episode_index"].tolist()) == {i}
    data_files, video_files = dataset["files"]
    assert sum(len(d["index"]) for d in data_files.values()) == len(index)
    assert sum(len(v) for v in video_files.values()) == len(index)
    assert info["total_episodes"] == len(episodes)
    assert info["total_frames"] == len(index)
    assert info["total_tasks"] == len(dataset["tasks"])
    assert info["splits"] == {"train": f"0:{len(episodes)}"}
    assert [t["task_index"] for t in dataset["tasks"]] == list(range(len(dataset["tasks"])))
    height, width, _ = info["features"]["observation.image"]["shape"]
    assert video_files and all(v.shape[1:] == (height, width, 3) for v in video_files.values())


def test_stats_match_a_recomputation(exported):
    _, _, dataset = exported
    stats, features = dataset["stats"], dataset["info"]["features"]
    data = {
        name: np.concatenate([e["data"][name] for e in dataset["episodes"]])
        for name in dataset["episodes"][0]["data"]
    }
    assert set(stats) == set(features) and set(data) == set(features) - {"observation.image"}
    for name, values in data.items():
        v = values.astype(np.float64).reshape(len(values), -1)
        for stat, expected in [("min", v.min(0)), ("max", v.max(0)), ("mean", v.mean(0))]:
            np.testing.assert_allclose(stats[name][stat], expected, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(stats[name]["std"], v.std(0), rtol=1e-9, atol=1e-12)
        assert stats[name]["count"] == [len(v)]
    frames = np.concatenate([e["frames"] for e in dataset["episodes"]])
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    image = stats["observation.image"]
    for stat, expected in [
        ("min", pixels.min(0)),
        ("max", pixels.max(0)),
        ("mean", pixels.mean(0)),
        ("std", pixels.std(0)),
    ]:
        assert np.shape(image[stat]) == (3, 1, 1)
        np.testing.assert_allclose(np.ravel(image[stat]), expected, atol=1e-9)
    assert image["count"] == [len(frames)]
    for episode in dataset["episodes"]:  # per-episode stats in the episodes' rows too
        row = episode["row"]
        np.testing.assert_allclose(row["stats/action/mean"], episode["data"]["action"].mean(0))
        assert row["stats/action/count"] == [row["length"]]


def test_tasks_parquet_names_task_as_the_pandas_index(exported):
    out, _, dataset = exported
    schema = pq.read_schema(out / "meta/tasks.parquet")
    assert (
        schema.names == ["task_index", "task"] and str(schema.field("task_index").type) == "int64"
    )
    pandas = json.loads(schema.metadata[b"pandas"])
    assert pandas["index_columns"] == ["task"]
    assert {c["field_name"] for c in pandas["columns"]} == {"task_index", "task"}
    episodes = dataset["episodes"]
    assert [t["task"] for t in dataset["tasks"]] == list(dict.fromkeys(e["task"] for e in episodes))


@pytest.mark.parametrize(
    "kwargs",
    [{"verified_only": True}, {"tasks": ["reach"]}, {"rounds": [1]}],
    ids=["verified_only", "tasks", "rounds"],
)
def test_filters_select_the_matching_episodes(campaign, tmp_path, kwargs):
    stored = sorted(EpisodeStore(campaign / "episodes").load(), key=lambda e: e.round)
    verified = _expected_verified(campaign)
    keep = {
        "verified_only": lambda e: verified[e.episode_id],
        "tasks": lambda e: e.task_id == "autodidact/ReachBall-v0",
        "rounds": lambda e: e.round == 1,
    }[next(iter(kwargs))]
    expected = [e.episode_id for e in stored if keep(e)]
    assert 0 < len(expected) < len(stored)
    export_lerobot(campaign, tmp_path / "out", fps=FPS, **kwargs)
    dataset = read_lerobot(tmp_path / "out")
    assert [e["row"]["autodidact/episode_id"] for e in dataset["episodes"]] == expected
    assert dataset["info"]["total_episodes"] == len(expected)


def test_files_roll_over_at_the_size_limits(campaign, tmp_path, monkeypatch, exported):
    """Tiny limits put the episodes in many data and video files over several chunks; the reader
    finds them all."""
    monkeypatch.setattr("train.results.export.DATA_FILES_SIZE_IN_MB", 0.002)
    monkeypatch.setattr("train.results.export.VIDEO_FILES_SIZE_IN_MB", 0.5)
    monkeypatch.setattr("train.results.export.CHUNKS_SIZE", 3)
    export_lerobot(campaign, tmp_path / "out", fps=FPS)
    dataset = read_lerobot(tmp_path / "out")
    data_files, video_files = dataset["files"]
    assert len(data_files) > 1 and len(video_files) > 1
    for rolled, single in zip(dataset["episodes"], exported[2]["episodes"], strict=True):
        np.testing.assert_array_equal(rolled["frames"], single["frames"])
        np.testing.assert_array_equal(rolled["data"]["action"], single["data"]["action"])
        np.testing.assert_array_equal(rolled["data"]["index"], single["data"]["index"])
    assert (tmp_path / "out/data/chunk-001/file-000.parquet").is_file()
    assert (tmp_path / "out/videos/observation.image/chunk-000/file-001.mp4").is_file()


@pytest.mark.parametrize("case", ["not_a_campaign", "out_not_empty", "selects_nothing", "task"])
def test_bad_input_is_a_clear_error_and_writes_nothing(campaign, tmp_path, case):
    out = tmp_path / "out"
    run, kwargs = campaign, {}
    if case == "not_a_campaign":
        run = tmp_path / "nothing_here"
        (run / "episodes").mkdir(parents=True)
        error, match = ValueError, "not a campaign directory.*config.toml"
    elif case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        error, match = FileExistsError, "already exists and is not an empty directory"
    elif case == "selects_nothing":
        kwargs = {"tasks": ["push"], "rounds": [7]}
        error, match = (
            ValueError,
            r"no episode .* matches tasks=\['autodidact/PushCube-v0'\], rounds=\[7\]",
        )
    else:
        kwargs = {"tasks": ["reach", "fly"]}
        error, match = ValueError, "unknown task 'fly'"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error, match=match):
        export_lerobot(run, out, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if case == "out_not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
        assert (out / "keep.txt").read_text() == "mine"


def test_cli_entry_point_prints_a_summary(campaign, tmp_path, capsys):
    args = argparse.Namespace(
        run_dir=str(campaign),
        format="lerobot",
        out=str(tmp_path / "out"),
        verified_only=False,
        tasks=["press_button"],
        rounds=[0],
        fps=FPS,
    )
    demos = EpisodeStore(campaign / "episodes").load(
        where={"round": 0, "task_id": "autodidact/PressButton-v0"}
    )
    assert export(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"exported {len(demos)} episodes (")
    assert line.endswith(str(tmp_path / "out"))
    with pytest.raises(ValueError, match="unknown export format 'rlds'.*lerobot"):
        export(argparse.Namespace(**{**vars(args), "format": "rlds"}))
    with pytest.raises(ValueError, match="unknown export format 'rlds'.*lerobot"):
        export_run(campaign, tmp_path / "rlds", "rlds")
