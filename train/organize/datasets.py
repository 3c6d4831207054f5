"""Organizing verified episodes for the three optimizers: the SFT set, RL groups and DPO pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from verifiers.episode import Decision, Episode

BALANCE_MODES = ("none", "downsample", "upsample")
RL_GROUPINGS = ("instruction", "scene")
"""What an RL group shares: `instruction` (task, seed and instruction: the GRPO / RLOO group) or
`scene` (task and seed: samples of one scene under its different instructions, whose
leave-one-out baseline is the scene's other samples, `collect.instructions_per_scene`)."""


@dataclass
class RLGroup:
    """K episodes from the same task and seed (and instruction, unless grouped by scene), with
    their outcomes (for GRPO / RLOO)."""

    task_id: str
    env_seed: int
    instruction: str
    """The members' instruction; "" for a scene group (its members were told different ones)."""
    episodes: list[Episode]
    rewards: np.ndarray
    """float32 [K]: 1.0 for a verified success, 0.0 otherwise."""


@dataclass
class DPOPair:
    """A success (`chosen`) and a failure (`rejected`) from the same task, seed and instruction."""

    chosen: Episode
    rejected: Episode


def passed_episodes(
    episodes: Sequence[Episode], decisions: Sequence[Decision] | None
) -> list[bool]:
    """Per episode, whether it is verified: its decision's pass (`verifiers.stage.decide`), or
    `is_success` when `decisions` is None (the environment's own outcome)."""
    if decisions is None:
        return [bool(e.is_success) for e in episodes]
    ids = [e.episode_id for e in episodes]
    if ids != [d.episode_id for d in decisions]:
        raise ValueError(
            f"{len(decisions)} decisions for {len(episodes)} episodes (or out of order); expected "
            "one decision per episode, in order (verifiers.stage.decide)"
        )
    return [d.passed for d in decisions]


def _key(episode: Episode) -> tuple[str, int, str]:
    return (episode.task_id, int(episode.env_seed), episode.instruction)


def build_sft_set(
    episodes: Sequence[Episode],
    decisions: Sequence[Decision] | None = None,
    *,
    dedup: bool = True,
    balance: str = "none",
    max_per_task: int | None = None,
    seed: int = 0,
) -> list[Episode]:
    """The verified successes, for behaviour cloning.

    `dedup` keeps one episode per (task, seed, instruction, action-bin sequence): the scripted
    expert replayed on one seed gives identical demos that would only reweight the set.
    `balance` evens out tasks: "downsample" keeps as many per task as the rarest task has,
    "upsample" repeats each task's episodes (seeded draw) up to the most common task's count.
    `max_per_task` caps any task afterwards. Relabelled episodes are kept (they are successes).
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {balance!r}; expected one of {BALANCE_MODES}")
    if max_per_task is not None and max_per_task < 1:
        raise ValueError(f"max_per_task must be >= 1 or None; got {max_per_task}")
    selected = [
        e for e, ok in zip(episodes, passed_episodes(episodes, decisions), strict=True) if ok
    ]
    if dedup:
        seen: set[tuple] = set()
        unique = []
        for episode in selected:
            key = (*_key(episode), np.asarray(episode.action_bins).tobytes())
            if key not in seen:
                seen.add(key)
                unique.append(episode)
        selected = unique
    by_task: dict[str, list[Episode]] = {}
    for episode in selected:
        by_task.setdefault(episode.task_id, []).append(episode)
    if not by_task:
        return []
    rng = np.random.default_rng(seed)
    counts = [len(v) for v in by_task.values()]
    target = {"none": None, "downsample": min(counts), "upsample": max(counts)}[balance]
    if max_per_task is not None:
        target = min(target or max_per_task, max_per_task)
    result = []
    for task_episodes in by_task.values():
        n = len(task_episodes)
        if target is None or target == n:
            chosen = list(range(n))
        elif target < n:
            chosen = sorted(rng.choice(n, size=target, replace=False).tolist())
        else:
            extra = rng.choice(n, size=target - n, replace=True).tolist()
            chosen = list(range(n)) + sorted(extra)
        result.extend(task_episodes[i] for i in chosen)
    return result


def _groups(
    episodes: Sequence[Episode], include_relabelled: bool, by: str = "instruction"
) -> dict[tuple, list[int]]:
    if by not in RL_GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; expected one of {RL_GROUPINGS}")
    groups: dict[tuple, list[int]] = {}
    for i, episode in enumerate(episodes):
        if episode.relabelled_from is not None and not include_relabelled:
            continue
        key = _key(episode) if by == "instruction" else (*_key(episode)[:2], "")
        groups.setdefault(key, []).append(i)
    return groups


def build_rl_groups(
    episodes: Sequence[Episode],
    decisions: Sequence[Decision] | None = None,
    *,
    group_size: int | None = None,
    min_group_size: int = 2,
    drop_uniform: bool = False,
    include_relabelled: bool = False,
    by: str = "instruction",
) -> list[RLGroup]:
    """Episodes grouped by (task, seed, instruction), or with `by="scene"` by (task, seed), each
    with its 0/1 verified outcome.

    `group_size` K keeps the first K episodes of each group and drops groups with fewer;
    otherwise groups smaller than `min_group_size` are dropped. `drop_uniform` drops groups whose
    outcomes are all equal (their group-relative advantage is zero). Relabelled episodes are left
    out by default: their log-probs were taken under a different instruction.
    """
    if group_size is not None and group_size < 1:
        raise ValueError(f"group_size must be >= 1 or None; got {group_size}")
    outcome = passed_episodes(episodes, decisions)
    result = []
    for (task_id, env_seed, instruction), members in _groups(
        episodes, include_relabelled, by
    ).items():
        if group_size is not None:
            if len(members) < group_size:
                continue
            members = members[:group_size]
        elif len(members) < min_group_size:
            continue
        rewards = np.array([float(outcome[i]) for i in members], dtype=np.float32)
        if drop_uniform and np.all(rewards == rewards[0]):
            continue
        group = [episodes[i] for i in members]
        result.append(RLGroup(task_id, env_seed, instruction, group, rewards))
    return result


def mixed_groups(episodes: Sequence[Episode], by: str = "instruction") -> dict[str, int]:
    """Per task, the groups (`build_rl_groups`' `by`) of two or more episodes whose environment
    outcomes differ: the groups a group-relative RL update learns from."""
    counts: dict[str, int] = {}
    for group in build_rl_groups(episodes, None, drop_uniform=True, by=by):
        counts[group.task_id] = counts.get(group.task_id, 0) + 1
    return counts


def short_tasks(
    episodes: Sequence[Episode], task_ids: Sequence[str], target: int, by: str = "instruction"
) -> list[str]:
    """The tasks (in `task_ids` order) with fewer than `target` mixed groups in `episodes`."""
    counts = mixed_groups(episodes, by)
    return [t for t in task_ids if counts.get(t, 0) < target]


def build_dpo_pairs(
    episodes: Sequence[Episode],
    decisions: Sequence[Decision] | None = None,
    *,
    max_pairs_per_group: int | None = None,
    include_relabelled: bool = False,
    seed: int = 0,
) -> list[DPOPair]:
    """(success, failure) pairs from the same task, seed and instruction.

    Every success is paired with every failure of its group; `max_pairs_per_group` keeps a seeded
    random subset of them, preferring pairs that reuse no episode.
    """
    if max_pairs_per_group is not None and max_pairs_per_group < 1:
        raise ValueError(f"max_pairs_per_group must be >= 1 or None; got {max_pairs_per_group}")
    outcome = passed_episodes(episodes, decisions)
    rng = np.random.default_rng(seed)
    pairs = []
    for members in _groups(episodes, include_relabelled).values():
        wins = [i for i in members if outcome[i]]
        losses = [i for i in members if not outcome[i]]
        combos = [(w, lo) for w in wins for lo in losses]
        if max_pairs_per_group is not None and len(combos) > max_pairs_per_group:
            order = rng.permutation(len(combos))
            shuffled_wins = [wins[k] for k in rng.permutation(len(wins))]
            shuffled_losses = [losses[k] for k in rng.permutation(len(losses))]
            disjoint = list(zip(shuffled_wins, shuffled_losses, strict=False))
            rest = [combos[k] for k in order if combos[k] not in disjoint]
            combos = (disjoint + rest)[:max_pairs_per_group]
        pairs.extend(DPOPair(episodes[w], episodes[lo]) for w, lo in combos)
    return pairs
