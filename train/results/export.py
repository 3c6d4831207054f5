"""Export a campaign's episode store as a LeRobotDataset (format v3.0), for LeRobot's loaders
(SmolVLA, pi0, ...) and the Hugging Face Hub.

Layout of the exported directory (LeRobot v3.0: many episodes per file, located by index)::

    meta/info.json                                 format, fps, totals, features, path templates
    meta/stats.json                                per-feature min / max / mean / std / count
    meta/tasks.parquet                             task string (the instruction) -> task_index
    meta/episodes/chunk-000/file-000.parquet       one row per episode: where its frames and video
                                                   are, its stats, and our `autodidact/*` metadata
    data/chunk-000/file-000.parquet                one row per frame (step)
    videos/observation.image/chunk-000/file-000.mp4  every episode's frames, one after another

Choices, and why:

- Frames are steps. LeRobot has one frame per step t = 0..T-1: the observation before action t,
  with that action and the reward / done / success that follow it. The store holds T + 1
  observations; the last one (after the final action) has no action to pair with, so it is
  dropped rather than given an invented one. `next.success` is true only at the last frame of a
  successful episode (the environment judges success at the end).
- Images are stored as video, not as images in the parquet: LeRobot's default, and what the
  SmolVLA / pi0 training loaders decode. The codec is lossless H.264 in RGB (`libx264rgb`, qp 0,
  decoded as pix_fmt `gbrp`): frames decode bit-exactly to the stored ones with any ffmpeg-based
  decoder (PyAV, torchcodec), at about 2.5 times the size of LeRobot's lossy AV1 default.
- `meta/tasks.parquet` holds the columns `task_index` and `task`; its pandas metadata names
  `task` as the index, so `pd.read_parquet` (which LeRobot uses) gives the task strings as the
  index named "task", as a file written from LeRobot's DataFrame would, while plain Arrow readers
  see two columns.
- Stats cover every feature but the strings: booleans count as 0 / 1, the image per channel in
  [0, 1] with shape [3, 1, 1] (LeRobot's convention), over all of an episode's frames.
- `autodidact/verified` is what a campaign means by verified: every verdict with an opinion
  passed and at least one did; null when the episode has no verdicts (round 0's demonstrations
  are not verified by the campaign). `verified_only` keeps verified episodes, and episodes
  without verdicts only if the environment judged them a success.
- Data and video files roll over to the next file (and after `CHUNKS_SIZE` files, the next
  chunk) before the uncompressed size of their episodes would pass the size limit (the
  compressed files come out smaller; an episode over the limit alone gets a file of its own);
  the episodes' metadata stays in one file.

The export is built in a hidden sibling directory and renamed into place at the end: a failed
or killed export leaves no partial dataset at `out_dir`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import envs
from train.collect.store import EpisodeStore
from train.paths import check_can_create
from train.rundir.integrity import records_format
from train.rundir.runlog import RunLog
from verifiers.base import all_passed
from verifiers.episode import Episode, Verdict

FORMATS = ("lerobot",)
CODEBASE_VERSION = "v3.0"
ROBOT_TYPE = "autodidact_tabletop"
CHUNKS_SIZE = 1000
"""Files per chunk directory."""
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 500
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
IMAGE_KEY = "observation.image"
VIDEO_CODEC = "libx264rgb"
VIDEO_PIX_FMT = "gbrp"
"""The pixel format a decoder reports for `libx264rgb`'s lossless RGB stream."""
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
"""envs.tabletop: fingertip target motion per axis (x MAX_MOVE metres) and the finger command."""
STATE_NAMES = ("tip_x", "tip_y", "tip_z", "finger_gap")
"""envs.tabletop: fingertip position (metres, world frame) and finger gap."""
ARROW_TYPES = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}
STAT_NAMES = ("min", "max", "mean", "std", "count")


def export_lerobot(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    verified_only: bool = False,
    tasks: Sequence[str] | None = None,
    rounds: Sequence[int] | None = None,
    fps: int = 10,
) -> dict[str, Any]:
    """Write the campaign at `run_dir`'s episodes to `out_dir` as a LeRobotDataset v3.0.

    `tasks` (short names or ids) and `rounds` keep only those episodes; `verified_only` keeps
    the verified ones (see the module docstring). Episodes keep the store's order (by round, then
    as stored). `out_dir` must not exist or be empty. Returns the counts written and the path.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "episodes").is_dir() or not (run_dir / "config.toml").is_file():
        raise ValueError(
            f"{str(run_dir)!r} is not a campaign directory: expected the --out directory of "
            "`autodidact run`, with config.toml and episodes/"
        )
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"output {str(out_dir)!r} already exists and is not an empty directory; "
            "choose a new --out (nothing was written)"
        )
    check_can_create(out_dir, "--out")
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps must be a positive int, got {fps!r}")
    task_ids = None if tasks is None else [envs.resolve(t) for t in tasks]
    if rounds is not None:
        bad = [r for r in rounds if isinstance(r, bool) or not isinstance(r, int)]
        if bad:
            raise ValueError(f"rounds must be ints, got {bad[0]!r}")
        rounds = list(rounds)
    # a campaign's store always has its manifest from records format 2 on: without it, nothing
    # says which parts it should hold
    store = EpisodeStore(run_dir / "episodes", require_manifest=records_format(run_dir) >= 2)
    episodes = sorted(store.load(), key=lambda e: e.round)
    verdicts = _verdicts(RunLog(run_dir), sorted({e.round for e in episodes}))
    selected = [
        e
        for e in episodes
        if (task_ids is None or e.task_id in task_ids)
        and (rounds is None or e.round in rounds)
        and (not verified_only or _counts_as_verified(e, verdicts.get(e.episode_id, {})))
    ]
    if not selected:
        asked = {"tasks": task_ids, "rounds": rounds, "verified_only": verified_only or None}
        named = ", ".join(f"{k}={v}" for k, v in asked.items() if v is not None)
        raise ValueError(
            f"no episode of {str(run_dir)!r} {f'matches {named}' if named else 'to export'}; the store "
            f"holds {len(episodes)} episodes of rounds {sorted({e.round for e in episodes})} and "
            f"tasks {sorted({e.task_id for e in episodes})}"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        summary = _write_dataset(tmp, store, selected, verdicts, fps)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**summary, "out": str(out_dir)}


def export(
    run_dir: str | Path, out: str | Path, format: str = "lerobot", **options: Any
) -> dict[str, Any]:
    """Export a campaign's episodes in `format` (only `lerobot`: `export_lerobot`, whose keyword
    `options` it passes on); returns what was written."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {FORMATS}")
    return export_lerobot(run_dir, out, **options)


def _verdicts(runlog: RunLog, rounds: list[int]) -> dict[str, dict[str, Verdict]]:
    """episode_id -> {verifier: verdict} over the verdict files of `rounds`."""
    by_episode: dict[str, dict[str, Verdict]] = {}
    for k in rounds:
        for verdict in runlog.read_verdicts(k):
            by_episode.setdefault(verdict.episode_id, {})[verdict.verifier] = verdict
    return by_episode


def _verified(verdicts: dict[str, Verdict]) -> bool | None:
    """The pass rule (`verifiers.base.all_passed`) over the stored verdicts; None without any."""
    return all_passed(list(verdicts.values())) is True if verdicts else None


def _counts_as_verified(episode: Episode, verdicts: dict[str, Verdict]) -> bool:
    verified = _verified(verdicts)
    return bool(episode.is_success) if verified is None else verified


def _features(height: int, width: int, fps: int) -> dict[str, dict[str, Any]]:
    """info.json's `features`: the video, the per-frame columns in data-file order."""
    scalar = {"shape": [1], "names": None}
    return {
        IMAGE_KEY: {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": "h264",
                "video.pix_fmt": VIDEO_PIX_FMT,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        },
        "observation.state": {"dtype": "float32", "shape": [4], "names": list(STATE_NAMES)},
        "action": {"dtype": "float32", "shape": [4], "names": list(ACTION_NAMES)},
        "timestamp": {"dtype": "float32", **scalar},
        "frame_index": {"dtype": "int64", **scalar},
        "episode_index": {"dtype": "int64", **scalar},
        "index": {"dtype": "int64", **scalar},
        "task_index": {"dtype": "int64", **scalar},
        "next.reward": {"dtype": "float32", **scalar},
        "next.done": {"dtype": "bool", **scalar},
        "next.success": {"dtype": "bool", **scalar},
        "action_bins": {"dtype": "int64", "shape": [4], "names": list(ACTION_NAMES)},
    }


def _frame_columns(
    episode: Episode, episode_index: int, start: int, task_index: int, fps: int
) -> dict[str, np.ndarray]:
    """One episode's rows of the data file, column by column (the final observation dropped)."""
    T = episode.length
    steps = np.arange(T, dtype=np.int64)
    last = steps == T - 1
    return {
        "observation.state": np.asarray(episode.states[:-1], np.float32),
        "action": np.asarray(episode.actions, np.float32),
        "timestamp": (steps / fps).astype(np.float32),
        "frame_index": steps,
        "episode_index": np.full(T, episode_index, np.int64),
        "index": start + steps,
        "task_index": np.full(T, task_index, np.int64),
        "next.reward": np.asarray(episode.rewards, np.float32),
        "next.done": last,
        "next.success": last & bool(episode.is_success),
        "action_bins": np.asarray(episode.action_bins, np.int64),
    }


def _check_shapes(episode: Episode, frames: np.ndarray, image_shape: tuple[int, ...]) -> None:
    """LeRobot features have one shape for the whole dataset."""
    T = episode.length
    expected = {
        "actions": (np.shape(episode.actions), (T, len(ACTION_NAMES))),
        "action_bins": (np.shape(episode.action_bins), (T, len(ACTION_NAMES))),
        "states": (np.shape(episode.states), (T + 1, len(STATE_NAMES))),
        "frames": (frames.shape, (T + 1, *image_shape)),
    }
    for name, (shape, want) in expected.items():
        if shape != want:
            raise ValueError(
                f"episode {episode.episode_id!r}: {name} have shape {shape}, expected {want}; "
                "a LeRobot dataset needs the same tabletop observation and action shapes in "
                "every episode"
            )


def _stats(values: np.ndarray) -> dict[str, list]:
    """min / max / mean / std / count over the first axis of [N] or [N, d] values."""
    v = np.asarray(values, np.float64).reshape(len(values), -1)
    return {
        "min": v.min(0).tolist(),
        "max": v.max(0).tolist(),
        "mean": v.mean(0).tolist(),
        "std": v.std(0).tolist(),
        "count": [len(v)],
    }


def _image_stats(frames: np.ndarray) -> dict[str, list]:
    """Per-channel stats of uint8 [T, H, W, 3] frames scaled to [0, 1], each value [3, 1, 1]."""
    v = frames.reshape(-1, 3).astype(np.float64) / 255.0
    per_channel = {"min": v.min(0), "max": v.max(0), "mean": v.mean(0), "std": v.std(0)}
    return {
        **{k: [[[float(x)]] for x in channel] for k, channel in per_channel.items()},
        "count": [len(frames)],
    }


def _aggregate_image_stats(stats: list[dict[str, list]]) -> dict[str, list]:
    """The image stats of all frames from per-episode ones (counts weight means and variances)."""
    counts = np.array([s["count"][0] for s in stats], np.float64)
    each = {k: np.array([s[k] for s in stats], np.float64) for k in ("min", "max", "mean", "std")}
    weights = (counts / counts.sum())[:, None, None, None]
    total_mean = (weights * each["mean"]).sum(0)
    variance = (weights * (each["std"] ** 2 + (each["mean"] - total_mean) ** 2)).sum(0)
    return {
        "min": each["min"].min(0).tolist(),
        "max": each["max"].max(0).tolist(),
        "mean": total_mean.tolist(),
        "std": np.sqrt(variance).tolist(),
        "count": [int(counts.sum())],
    }


def _file_locations(sizes: list[int], limit_mb: float) -> list[tuple[int, int]]:
    """(chunk_index, file_index) per episode: consecutive episodes share a file until the next
    would take it past `limit_mb` (an episode larger than the limit gets a file of its own)."""
    limit, used, number, locations = limit_mb * 1024 * 1024, 0, 0, []
    for size in sizes:
        if used and used + size > limit:
            number, used = number + 1, 0
        used += size
        locations.append(divmod(number, CHUNKS_SIZE))
    return locations


def _arrow_column(values: np.ndarray, feature: dict[str, Any]) -> pa.Array:
    arrow_type = ARROW_TYPES[feature["dtype"]]
    if feature["shape"] == [1]:
        return pa.array(values, arrow_type)
    flat = pa.array(values.reshape(-1), arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, feature["shape"][0])


def _write_data_file(path: Path, columns: list[dict[str, np.ndarray]], features: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            name: _arrow_column(np.concatenate([c[name] for c in columns]), feature)
            for name, feature in features.items()
            if feature["dtype"] != "video"
        }
    )
    pq.write_table(table, path, compression="zstd")


def _video_writer(path: Path, fps: int):
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    return imageio.get_writer(
        path,
        fps=fps,
        codec=VIDEO_CODEC,
        pixelformat="rgb24",
        quality=None,
        macro_block_size=1,  # 64x64 frames: no resizing to a multiple of 16
        ffmpeg_params=["-qp", "0"],  # lossless
        ffmpeg_log_level="error",
    )


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """`task_index` and `task` columns, with pandas metadata making `task` the index."""
    pandas_metadata = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "attributes": {},
    }
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), pa.int64()),
            "task": pa.array(tasks, pa.string()),
        }
    ).replace_schema_metadata({"pandas": json.dumps(pandas_metadata)})
    pq.write_table(table, path)


def _episodes_schema(features: dict[str, dict[str, Any]]) -> pa.Schema:
    video = f"videos/{IMAGE_KEY}"
    fields = [
        ("episode_index", pa.int64()),
        ("tasks", pa.list_(pa.string())),
        ("length", pa.int64()),
        ("data/chunk_index", pa.int64()),
        ("data/file_index", pa.int64()),
        ("dataset_from_index", pa.int64()),
        ("dataset_to_index", pa.int64()),
        (f"{video}/chunk_index", pa.int64()),
        (f"{video}/file_index", pa.int64()),
        (f"{video}/from_timestamp", pa.float64()),
        (f"{video}/to_timestamp", pa.float64()),
        ("meta/episodes/chunk_index", pa.int64()),
        ("meta/episodes/file_index", pa.int64()),
    ]
    for name, feature in features.items():
        value = pa.float64()
        for _ in range(3 if feature["dtype"] == "video" else 1):
            value = pa.list_(value)
        fields += [(f"stats/{name}/{stat}", value) for stat in STAT_NAMES[:-1]]
        fields.append((f"stats/{name}/count", pa.list_(pa.int64())))
    fields += [
        ("autodidact/episode_id", pa.string()),
        ("autodidact/task_id", pa.string()),
        ("autodidact/env_seed", pa.int64()),
        ("autodidact/round", pa.int64()),
        ("autodidact/policy_id", pa.string()),
        ("autodidact/is_success", pa.bool_()),
        ("autodidact/truncated", pa.bool_()),
        ("autodidact/relabelled_from", pa.string()),
        ("autodidact/verified", pa.bool_()),
        ("autodidact/verdicts", pa.string()),
    ]
    return pa.schema(fields)


def _write_dataset(
    root: Path,
    store: EpisodeStore,
    episodes: list[Episode],
    verdicts: dict[str, dict[str, Verdict]],
    fps: int,
) -> dict[str, int]:
    """Write the dataset's files under `root`, episode by episode (one episode's frames in memory
    at a time); return the totals."""
    image_shape = store.load_frames(episodes[0]).shape[1:]
    features = _features(image_shape[0], image_shape[1], fps)
    row_bytes = sum(
        np.dtype(f["dtype"]).itemsize * math.prod(f["shape"])
        for f in features.values()
        if f["dtype"] != "video"
    )
    lengths = [e.length for e in episodes]
    data_files = _file_locations([T * row_bytes for T in lengths], DATA_FILES_SIZE_IN_MB)
    video_files = _file_locations(
        [T * math.prod(image_shape) for T in lengths], VIDEO_FILES_SIZE_IN_MB
    )
    task_index: dict[str, int] = {}
    all_columns: list[dict[str, np.ndarray]] = []
    rows, image_stats = [], []
    writer, video_frames, start = None, 0, 0
    try:
        for i, episode in enumerate(episodes):
            frames = store.load_frames(episode)
            _check_shapes(episode, frames, image_shape)
            frames = frames[:-1]
            if i == 0 or video_files[i] != video_files[i - 1]:
                if writer is not None:
                    writer.close()
                writer, video_frames = _video_writer(root / _video_path(video_files[i]), fps), 0
            for frame in frames:
                writer.append_data(frame)
            task = task_index.setdefault(episode.instruction, len(task_index))
            columns = _frame_columns(episode, i, start, task, fps)
            all_columns.append(columns)
            image_stats.append(_image_stats(frames))
            row = {
                "episode_index": i,
                "tasks": [episode.instruction],
                "length": episode.length,
                "data/chunk_index": data_files[i][0],
                "data/file_index": data_files[i][1],
                "dataset_from_index": start,
                "dataset_to_index": start + episode.length,
                f"videos/{IMAGE_KEY}/chunk_index": video_files[i][0],
                f"videos/{IMAGE_KEY}/file_index": video_files[i][1],
                f"videos/{IMAGE_KEY}/from_timestamp": video_frames / fps,
                f"videos/{IMAGE_KEY}/to_timestamp": (video_frames + episode.length) / fps,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                **_stat_columns(IMAGE_KEY, image_stats[-1]),
                **_autodidact_columns(episode, verdicts.get(episode.episode_id, {})),
            }
            for name, values in columns.items():
                row.update(_stat_columns(name, _stats(values)))
            rows.append(row)
            video_frames += episode.length
            start += episode.length
    finally:
        if writer is not None:
            writer.close()
    for location in dict.fromkeys(data_files):
        mine = [c for c, at in zip(all_columns, data_files, strict=True) if at == location]
        _write_data_file(root / _data_path(location), mine, features)

    stats = {IMAGE_KEY: _aggregate_image_stats(image_stats)}
    for name in all_columns[0]:
        stats[name] = _stats(np.concatenate([c[name] for c in all_columns]))
    (root / EPISODES_PATH).parent.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=_episodes_schema(features)), root / EPISODES_PATH
    )
    _write_tasks(root / "meta/tasks.parquet", list(task_index))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": ROBOT_TYPE,
        "total_episodes": len(episodes),
        "total_frames": start,
        "total_tasks": len(task_index),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
        "fps": fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features,
    }
    (root / "meta/info.json").write_text(json.dumps(info, indent=4) + "\n")
    (root / "meta/stats.json").write_text(json.dumps(stats, indent=4) + "\n")
    return {"episodes": len(episodes), "frames": start, "tasks": len(task_index)}


def _autodidact_columns(episode: Episode, verdicts: dict[str, Verdict]) -> dict[str, Any]:
    """Our episode metadata beside LeRobot's, under `autodidact/`."""
    return {
        "autodidact/episode_id": episode.episode_id,
        "autodidact/task_id": episode.task_id,
        "autodidact/env_seed": int(episode.env_seed),
        "autodidact/round": int(episode.round),
        "autodidact/policy_id": episode.policy_id,
        "autodidact/is_success": bool(episode.is_success),
        "autodidact/truncated": bool(episode.truncated),
        "autodidact/relabelled_from": episode.relabelled_from,
        "autodidact/verified": _verified(verdicts),
        "autodidact/verdicts": json.dumps(
            {name: v.passed for name, v in verdicts.items()}, sort_keys=True
        ),
    }


def _stat_columns(name: str, stats: dict[str, list]) -> dict[str, list]:
    return {f"stats/{name}/{stat}": value for stat, value in stats.items()}


def _data_path(location: tuple[int, int]) -> str:
    return DATA_PATH.format(chunk_index=location[0], file_index=location[1])


def _video_path(location: tuple[int, int]) -> str:
    return VIDEO_PATH.format(video_key=IMAGE_KEY, chunk_index=location[0], file_index=location[1])
