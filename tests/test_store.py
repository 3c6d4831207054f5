"""The episode store: round trip, lazy frames, filters, atomic appends, corrupt files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from episodes_helper import episodes

from train.collect.store import EpisodeStore, StoreError
from verifiers.episode import Episode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def real_episodes() -> list[Episode]:
    return [*episodes("reach", (0, 1), "expert"), *episodes("reach", (2,), "random")]


def synthetic_episode(i: int, length: int = 5, size: int = 16) -> Episode:
    """A well-formed episode with random contents (the store must not care what they mean)."""
    rng = np.random.default_rng(i)
    logprobs = rng.normal(size=(length, 4)).astype(np.float32)
    logprobs[0, 0] = np.nan
    return Episode(
        task_id=f"autodidact/Task{i % 2}-v0",
        env_seed=1000 + i,
        instruction=f"touch the {'red' if i % 2 else 'blue'} ball",
        actions=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        action_bins=rng.integers(0, 256, (length, 4)),
        logprobs=logprobs,
        rewards=rng.normal(size=length).astype(np.float32),
        is_success=bool(i % 3 == 0),
        truncated=bool(i % 3 != 0),
        states=rng.normal(size=(length + 1, 4)).astype(np.float32),
        frames=rng.integers(0, 256, (length + 1, size, size, 3), dtype=np.uint8),
        step_info={
            "contact_force": rng.uniform(0, 50, length).astype(np.float32),
            "is_success": np.zeros(length, np.float32),
        },
        achieved=["touch the red ball"] if i % 2 else [],
        policy_id="expert" if i % 2 else "policy-abc",
        round=i % 4,
        episode_id=f"r{i % 4}/ep{i}",
        relabelled_from="touch the green ball" if i == 4 else None,
    )


def assert_same(a: Episode, b: Episode, frames: bool = True) -> None:
    for name in ("task_id", "env_seed", "instruction", "is_success", "truncated", "achieved"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("policy_id", "round", "episode_id", "relabelled_from", "length"):
        assert getattr(a, name) == getattr(b, name), name
    for name in ("actions", "action_bins", "logprobs", "rewards", "states"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.step_info.keys() == b.step_info.keys()
    for key in a.step_info:
        np.testing.assert_array_equal(a.step_info[key], b.step_info[key])
    if frames:
        assert a.frames.dtype == b.frames.dtype == np.uint8
        np.testing.assert_array_equal(a.frames, b.frames)


def test_round_trip_gives_identical_arrays(tmp_path):
    episodes = [synthetic_episode(i) for i in range(6)]
    store = EpisodeStore(tmp_path / "store")
    store.append(episodes[:4])
    store.append(episodes[4:])
    assert len(store) == 6 and len(store.part_files()) == 2
    loaded = EpisodeStore(tmp_path / "store").load(with_frames=True)
    assert [e.episode_id for e in loaded] == [e.episode_id for e in episodes]
    for original, back in zip(episodes, loaded, strict=True):
        assert_same(original, back)


def test_real_episodes_round_trip(tmp_path, real_episodes):
    store = EpisodeStore(tmp_path)
    store.append(real_episodes)
    for original, back in zip(real_episodes, store.load(with_frames=True), strict=True):
        assert_same(original, back)


def test_frames_are_loaded_lazily(tmp_path):
    episodes = [synthetic_episode(i) for i in range(3)]
    store = EpisodeStore(tmp_path)
    store.append(episodes)
    loaded = EpisodeStore(tmp_path).load()
    assert all(e.frames is None for e in loaded)
    np.testing.assert_array_equal(store.load_frames(loaded[1]), episodes[1].frames)
    np.testing.assert_array_equal(store.load_frames("r2/ep2"), episodes[2].frames)
    filled = store.with_frames(loaded)
    assert loaded[0].frames is None
    np.testing.assert_array_equal(filled[0].frames, episodes[0].frames)
    with pytest.raises(KeyError, match="nope"):
        store.load_frames("nope")


def test_episode_without_frames_round_trips(tmp_path):
    episode = synthetic_episode(0)
    episode.frames = None
    store = EpisodeStore(tmp_path)
    store.append([episode])
    back = store.load(with_frames=True)[0]
    assert back.frames is None
    assert_same(episode, back, frames=False)


def test_where_filters_by_column_or_predicate(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(i) for i in range(8)])
    task1 = store.load(where={"task_id": "autodidact/Task1-v0"})
    assert [e.env_seed for e in task1] == [1001, 1003, 1005, 1007]
    rounds = store.load(where={"round": [0, 1], "task_id": "autodidact/Task0-v0"})
    assert [e.episode_id for e in rounds] == ["r0/ep0", "r0/ep4"]
    successes = store.load(where=lambda e: e.is_success)
    assert [e.env_seed for e in successes] == [1000, 1003, 1006]
    with_frames = store.load(with_frames=True, where={"episode_id": "r3/ep7"})
    assert len(with_frames) == 1 and with_frames[0].frames is not None
    with pytest.raises(ValueError, match="cannot filter on 'rewards'"):
        store.load(where={"rewards": 1.0})


def test_bad_episodes_are_refused(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)])
    with pytest.raises(ValueError, match="'r0/ep0' is already in the store"):
        store.append([synthetic_episode(0)])
    nameless = synthetic_episode(1)
    nameless.episode_id = ""
    with pytest.raises(ValueError, match="empty episode_id"):
        store.append([nameless])
    short = synthetic_episode(2)
    short.rewards = short.rewards[:-1]
    with pytest.raises(ValueError, match="rewards has shape"):
        store.append([short])
    with pytest.raises(ValueError, match="empty batch"):
        store.append([])
    assert len(store) == 1


def test_corrupt_part_file_error_names_the_file(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)])
    path = store.append([synthetic_episode(1)])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StoreError, match=str(path.name)):
        EpisodeStore(tmp_path).load()
    with pytest.raises(StoreError, match=str(path.name)):
        len(EpisodeStore(tmp_path))


def test_foreign_parquet_file_error_names_the_file(tmp_path):
    path = tmp_path / "part-000000-deadbeef.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), path)
    with pytest.raises(StoreError, match=f"{path.name} is not an episode part file"):
        EpisodeStore(tmp_path).load()


def test_temporary_files_are_ignored(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)])
    (tmp_path / ".tmp-part-000001-0badf00d.parquet.123").write_bytes(b"half a file")
    assert len(store) == 1
    assert [e.episode_id for e in EpisodeStore(tmp_path).load()] == ["r0/ep0"]
    store.append([synthetic_episode(1)])
    assert len(EpisodeStore(tmp_path).load()) == 2


WRITER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from test_store import synthetic_episode
    from train.collect.store import EpisodeStore

    store = EpisodeStore({directory!r})
    hang_in_replace = {hang!r}
    if hang_in_replace:
        real_replace = os.replace
        def replace(src, dst):
            if "part-000002" in str(dst):
                print("writing", flush=True)
                time.sleep(600)
            real_replace(src, dst)
        os.replace = replace
    for b in range(10_000):
        store.append([synthetic_episode(4 * b + k, length=20, size=48) for k in range(4)])
        print("done", b, flush=True)
    """
)


def _start_writer(directory: Path, hang: bool) -> subprocess.Popen:
    script = WRITER.format(tests=str(REPO / "tests"), directory=str(directory), hang=hang)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO
    )


def _check_complete_batches(directory: Path, at_least: int) -> None:
    episodes = EpisodeStore(directory).load(with_frames=True)
    assert len(episodes) % 4 == 0 and len(episodes) >= 4 * at_least
    for i, episode in enumerate(episodes):
        assert_same(synthetic_episode(i, length=20, size=48), episode)


def test_writer_killed_inside_append_leaves_completed_batches(tmp_path):
    writer = _start_writer(tmp_path, hang=True)
    try:
        lines = [writer.stdout.readline().strip() for _ in range(3)]
        assert lines == ["done 0", "done 1", "writing"]
        assert any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    _check_complete_batches(tmp_path, at_least=2)
    assert len(EpisodeStore(tmp_path).load()) == 8


def test_writer_killed_at_a_random_moment_leaves_completed_batches(tmp_path):
    writer = _start_writer(tmp_path, hang=False)
    try:
        for _ in range(3):
            writer.stdout.readline()
        time.sleep(0.05 + (os.getpid() % 7) / 100)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    _check_complete_batches(tmp_path, at_least=3)


def test_a_second_store_object_sees_new_batches(tmp_path):
    reader, writer = EpisodeStore(tmp_path), EpisodeStore(tmp_path)
    writer.append([synthetic_episode(0)])
    assert len(reader.load()) == 1
    writer.append([synthetic_episode(1)])
    np.testing.assert_array_equal(reader.load_frames("r1/ep1"), synthetic_episode(1).frames)


def _manifest(directory: Path) -> list[dict]:
    return json.loads((directory / "manifest.json").read_text())["parts"]


def test_each_append_is_recorded_with_its_rows_checksum_and_label(tmp_path):
    store = EpisodeStore(tmp_path)
    first = store.append(
        [synthetic_episode(0), synthetic_episode(1)], label={"round": 0, "chunk": 0}
    )
    store.append([synthetic_episode(2)])
    (a, b) = _manifest(tmp_path)
    assert a["file"] == first.name and a["rows"] == 2 and a["bytes"] == first.stat().st_size
    assert a["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert a["episode_ids"] == ["r0/ep0", "r1/ep1"] and a["label"] == {"round": 0, "chunk": 0}
    assert b["rows"] == 1 and b["label"] is None


def test_a_deleted_or_damaged_part_is_named_with_its_label_on_every_load(tmp_path):
    store = EpisodeStore(tmp_path)
    gone = store.append([synthetic_episode(0)], label={"round": 0, "chunk": 0})
    cut = store.append([synthetic_episode(1), synthetic_episode(2)], label={"round": 1, "chunk": 3})
    changed = store.append([synthetic_episode(3)], label={"round": 1, "chunk": 4})
    gone.unlink()
    size = cut.stat().st_size
    cut.write_bytes(cut.read_bytes()[:100])
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    problems = [p.describe() for p in EpisodeStore(tmp_path).check()]
    assert problems == [
        f"part {gone.name} (round 0, chunk 0, 1 episodes) is missing",
        f"part {cut.name} (round 1, chunk 3, 2 episodes) is truncated (100 bytes; {size} recorded)",
        f"part {changed.name} (round 1, chunk 4, 1 episodes) is corrupt (its SHA-256 differs "
        "from the one recorded when it was written)",
    ]
    for read in (lambda s: s.load(), lambda s: s.load(where={"round": 2}), len):
        with pytest.raises(StoreError, match=f"fails its check: {re.escape(problems[0])}; "):
            read(EpisodeStore(tmp_path))


def test_replace_part_keeps_its_place_and_sets_the_old_file_aside(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)], label={"round": 0, "chunk": 0})
    bad = store.append([synthetic_episode(1)], label={"round": 0, "chunk": 1})
    store.append([synthetic_episode(2)], label={"round": 0, "chunk": 2})
    bad.write_bytes(b"garbage")
    with pytest.raises(StoreError, match="not the ones it recorded"):
        store.replace_part(bad.name, [synthetic_episode(5)])
    entry = store.replace_part(bad.name, [synthetic_episode(1)])
    assert entry["file"].startswith("part-000001-") and entry["label"] == {"round": 0, "chunk": 1}
    assert (tmp_path / "damaged" / bad.name).read_bytes() == b"garbage"
    assert EpisodeStore(tmp_path).check() == []
    assert [e.episode_id for e in EpisodeStore(tmp_path).load()] == ["r0/ep0", "r1/ep1", "r2/ep2"]


def test_a_store_written_before_the_manifest_loads_and_is_recorded_on_append(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)])
    store.append([synthetic_episode(1)])
    (tmp_path / "manifest.json").unlink()
    old = EpisodeStore(tmp_path)
    assert old.check() == [] and len(old.load()) == 2
    old.append([synthetic_episode(2)])
    assert [p["rows"] for p in _manifest(tmp_path)] == [1, 1, 1]
    assert len(EpisodeStore(tmp_path).load()) == 3


def test_a_part_the_manifest_does_not_list_is_an_interrupted_append_and_ignored(tmp_path):
    store = EpisodeStore(tmp_path)
    store.append([synthetic_episode(0)])
    manifest = (tmp_path / "manifest.json").read_text()
    orphan = store.append([synthetic_episode(1)])
    (tmp_path / "manifest.json").write_text(manifest)  # killed between the rename and the commit
    again = EpisodeStore(tmp_path)
    assert again.check() == [] and [e.episode_id for e in again.load()] == ["r0/ep0"]
    assert again.uncommitted_files() == [orphan]
    new = again.append([synthetic_episode(1)])
    assert new.name.startswith("part-000002-") and orphan.exists()
    assert [e.episode_id for e in EpisodeStore(tmp_path).load()] == ["r0/ep0", "r1/ep1"]


def test_a_store_that_requires_its_manifest_refuses_parts_without_one_until_recovered(tmp_path):
    """Issue 32 finding 1, at the store: a campaign's store without its manifest is damage (a
    StoreError on load), and its owner records the parts it recognises again, in its order; a
    chunk collected again goes back into its place (`append(position=)`)."""
    store = EpisodeStore(tmp_path)
    first = store.append([synthetic_episode(0)], label={"round": 0, "chunk": 0})
    lost = store.append([synthetic_episode(1)], label={"round": 0, "chunk": 1})
    third = store.append([synthetic_episode(2)], label={"round": 0, "chunk": 2})
    recorded = _manifest(tmp_path)
    (tmp_path / "manifest.json").unlink()
    lost.unlink()
    strict = EpisodeStore(tmp_path, require_manifest=True)
    with pytest.raises(StoreError, match="manifest.json is missing, but the store holds 2 part"):
        strict.load()
    assert strict.part_episode_ids(third) == ["r2/ep2"]
    third.write_bytes(third.read_bytes()[:200])
    with pytest.raises(StoreError, match=re.escape(third.name)):
        strict.part_episode_ids(third)
    strict.set_aside(third.name)
    strict.recover_manifest([(first, {"round": 0, "chunk": 0})])
    assert _manifest(tmp_path) == recorded[:1]
    strict.append([synthetic_episode(2)], label={"round": 0, "chunk": 2})
    strict.append([synthetic_episode(1)], label={"round": 0, "chunk": 1}, position=1)
    assert [e.episode_id for e in EpisodeStore(tmp_path).load()] == ["r0/ep0", "r1/ep1", "r2/ep2"]
    assert strict.episodes_per_round() == {0: 1, 1: 1, 2: 1}
