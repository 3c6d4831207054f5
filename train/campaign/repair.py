"""What `run --resume` makes again before the loop continues: every record of the campaign is checked
against what was recorded when it was written, and whatever is missing or damaged is made again
the way it was first made, round by round (a round's chunks need the checkpoint before it):

- the store's manifest, lost or unreadable: the part files on disk that read back whole and hold
  a chunk of this campaign are recorded again (their checksums as found);
- a stored part missing or damaged, or a chunk of a collected round absent from the store: the
  chunk is collected again (a chunk's episodes depend only on the chunk, the policy that collected
  it and the vector env's size); damaged parts leave the store (to damaged/) before any round is
  repaired, so that training an earlier round again can load the store meanwhile;
- a checkpoint missing or damaged (or, from records format 2 on, without its checksum record):
  the round is trained again from its stored episodes (training is deterministic at a fixed torch
  thread count), the damaged copy set aside in checkpoints/damaged/;
- a complete round's held-out outcomes missing or damaged: the round's checkpoint is evaluated
  again.

Each repair is logged with whether it came back identical to what was first written (its
recorded SHA-256, or the rates metrics.jsonl records). What cannot be made again raises an error
naming the file and what it would need.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from train.collect.store import MANIFEST, PartProblem, StoreError
from train.rundir.integrity import (
    ChecksumRecordError,
    checkpoint_problem,
    file_checksums,
    outcomes_problem,
    read_checksums,
)
from verifiers.episode import Episode

if TYPE_CHECKING:
    from train.campaign.loop import Campaign

log = logging.getLogger("autodidact")


def repair_run(campaign: Campaign) -> None:
    """Check and make again, round by round, what the campaign at `campaign.out` has lost."""
    rows = {row["round"]: row for row in campaign.runlog.rows()}
    recover_manifest(campaign)
    problems = campaign.store.check()
    for problem in problems:
        label = problem.entry.get("label") or {}
        if "round" not in label or "chunk" not in label:
            raise StoreError(
                f"{problem.describe()}, and it records no round and chunk, so it cannot be "
                "collected again"
            )
    # out of the store at once, so that retraining an earlier round can load the store while a
    # later round's chunk waits for that round's checkpoint to be collected again
    if problems:
        campaign.store.drop_parts([problem.file for problem in problems])
    damaged = {(p.entry["label"]["round"], p.entry["label"]["chunk"]): p for p in problems}
    for k in range(campaign.config.rounds + 1):
        collected = (
            k in rows or campaign.runlog.has_partial(k) or campaign.checkpoint_dir(k).exists()
        )
        collect_absent_chunks(campaign, k, damaged, whole_round=collected)
        repair_checkpoint(campaign, k, rows.get(k))
        if k in rows:
            repair_outcomes(campaign, k, rows[k])


def recover_manifest(campaign: Campaign) -> None:
    """Record again the parts of a store whose manifest is unreadable (set aside) or, in a run
    whose format requires one, missing."""
    store = campaign.store
    try:
        if store.manifest() is not None:
            return
        if not store.require_manifest:
            return  # a store written before the manifest existed
    except StoreError as err:
        store.set_aside(MANIFEST)
        log.info("store: %s; set aside in damaged/", err)
    files = store.files_on_disk()
    if not files:
        return
    chunk_of = {
        tuple(job.episode_id(k) for job in chunk.jobs): (k, chunk.index)
        for k in range(campaign.config.rounds + 1)
        for chunk in campaign.chunks(k)
    }
    found: dict[tuple[int, int], Path] = {}
    for path in files:
        try:
            key = chunk_of.get(tuple(store.part_episode_ids(path)))
        except StoreError as err:
            store.set_aside(path.name)
            log.info("store: %s; set aside in damaged/", err)
            continue
        if key is None:
            log.info("store: %s holds no chunk of this campaign; left out", path.name)
            continue
        found[key] = path  # a later copy of a chunk (an append a kill left) wins
    parts = [(found[key], {"round": key[0], "chunk": key[1]}) for key in sorted(found)]
    store.recover_manifest(parts)
    log.info(
        "store: %s was lost; recorded again the %d part(s) on disk that read back whole and hold "
        "a chunk of this campaign (rounds %s), with their checksums as found",
        MANIFEST,
        len(parts),
        sorted({key[0] for key in found}),
    )


def collect_chunk(campaign: Campaign, k: int, c: int) -> list[Episode]:
    """Chunk c of round k, collected again by the policy that first collected it."""
    if k > 0:
        problem = checkpoint_problem(campaign.checkpoint_dir(k - 1), required=False)
        if problem is not None:
            raise StoreError(
                f"round {k} chunk {c} must be collected again, by round {k - 1}'s checkpoint, "
                f"which is {problem}"
            )
    policy = campaign.demonstrator() if k == 0 else campaign.load_policy(k - 1)
    chunk = campaign.chunks(k)[c]
    [(_, episodes)] = campaign.collector().collect([chunk], policy, campaign.config.collect.dtype)
    return episodes


def collect_absent_chunks(
    campaign: Campaign, k: int, damaged: dict[tuple[int, int], PartProblem], whole_round: bool
) -> None:
    """Collect again, into their places, the chunks of round k the store lacks (of a round whose
    collection ended, `whole_round`; else only the damaged parts taken out, `damaged`), and say
    so: for a damaged part, whether its chunk came back identical."""
    store = campaign.store
    while True:  # the chunks again after each: a refill pass's follow from the stored outcomes
        chunks = [c for c in campaign.chunks(k) if whole_round or (k, c.index) in damaged]
        stored = set(store.episode_ids()) if chunks else set()
        absent = None
        for chunk in chunks:
            ids = [job.episode_id(k) for job in chunk.jobs]
            held = sum(i in stored for i in ids)
            if held == len(ids):
                continue
            if held:
                raise StoreError(
                    f"the store holds {held} of the {len(ids)} episodes of round {k} chunk "
                    f"{chunk.index}: not a whole part; set the part aside to collect it again"
                )
            absent = chunk
            break
        if absent is None:
            return
        chunk = absent
        episodes = collect_chunk(campaign, k, chunk.index)
        manifest = store.manifest()
        position = None  # a store older than the manifest: last
        if manifest is not None:
            labels = [entry.get("label") or {} for entry in manifest["parts"]]
            position = sum(
                (label.get("round", -1), label.get("chunk", -1)) < (k, chunk.index)
                for label in labels
            )
        label = {"round": k, "chunk": chunk.index}
        path = store.append(episodes, label=label, position=position)
        problem = damaged.get((k, chunk.index))
        if problem is None:
            log.info(
                "store: round %d chunk %d (%d episodes) is not in the store; collected it again",
                k,
                chunk.index,
                len(episodes),
            )
            continue
        (entry,) = [e for e in store.manifest()["parts"] if e["file"] == path.name]
        log.info(
            "store: %s; collected round %d chunk %d again (%d episodes, %s)",
            problem.describe(),
            k,
            chunk.index,
            len(episodes),
            "identical to the part as written"
            if entry["sha256"] == problem.entry["sha256"]
            else "its SHA-256 differs from the part as written: not the same machine or library "
            "versions?",
        )


def repair_checkpoint(campaign: Campaign, k: int, row: dict[str, Any] | None) -> None:
    """Set a damaged checkpoint of round k aside and, if the round is complete, train it again
    (an incomplete round's the loop trains)."""
    path = campaign.checkpoint_dir(k)
    if row is None and not path.exists():
        return
    problem = checkpoint_problem(path, required=campaign.records_format >= 2)
    if problem is None:
        return
    try:
        as_written = read_checksums(path)
    except ChecksumRecordError:
        as_written = None
    on_disk = file_checksums(path) if path.is_dir() else None
    if path.exists():
        aside = path.parent / "damaged" / path.name
        shutil.rmtree(aside, ignore_errors=True)
        aside.parent.mkdir(exist_ok=True)
        path.rename(aside)
    name = f"checkpoints/{path.name}"
    if row is None:
        log.info(
            "%s: %s; set aside in checkpoints/damaged/, round %d trains again", name, problem, k
        )
        return
    if k == 0:
        campaign.seed_round()
    else:
        campaign.improve_round(k)
    again = read_checksums(path)
    if as_written is not None:
        verdict = "identical to the checkpoint as written" if again == as_written else (
            "its files' SHA-256 differ from those recorded when it was written: not the same "
            "machine, thread count or library versions? (later rounds were trained from the "
            "original)"
        )  # fmt: skip
    elif on_disk == again:
        verdict = "identical to the checkpoint on disk, whose checksum record is written anew"
    else:
        verdict = "nothing recorded to compare it with"
    log.info(
        "%s: %s; trained round %d again from its stored episodes: %s", name, problem, k, verdict
    )


def repair_outcomes(campaign: Campaign, k: int, row: dict[str, Any]) -> None:
    """Evaluate complete round k again if its held-out outcomes are missing or damaged."""
    cfg = campaign.config
    path = campaign.out / "evals" / f"round_{k}.jsonl"
    problem = outcomes_problem(
        path,
        row,
        campaign.task_ids,
        cfg.eval.episodes_per_task,
        required=campaign.records_format >= 2,
    )
    if problem is None:
        return
    campaign.policy = campaign.load_policy(k)
    metrics = campaign.evaluate_round(k)
    differ = sorted(key for key, value in metrics.items() if row.get(key) != value)
    if not differ:
        log.info(
            "evals/%s: %s; evaluated round %d again: %d outcomes, the success rates "
            "metrics.jsonl records",
            path.name,
            problem,
            k,
            len(campaign.task_ids) * cfg.eval.episodes_per_task,
        )
        return
    campaign.runlog.append(k, {**{key: v for key, v in row.items() if key != "round"}, **metrics})
    log.info(
        "evals/%s: %s; evaluated round %d again: %s differ from metrics.jsonl, whose record of "
        "round %d now holds the new values",
        path.name,
        problem,
        k,
        ", ".join(differ),
        k,
    )
