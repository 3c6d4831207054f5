"""Organizing verified episodes for the three optimizers: the SFT set, RL groups and DPO pairs."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

import envs
from verifiers.episode import Decision, Episode
from verifiers.relabel import relabel, relabelled_source

BALANCE_MODES = ("none", "downsample", "upsample")
RL_GROUPINGS = ("instruction", "scene", "hindsight", "trajectory")
"""What an RL group shares: `instruction` (task, seed and instruction: the GRPO / RLOO group),
`scene` (task and seed: samples of one scene under its different instructions, whose
leave-one-out baseline is the scene's other samples, `collect.instructions_per_scene`) or
`hindsight` (task, seed and instruction, over every sample of the scene judged against that
instruction: `hindsight_views`) or `trajectory` (one sample judged against every instruction
of its scene: its leave-one-out baseline is its outcome under the other instructions, so the
update learns which instruction a trajectory fulfils and never pushes down a sample that
achieved nothing)."""
DPO_PAIRINGS = ("instruction", "hindsight")
"""Where a DPO pair's two trajectories come from: `instruction` (a success and a failure sampled
under one scene's instruction) or `hindsight` (any two samples of one scene, one that achieved
the instruction and one that did not, `hindsight_views`)."""


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
    relabelled: Sequence[Episode] | None = None,
    relabelled_decisions: Sequence[Decision] | None = None,
) -> list[RLGroup]:
    """Episodes grouped by (task, seed, instruction), or with `by="scene"` by (task, seed), each
    with its 0/1 verified outcome; with `by="hindsight"`, every episode of a scene as seen under
    each instruction of the scene (`hindsight_views`, from `relabelled`, the round's verified
    relabellings, or without them the environment's); with `by="trajectory"`, each episode's
    views under the scene's instructions (the group's `instruction` is "sample <k>").

    `group_size` K keeps the first K episodes of each group and drops groups with fewer;
    otherwise groups smaller than `min_group_size` are dropped. `drop_uniform` drops groups whose
    outcomes are all equal (their group-relative advantage is zero). Relabelled episodes are left
    out by default: their log-probs were taken under a different instruction.
    """
    if group_size is not None and group_size < 1:
        raise ValueError(f"group_size must be >= 1 or None; got {group_size}")
    episodes, outcome, grouped = _judged_groups(
        episodes, decisions, by, include_relabelled, relabelled, relabelled_decisions
    )
    result = []
    for (task_id, env_seed, instruction), members in grouped.items():
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


def hindsight_views(
    episodes: Sequence[Episode],
    decisions: Sequence[Decision] | None = None,
    relabelled: Sequence[Episode] | None = None,
    relabelled_decisions: Sequence[Decision] | None = None,
) -> dict[tuple[str, int, str], list[tuple[Episode, bool]]]:
    """Per (task, seed, goal): every sampled episode of that scene as seen under an instruction
    naming the goal, with its verified outcome under it (hindsight relabelling, HER, made a
    group). Keyed by the goal's canonical instruction.

    Goals, not strings: "reach the red ball" and "touch the red ball" name one goal
    (`envs.parse_instruction`); a scene's goals are those its samples were told and those a
    failed sample achieved. Under its own goal a sample is itself, with its verified outcome;
    under a goal it achieved, its relabelling (the prefix up to the step it achieved it: a
    success); under any other, a failure (`episode_id` suffixed `/as:<instruction>`). A view
    under another goal is phrased in the template of the instruction the sample was told, has
    no behaviour log-probs (NaN `logprobs`: the policy was told something else when it sampled
    those actions; RL takes them from the policy entering the update) and keeps the instruction
    it was told in `relabelled_from`. `relabelled` are the round's verified relabellings
    (`verifiers.stage.verify_round`), decided by `relabelled_decisions`; None relabels the
    episodes' environment failures here (for counting, before verification)."""
    if any(e.relabelled_from is not None for e in episodes):
        raise ValueError(
            "hindsight views are built from the sampled episodes; got relabelled ones among "
            "them (pass those as `relabelled`)"
        )
    outcome = passed_episodes(episodes, decisions)
    if relabelled is None:
        relabelled = relabel([e for e, ok in zip(episodes, outcome, strict=True) if not ok])
    achieved: dict[str, dict[str, Episode]] = {}
    for copy, ok in zip(relabelled, passed_episodes(relabelled, relabelled_decisions), strict=True):
        if ok:
            goal = _canonical(copy.task_id, copy.instruction)
            achieved.setdefault(relabelled_source(copy), {})[goal] = copy
    told = [_canonical(e.task_id, e.instruction) for e in episodes]
    scenes: dict[tuple[str, int], list[int]] = {}
    goals: dict[tuple[str, int], dict[str, None]] = {}
    for i, episode in enumerate(episodes):
        scene = (episode.task_id, int(episode.env_seed))
        scenes.setdefault(scene, []).append(i)
        named = goals.setdefault(scene, {})
        named[told[i]] = None
        named.update(dict.fromkeys(achieved.get(episode.episode_id, {})))
    views: dict[tuple[str, int, str], list[tuple[Episode, bool]]] = {}
    for scene, members in scenes.items():
        for goal in goals[scene]:
            view = views.setdefault((*scene, goal), [])
            for i in members:
                episode = episodes[i]
                if told[i] == goal:
                    view.append((episode, outcome[i]))
                    continue
                instruction = _rephrased(episode.task_id, goal, episode.instruction)
                if goal in achieved.get(episode.episode_id, {}):
                    success = achieved[episode.episode_id][goal]
                    view.append((_unsampled(replace(success, instruction=instruction)), True))
                else:
                    failure = replace(
                        episode,
                        instruction=instruction,
                        is_success=False,
                        relabelled_from=episode.instruction,
                        episode_id=f"{episode.episode_id}/as:{instruction}",
                    )
                    view.append((_unsampled(failure), False))
    return views


@functools.lru_cache(maxsize=4096)
def _canonical(task_id: str, instruction: str) -> str:
    """The canonical instruction (template 0) of the goal `instruction` names."""
    _, goal = envs.parse_instruction(task_id, instruction)
    return envs.phrase_instruction(task_id, goal)


@functools.lru_cache(maxsize=4096)
def _rephrased(task_id: str, canonical: str, like: str) -> str:
    """The goal of `canonical` phrased in the template `like` is written in."""
    template, _ = envs.parse_instruction(task_id, like)
    _, goal = envs.parse_instruction(task_id, canonical)
    return envs.phrase_instruction(task_id, goal, template)


def _judged_groups(
    episodes: Sequence[Episode],
    decisions: Sequence[Decision] | None,
    by: str,
    include_relabelled: bool,
    relabelled: Sequence[Episode] | None,
    relabelled_decisions: Sequence[Decision] | None,
) -> tuple[list[Episode], list[bool], dict[tuple, list[int]]]:
    """The episodes a grouping judges (with `by="hindsight"` or `"trajectory"` the scene's
    views), their outcomes, and each group's member indices."""
    if by not in ("hindsight", "trajectory"):
        return (
            list(episodes),
            passed_episodes(episodes, decisions),
            _groups(episodes, include_relabelled, by),
        )
    views = hindsight_views(episodes, decisions, relabelled, relabelled_decisions)
    flat = [e for members in views.values() for e, _ in members]
    outcome = [ok for members in views.values() for _, ok in members]
    starts = np.cumsum([0] + [len(m) for m in views.values()]).tolist()
    groups = {key: list(range(starts[g], starts[g + 1])) for g, key in enumerate(views)}
    if by == "trajectory":  # the k-th member of each view of a scene is the scene's k-th sample
        by_sample: dict[tuple, list[int]] = {}
        for (task_id, env_seed, _), members in groups.items():
            for k, i in enumerate(members):
                by_sample.setdefault((task_id, env_seed, f"sample {k}"), []).append(i)
        groups = by_sample
    return flat, outcome, groups


def _unsampled(episode: Episode) -> Episode:
    """`episode` without behaviour log-probs (its actions were sampled under another instruction)."""
    return replace(episode, logprobs=np.full(episode.logprobs.shape, np.nan, dtype=np.float32))


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
    by: str = "instruction",
    relabelled: Sequence[Episode] | None = None,
    relabelled_decisions: Sequence[Decision] | None = None,
) -> list[DPOPair]:
    """(success, failure) pairs from the same task, seed and instruction; with `by="hindsight"`
    from the scene's samples as seen under each of its instructions (`hindsight_views`): a
    sample that reached the named object is preferred over one that did not, whatever each was
    told.

    Every success is paired with every failure of its group; `max_pairs_per_group` keeps a seeded
    random subset of them, preferring pairs that reuse no episode.
    """
    if max_pairs_per_group is not None and max_pairs_per_group < 1:
        raise ValueError(f"max_pairs_per_group must be >= 1 or None; got {max_pairs_per_group}")
    if by not in DPO_PAIRINGS:
        raise ValueError(f"unknown DPO pairing {by!r}; expected one of {DPO_PAIRINGS}")
    episodes, outcome, groups = _judged_groups(
        episodes, decisions, by, include_relabelled, relabelled, relabelled_decisions
    )
    rng = np.random.default_rng(seed)
    pairs = []
    for members in groups.values():
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
