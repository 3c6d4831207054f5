"""The episode store: episodes as Parquet part files, appended atomically, frames loaded lazily.

Layout of a store directory::

    manifest.json                  every committed part, in append order: its file name, row
                                   count, size, SHA-256, episode ids and label (a campaign's
                                   round and chunk)
    part-000000-1a2b3c4d.parquet   one file per appended batch (one row group per episode)
    part-000001-5e6f7a8b.parquet
    .tmp-...                       an append in progress (or one a crash interrupted); ignored
    damaged/                       what was set aside: parts replaced or dropped to be collected
                                   again (`replace_part`, `drop_parts`), an unreadable manifest

Each append writes its whole batch to a temporary file in the same directory, fsyncs it, renames
it to its final `part-*.parquet` name (`os.replace`, atomic on POSIX) and then commits it by
rewriting the manifest the same way; so a reader sees either the whole batch or none of it (a
part file the manifest does not list is an append a crash interrupted, and is ignored). Every load
checks each part against its manifest entry (size, then SHA-256, once per file state), so a part
deleted, truncated or changed is named, with its label, instead of silently missing. A store
written before the manifest existed (no manifest.json) loads unchecked; its first append records
its parts as they are. A store opened with `require_manifest` (a campaign's, from records format 2
on: `train.rundir.integrity`) refuses to load part files without a manifest: there the missing
manifest is damage, and `recover_manifest` records again the parts its owner recognises.

Frames are stored per episode as one lossless PNG strip (the T + 1 frames stacked vertically) in a
binary column that `load(with_frames=False)` never reads; each episode is its own row group, so
`load_frames(episode)` decodes only that episode's frames.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from verifiers.episode import Episode

SCHEMA_VERSION = "1"
PART_PATTERN = re.compile(r"^part-(\d{6})-([0-9a-f]{8})\.parquet$")
TMP_PREFIX = ".tmp-"
MANIFEST = "manifest.json"
DAMAGED_DIR = "damaged"

SCHEMA = pa.schema(
    [
        ("episode_id", pa.string()),
        ("task_id", pa.string()),
        ("env_seed", pa.int64()),
        ("instruction", pa.string()),
        ("relabelled_from", pa.string()),
        ("policy_id", pa.string()),
        ("round", pa.int64()),
        ("length", pa.int64()),
        ("is_success", pa.bool_()),
        ("truncated", pa.bool_()),
        ("actions", pa.list_(pa.float32())),
        ("action_bins", pa.list_(pa.int64())),
        ("logprobs", pa.list_(pa.float32())),
        ("action_dim", pa.int64()),
        ("rewards", pa.list_(pa.float32())),
        ("states", pa.list_(pa.float32())),
        ("state_dim", pa.int64()),
        ("step_info_names", pa.list_(pa.string())),
        ("step_info_values", pa.list_(pa.float32())),
        ("achieved", pa.list_(pa.string())),
        ("achieved_at_names", pa.list_(pa.string())),
        ("achieved_at_steps", pa.list_(pa.int64())),
        ("frame_shape", pa.list_(pa.int64())),
        ("frames_png", pa.binary()),
    ],
    metadata={"autodidact.store.version": SCHEMA_VERSION},
)
META_COLUMNS = [name for name in SCHEMA.names if name != "frames_png"]
FILTER_COLUMNS = ("episode_id", "task_id", "env_seed", "instruction", "policy_id", "round")


class StoreError(ValueError):
    """A store file is unreadable, not an episode part file, or not what the manifest recorded;
    the message names the file."""


@dataclass(frozen=True)
class PartProblem:
    """A part the manifest records that is not on disk as recorded."""

    file: str
    problem: str
    """`missing`, `truncated (N bytes; M recorded)` or `corrupt (...)`."""
    entry: dict
    """Its manifest entry: rows, bytes, sha256, episode_ids, label."""

    def describe(self) -> str:
        label = self.entry.get("label") or {}
        held = ", ".join(f"{key} {value}" for key, value in label.items())
        held = f"{held}, " if held else ""
        return f"part {self.file} ({held}{self.entry['rows']} episodes) is {self.problem}"


class EpisodeStore:
    """A directory of episodes: `append` batches atomically, `load` them back, frames on demand."""

    def __init__(self, directory: str | os.PathLike, require_manifest: bool = False) -> None:
        self.directory = Path(directory)
        self.require_manifest = require_manifest
        """Part files without a manifest are damage (StoreError), not a store older than it."""
        self._index: dict[str, tuple[Path, int]] | None = None
        self._checked: dict[str, tuple[int, int]] = {}
        """file name -> (size, mtime_ns) of the parts already found to match the manifest."""

    def part_files(self) -> list[Path]:
        """The committed part files, in append order (the manifest's; without one, every
        `part-*.parquet`); temporary files and uncommitted parts are never listed."""
        manifest = self.manifest()
        if manifest is not None:
            return [self.directory / entry["file"] for entry in manifest["parts"]]
        return self.files_on_disk()

    def uncommitted_files(self) -> list[Path]:
        """Part files the manifest does not list: appends a crash interrupted (ignored)."""
        if self.manifest() is None:
            return []
        committed = set(self.part_files())
        return [p for p in self.files_on_disk() if p not in committed]

    def manifest(self) -> dict | None:
        """The manifest (`{"version": 1, "parts": [entry, ...]}`), or None for a store without one."""
        path = self.directory / MANIFEST
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
            if not isinstance(manifest.get("parts"), list):
                raise ValueError("no 'parts' list")
            return manifest
        except (ValueError, AttributeError) as error:
            raise StoreError(f"store manifest {path} is unreadable: {error}") from None

    def check(self) -> list[PartProblem]:
        """Every recorded part that is missing, truncated or changed since it was written
        (empty for a sound store, and for one without a manifest: nothing to check against; a
        StoreError for part files without one where the manifest is required)."""
        manifest = self.manifest()
        if manifest is None and self.require_manifest and self.files_on_disk():
            raise StoreError(
                f"store manifest {self.directory / MANIFEST} is missing, but the store holds "
                f"{len(self.files_on_disk())} part files: nothing records which parts it should "
                "hold or what they held (`autodidact run --resume --out RUN` records the parts "
                "it recognises again and collects the missing chunks)"
            )
        problems = []
        for entry in manifest["parts"] if manifest else []:
            path = self.directory / entry["file"]
            if not path.is_file():
                problems.append(PartProblem(entry["file"], "missing", entry))
                continue
            stat = path.stat()
            if self._checked.get(entry["file"]) == (stat.st_size, stat.st_mtime_ns):
                continue
            if stat.st_size != entry["bytes"]:
                problem = f"truncated ({stat.st_size} bytes; {entry['bytes']} recorded)"
                if stat.st_size > entry["bytes"]:
                    problem = f"changed ({stat.st_size} bytes; {entry['bytes']} recorded)"
                problems.append(PartProblem(entry["file"], problem, entry))
            elif sha256(path) != entry["sha256"]:
                problem = "corrupt (its SHA-256 differs from the one recorded when it was written)"
                problems.append(PartProblem(entry["file"], problem, entry))
            else:
                self._checked[entry["file"]] = (stat.st_size, stat.st_mtime_ns)
        return problems

    def verify(self) -> None:
        """Raise StoreError naming every part that fails `check`."""
        problems = self.check()
        if problems:
            raise StoreError(
                f"the episode store {self.directory} fails its check: "
                + "; ".join(p.describe() for p in problems)
                + " (`autodidact verify-run RUN` lists what a campaign lacks; `autodidact run "
                "--resume --out RUN` re-collects its damaged chunks)"
            )

    def append(
        self, episodes: Sequence[Episode], label: Mapping | None = None, position: int | None = None
    ) -> Path:
        """Write one batch as a new part file, atomically, recording it in the manifest with
        `label` (what it holds, e.g. a campaign's round and chunk) at `position` in the load
        order (default: last); return its path."""
        episodes = list(episodes)
        if not episodes:
            raise ValueError("append() needs at least one episode; got an empty batch")
        index = self._episode_index()
        seen: set[str] = set()
        for episode in episodes:
            _check_episode(episode)
            if episode.episode_id in index or episode.episode_id in seen:
                raise ValueError(
                    f"episode_id {episode.episode_id!r} is already in the store at "
                    f"{self.directory}; episode ids must be unique"
                )
            seen.add(episode.episode_id)
        manifest = self._manifest_for_writing()
        on_disk = self.files_on_disk()  # uncommitted parts too: a new part never reuses a name
        number = int(PART_PATTERN.match(on_disk[-1].name).group(1)) + 1 if on_disk else 0
        final, entry = self._write_part(episodes, number, label)
        manifest["parts"].insert(len(manifest["parts"]) if position is None else position, entry)
        self._write_manifest(manifest)
        if position is None:
            for row, episode in enumerate(episodes):
                index[episode.episode_id] = (final, row)
        else:
            self._index = None
        return final

    def drop_parts(self, files: Sequence[str]) -> list[dict]:
        """Take the recorded parts `files` out of the manifest (one commit) and set aside those
        still on disk in `damaged/`: damaged parts whose chunks are to be collected again, the
        store sound meanwhile. Returns their manifest entries."""
        manifest = self._manifest_for_writing()
        dropped = [entry for entry in manifest["parts"] if entry["file"] in files]
        missing = set(files) - {entry["file"] for entry in dropped}
        if missing:
            raise ValueError(
                f"parts {sorted(missing)} are not recorded in {self.directory / MANIFEST}"
            )
        manifest["parts"] = [entry for entry in manifest["parts"] if entry["file"] not in files]
        self._write_manifest(manifest)
        for entry in dropped:
            if (self.directory / entry["file"]).exists():
                self.set_aside(entry["file"])
        self._index = None
        return dropped

    def part_episode_ids(self, path: Path) -> list[str]:
        """The episode ids of the part file at `path`, after reading it back whole (every
        episode and its frames decode); StoreError naming it otherwise."""
        table = _read(path, META_COLUMNS + ["frames_png"])
        for record in table.to_pylist():
            _from_row(record, path)
        return table.column("episode_id").to_pylist()

    def recover_manifest(self, parts: Sequence[tuple[Path, Mapping | None]]) -> None:
        """A new manifest recording `parts` (part files on disk, each with its label) in the
        given order, with their sizes and SHA-256 as found: for a store whose manifest was lost,
        once its owner has recognised its parts (`part_episode_ids`)."""
        entries = []
        for path, label in parts:
            ids = _read(path, ["episode_id"]).column("episode_id").to_pylist()
            entries.append(_entry(path, ids, label))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_manifest({"version": 1, "parts": entries})
        self._index = None

    def set_aside(self, name: str) -> Path:
        """Move the file `name` (a damaged part, an unreadable manifest) to `damaged/`."""
        (self.directory / DAMAGED_DIR).mkdir(exist_ok=True)
        target = self.directory / DAMAGED_DIR / name
        os.replace(self.directory / name, target)
        return target

    def episode_ids(self) -> list[str]:
        """The ids of the episodes the committed parts hold: as the manifest records them (a
        damaged part's too), or read from the parts of a store without one."""
        manifest = self.manifest()
        if manifest is None:
            return list(self._episode_index())
        return [i for entry in manifest["parts"] for i in entry["episode_ids"]]

    def episodes_per_round(self, files: Sequence[Path] | None = None) -> dict[int, int]:
        """How many distinct episodes the committed parts (or `files`) hold per round, read from
        the parts themselves, so that a store without a manifest can be counted too."""
        seen: dict[str, int] = {}
        for path in self.part_files() if files is None else files:
            table = _read(path, ["episode_id", "round"])
            ids, rounds = table.column("episode_id").to_pylist(), table.column("round").to_pylist()
            seen.update(zip(ids, rounds, strict=True))
        counts: dict[int, int] = {}
        for k in seen.values():
            counts[k] = counts.get(k, 0) + 1
        return counts

    def replace_part(self, file: str, episodes: Sequence[Episode]) -> dict:
        """Put `episodes` (the same episode ids, e.g. a chunk collected again) in the place of
        the recorded part `file`, keeping its position and label; the old file, if any, moves
        to `damaged/`. Returns the new manifest entry."""
        manifest = self._manifest_for_writing()
        position = next((i for i, e in enumerate(manifest["parts"]) if e["file"] == file), None)
        if position is None:
            raise ValueError(f"part {file} is not recorded in {self.directory / MANIFEST}")
        old = manifest["parts"][position]
        ids = [e.episode_id for e in episodes]
        if ids != old["episode_ids"]:
            raise StoreError(
                f"the episodes given for part {file} are not the ones it recorded ({len(ids)} "
                f"ids, {len(old['episode_ids'])} recorded; first {ids[:1]} vs "
                f"{old['episode_ids'][:1]})"
            )
        for episode in episodes:
            _check_episode(episode)
        number = int(PART_PATTERN.match(file).group(1))
        _, entry = self._write_part(list(episodes), number, old.get("label"))
        if (self.directory / file).exists():
            self.set_aside(file)
        manifest["parts"][position] = entry
        self._write_manifest(manifest)
        self._index = None
        return entry

    def files_on_disk(self) -> list[Path]:
        """Every `part-*.parquet` in the directory, committed or not, by name."""
        if not self.directory.exists():
            return []
        parts = [p for p in self.directory.iterdir() if PART_PATTERN.match(p.name)]
        return sorted(parts, key=lambda p: p.name)

    def _manifest_for_writing(self) -> dict:
        """The manifest; for a store without one, a new one recording its parts as they are."""
        manifest = self.manifest()
        if manifest is not None:
            return manifest
        self.directory.mkdir(parents=True, exist_ok=True)
        parts = []
        for path in self.files_on_disk():
            ids = _read(path, ["episode_id"]).column("episode_id").to_pylist()
            parts.append(_entry(path, ids, None))
        return {"version": 1, "parts": parts}

    def _write_part(
        self, episodes: list[Episode], number: int, label: Mapping | None
    ) -> tuple[Path, dict]:
        """A new part file (temporary name, fsync, rename) and its manifest entry."""
        final = self.directory / f"part-{number:06d}-{uuid.uuid4().hex[:8]}.parquet"
        table = pa.Table.from_pylist([_to_row(e) for e in episodes], schema=SCHEMA)
        _write_atomically(
            final, "wb", lambda f: pq.write_table(table, f, row_group_size=1, compression="zstd")
        )
        entry = _entry(final, [e.episode_id for e in episodes], label)
        stat = final.stat()
        self._checked[final.name] = (stat.st_size, stat.st_mtime_ns)
        return final, entry

    def _write_manifest(self, manifest: dict) -> None:
        """Commit: the manifest replaced atomically (temporary file, fsync, rename, fsync dir)."""
        _write_atomically(
            self.directory / MANIFEST, "w", lambda f: json.dump(manifest, f, indent=1)
        )
        _fsync_directory(self.directory)

    def load(
        self,
        with_frames: bool = False,
        where: Mapping[str, object] | Callable[[Episode], bool] | None = None,
    ) -> list[Episode]:
        """All episodes in append order, optionally filtered.

        `where` is either a mapping `column -> value` (or `-> list of values`) over the columns
        task_id, env_seed, instruction, policy_id, round, episode_id — applied while reading — or a
        predicate on the loaded Episode (without frames).
        """
        filters = _parquet_filters(where) if isinstance(where, Mapping) else None
        self.verify()
        columns = META_COLUMNS + (["frames_png"] if with_frames else [])
        episodes: list[Episode] = []
        index: dict[str, tuple[Path, int]] = {}
        for path in self.part_files():
            table = _read(path, META_COLUMNS)
            for row, episode_id in enumerate(table.column("episode_id").to_pylist()):
                index[episode_id] = (path, row)
            if filters is not None or with_frames:
                table = _read(path, columns, filters)
            for record in table.to_pylist():
                episode = _from_row(record, path)
                if callable(where) and not where(episode):
                    continue
                episodes.append(episode)
        self._index = index
        return episodes

    def load_frames(self, episode: Episode | str) -> np.ndarray:
        """The uint8 [T + 1, H, W, 3] frames of one stored episode (by Episode or episode_id)."""
        episode_id = episode if isinstance(episode, str) else episode.episode_id
        location = self._episode_index().get(episode_id)
        if location is None:
            self._index = None  # another writer may have appended since the index was built
            location = self._episode_index().get(episode_id)
        if location is None:
            raise KeyError(f"episode_id {episode_id!r} is not in the store at {self.directory}")
        path, row = location
        try:
            table = pq.ParquetFile(path).read_row_group(row, columns=["frame_shape", "frames_png"])
        except (OSError, pa.ArrowException) as error:
            raise StoreError(f"cannot read frames from store file {path}: {error}") from error
        record = table.to_pylist()[0]
        return _decode_frames(record["frames_png"], record["frame_shape"], path, episode_id)

    def with_frames(self, episodes: Iterable[Episode]) -> list[Episode]:
        """Copies of `episodes` with `frames` loaded (for training, which expects frames)."""
        return [
            e if e.frames is not None else replace(e, frames=self.load_frames(e)) for e in episodes
        ]

    def __len__(self) -> int:
        self.verify()
        return sum(_metadata(path).num_rows for path in self.part_files())

    def _episode_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            index = {}
            for path in self.part_files():
                ids = _read(path, ["episode_id"]).column("episode_id").to_pylist()
                index.update({episode_id: (path, row) for row, episode_id in enumerate(ids)})
            self._index = index
        return self._index


def _entry(path: Path, episode_ids: list[str], label: Mapping | None) -> dict:
    """The manifest entry of the part file at `path`."""
    return {
        "file": path.name,
        "rows": len(episode_ids),
        "bytes": path.stat().st_size,
        "sha256": sha256(path),
        "episode_ids": list(episode_ids),
        "label": dict(label) if label else None,
    }


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_episode(episode: Episode) -> None:
    if not episode.episode_id:
        raise ValueError(
            f"episode of task {episode.task_id!r} seed {episode.env_seed} has an empty "
            "episode_id; the store needs a unique id per episode"
        )
    T = episode.length
    expected = {
        "actions": (T, None),
        "action_bins": (T, None),
        "logprobs": (T, None),
        "rewards": (T,),
        "states": (T + 1, None),
    }
    for name, shape in expected.items():
        value = np.asarray(getattr(episode, name))
        if value.ndim != len(shape) or value.shape[0] != shape[0]:
            raise ValueError(
                f"episode {episode.episode_id!r}: {name} has shape {value.shape}; "
                f"expected {T if name != 'states' else T + 1} rows (length {T})"
            )
    for name, value in episode.step_info.items():
        if np.asarray(value).shape != (T,):
            raise ValueError(
                f"episode {episode.episode_id!r}: step_info[{name!r}] has shape "
                f"{np.asarray(value).shape}; expected ({T},)"
            )
    if episode.frames is not None:
        frames = np.asarray(episode.frames)
        if (
            frames.dtype != np.uint8
            or frames.ndim != 4
            or frames.shape[0] != T + 1
            or frames.shape[3] != 3
        ):
            raise ValueError(
                f"episode {episode.episode_id!r}: frames have dtype {frames.dtype} shape "
                f"{frames.shape}; expected uint8 [{T + 1}, H, W, 3]"
            )


def _to_row(episode: Episode) -> dict:
    names = sorted(episode.step_info)
    info = [np.asarray(episode.step_info[n], np.float32) for n in names]
    actions = np.asarray(episode.actions, np.float32)
    states = np.asarray(episode.states, np.float32)
    frames = None if episode.frames is None else np.asarray(episode.frames)
    return {
        "episode_id": episode.episode_id,
        "task_id": episode.task_id,
        "env_seed": int(episode.env_seed),
        "instruction": episode.instruction,
        "relabelled_from": episode.relabelled_from,
        "policy_id": episode.policy_id,
        "round": int(episode.round),
        "length": episode.length,
        "is_success": bool(episode.is_success),
        "truncated": bool(episode.truncated),
        "actions": actions.ravel(),
        "action_bins": np.asarray(episode.action_bins, np.int64).ravel(),
        "logprobs": np.asarray(episode.logprobs, np.float32).ravel(),
        "action_dim": int(actions.shape[1]) if actions.ndim == 2 else 0,
        "rewards": np.asarray(episode.rewards, np.float32).ravel(),
        "states": states.ravel(),
        "state_dim": int(states.shape[1]),
        "step_info_names": names,
        "step_info_values": np.concatenate(info) if info else np.zeros(0, np.float32),
        "achieved": list(episode.achieved),
        "achieved_at_names": list(episode.achieved_at),
        "achieved_at_steps": [int(t) for t in episode.achieved_at.values()],
        "frame_shape": None if frames is None else list(frames.shape),
        "frames_png": None if frames is None else _encode_frames(frames),
    }


def _from_row(record: dict, path: Path) -> Episode:
    try:
        T, d = record["length"], record["action_dim"]
        names = record["step_info_names"]
        values = np.asarray(record["step_info_values"], np.float32).reshape(len(names), T)
        frames = None
        if record.get("frames_png") is not None:
            frames = _decode_frames(
                record["frames_png"], record["frame_shape"], path, record["episode_id"]
            )
        return Episode(
            task_id=record["task_id"],
            env_seed=record["env_seed"],
            instruction=record["instruction"],
            actions=np.asarray(record["actions"], np.float32).reshape(T, d),
            action_bins=np.asarray(record["action_bins"], np.int64).reshape(T, d),
            logprobs=np.asarray(record["logprobs"], np.float32).reshape(T, d),
            rewards=np.asarray(record["rewards"], np.float32).reshape(T),
            is_success=record["is_success"],
            truncated=record["truncated"],
            states=np.asarray(record["states"], np.float32).reshape(T + 1, record["state_dim"]),
            frames=frames,
            step_info={name: values[i].copy() for i, name in enumerate(names)},
            achieved=list(record["achieved"]),
            achieved_at=dict(
                zip(record["achieved_at_names"], map(int, record["achieved_at_steps"]), strict=True)
            ),
            policy_id=record["policy_id"],
            round=record["round"],
            episode_id=record["episode_id"],
            relabelled_from=record["relabelled_from"],
        )
    except StoreError:
        raise
    except (TypeError, ValueError) as error:
        raise StoreError(
            f"store file {path} holds a malformed episode {record.get('episode_id')!r}: {error}"
        ) from error


def _encode_frames(frames: np.ndarray) -> bytes:
    count, height, width, channels = frames.shape
    buffer = io.BytesIO()
    Image.fromarray(frames.reshape(count * height, width, channels)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode_frames(data: bytes, shape: list[int], path: Path, episode_id: str) -> np.ndarray:
    try:
        strip = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
        return strip.reshape(shape)
    except (OSError, ValueError) as error:
        raise StoreError(
            f"store file {path}: frames of episode {episode_id!r} cannot be decoded: {error}"
        ) from error


def _parquet_filters(where: Mapping[str, object]) -> list[tuple] | None:
    filters = []
    for column, value in where.items():
        if column not in FILTER_COLUMNS:
            raise ValueError(
                f"cannot filter on {column!r}; filterable columns: {', '.join(FILTER_COLUMNS)}"
            )
        if isinstance(value, (list, tuple, set, frozenset)):
            filters.append((column, "in", list(value)))
        else:
            filters.append((column, "==", value))
    return filters or None


def _read(path: Path, columns: list[str], filters: list[tuple] | None = None) -> pa.Table:
    try:
        schema = _metadata(path).schema.to_arrow_schema()
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise StoreError(
                f"store file {path} is not an episode part file: missing columns {missing}"
            )
        return pq.read_table(path, columns=columns, filters=filters)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(f"cannot read store file {path}: {error}") from error


def _metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as error:
        raise StoreError(
            f"cannot read store file {path}: {error} (corrupt or not a Parquet file)"
        ) from error


def _write_atomically(final: Path, mode: str, write: Callable[[Any], object]) -> None:
    """`write(handle)` into a temporary file beside `final` (fsynced), then renamed onto it; the
    temporary file is removed if anything fails."""
    tmp = final.with_name(f"{TMP_PREFIX}{final.name}.{os.getpid()}")
    try:
        with open(tmp, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
