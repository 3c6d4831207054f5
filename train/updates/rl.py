"""RL on verified outcomes: a group-relative policy gradient (RLOO advantages, PPO-clip, optional KL).

Each `RLGroup` holds K episodes of one task, seed and instruction with their outcomes. An
episode's advantage is its outcome minus the mean of the group's other outcomes; every step of
the episode shares it. The importance ratio is taken per action token against the log-probs
recorded at rollout (`episode.logprobs`, sampled at `temperature`: the collection's, never a
setting of its own) and clipped PPO-style. A hindsight view (an episode judged against an
instruction it was not told) has no recorded log-probs; its ratio is against the policy entering
the update (`fill_old_logprobs`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from train.collect.guidance import policy_acted
from train.updates.batching import (
    StepSet,
    chunks,
    demo_nll,
    demo_step_set,
    episode_steps,
    forward_logprobs,
    minibatches,
    shift_images,
    step_logprobs,
)
from train.updates.config import RLConfig
from train.updates.losses import group_advantages, grpo_loss
from train.updates.optim import (
    Optimization,
    num_optimizer_steps,
    trainable_parameters,
    training_mode,
)
from train.updates.value import value_advantages


def group_steps(
    groups: Sequence, chunk: int = 1, advantage_norm: str = "none", negative_weight: float = 1.0
) -> tuple[StepSet | None, torch.Tensor, int]:
    """Steps of the groups whose outcomes vary, their advantages [N] (RLOO, scaled per
    `advantage_norm`, negative ones by `negative_weight`), and how many groups were skipped.

    A group whose rewards are all equal carries no learning signal (every advantage is 0) and
    is skipped. Raises when an episode has no recorded log-probs (it was not the MLLM's rollout).
    """
    episodes, rewards, group_ids, skipped = _gather(groups, keep_uniform=False)
    if not episodes:
        return None, torch.zeros(0), skipped
    rewards_t, group_ids_t = torch.from_numpy(rewards), torch.from_numpy(group_ids)
    advantages = normalize_advantages(
        group_advantages(rewards_t, group_ids_t), rewards_t, group_ids_t, advantage_norm
    )
    advantages = torch.where(advantages < 0, advantages * negative_weight, advantages)
    steps = episode_steps(episodes, chunk=chunk, acted=True)
    return steps, advantages[torch.from_numpy(steps.episode_index)], skipped


def tree_advantages(bins: Sequence[np.ndarray], rewards: np.ndarray) -> list[np.ndarray]:
    """Per-token advantages of one group's samples from the prefix tree of their action tokens:
    float32 [T_i, d] for each sample's `bins` [T_i, d].

    The samples of a group start from one scene and the simulator is deterministic, so two
    samples whose tokens agree so far have seen the same observations: they sit at one node of a
    tree whose edges are the tokens (step by step, dimension by dimension). A node's value is
    the mean outcome of the samples through it. Where the samples of a node part ways, each
    child's token gets its value minus the node's (a Monte-Carlo advantage of that choice, as
    VinePPO and tree-search RL estimate them); a token every sample of the node chose alike, and
    every token after a sample is alone in its branch, gets 0: nothing in the group tells them
    apart. Along a sample's path the advantages add up to its outcome minus the group's mean:
    the group baseline's credit (up to RLOO's n / (n - 1)), moved onto the tokens where the
    samples differed."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if len(bins) != len(rewards):
        raise ValueError(f"expected one reward per sample ({len(bins)}), got {len(rewards)}")
    flat = [np.asarray(b).reshape(-1) for b in bins]
    out = [np.zeros(len(f), dtype=np.float32) for f in flat]
    stack = [(np.arange(len(flat)), 0)]  # (members of a node, depth in tokens)
    while stack:
        members, depth = stack.pop()
        value = rewards[members].mean()
        going = members[[len(flat[m]) > depth for m in members]]
        while len(going) > 1:
            tokens = np.array([flat[m][depth] for m in going])
            if np.all(tokens == tokens[0]):  # no choice here: walk down without a new node
                depth += 1
                going = going[[len(flat[m]) > depth for m in going]]
                value = rewards[going].mean() if len(going) else value
                continue
            for token in np.unique(tokens):
                child = going[tokens == token]
                advantage = rewards[child].mean() - value
                for m in child:
                    out[m][depth] = advantage
                stack.append((child, depth + 1))
            break
    return [o.reshape(np.asarray(b).shape) for o, b in zip(out, bins, strict=True)]


def tree_steps(
    groups: Sequence, chunk: int, advantage_norm: str = "none", negative_weight: float = 1.0
) -> tuple[StepSet | None, torch.Tensor, int]:
    """`group_steps` with the prefix-tree baseline (`RLConfig.baseline = "tree"`): the steps of
    the groups whose outcomes vary and their per-token advantages [N, d] (`tree_advantages`),
    scaled per `advantage_norm` (`group`: by the standard deviation of the group's outcomes;
    `batch`: by that of the update's non-zero advantages) and `negative_weight`; how many groups
    were skipped."""
    episodes, rewards, group_ids, skipped = _gather(groups, keep_uniform=False)
    if not episodes:
        return None, torch.zeros(0), skipped
    per_episode: list[np.ndarray] = [None] * len(episodes)
    for g in np.unique(group_ids):
        members = np.flatnonzero(group_ids == g)
        advantages = tree_advantages([episodes[i].action_bins for i in members], rewards[members])
        for i, a in zip(members, advantages, strict=True):
            per_episode[i] = a
    acted = [a[policy_acted(e)] for a, e in zip(per_episode, episodes, strict=True)]
    advantages = torch.from_numpy(np.concatenate(acted).astype(np.float32))
    steps = episode_steps(episodes, chunk=chunk, acted=True)
    if advantage_norm == "group":  # each episode's 1 / its group's outcome spread
        rewards_t, group_ids_t = torch.from_numpy(rewards), torch.from_numpy(group_ids)
        scale = normalize_advantages(torch.ones(len(episodes)), rewards_t, group_ids_t, "group")
        advantages = advantages * scale[torch.from_numpy(steps.episode_index)][:, None]
    elif advantage_norm == "batch":
        nonzero = advantages[advantages != 0]
        spread = float(nonzero.std(unbiased=False)) if len(nonzero) > 1 else 0.0
        advantages = advantages / spread if spread > 0 else advantages
    advantages = torch.where(advantages < 0, advantages * negative_weight, advantages)
    return steps, advantages, skipped


def value_steps(
    groups: Sequence, chunk: int, config: RLConfig, seed: int = 0
) -> tuple[StepSet | None, torch.Tensor, int, dict[str, float]]:
    """`group_steps` with a learned value baseline (`config.baseline = "value"`,
    `train.updates.value`): the steps the policy acted in every group's episodes (groups with
    equal outcomes too: the critic gives their steps credit of their own), each step's GAE
    advantage from cross-fitted critics, scaled per `config.advantage_norm` (`group`: by the
    standard deviation of the group's outcomes, where it is not 0) and `negative_weight`; how
    many groups were skipped (the empty ones); and the critic's diagnostics."""
    episodes, rewards, group_ids, skipped = _gather(groups, keep_uniform=True)
    if not episodes:
        return None, torch.zeros(0), skipped, {}
    per_episode, metrics = value_advantages(
        episodes,
        rewards,
        lam=config.gae_lambda,
        folds=config.value_folds,
        epochs=config.value_epochs,
        lr=config.value_lr,
        batch_size=config.value_batch_size,
        seed=seed,
    )
    acted = [a[policy_acted(e)] for a, e in zip(per_episode, episodes, strict=True)]
    advantages = torch.from_numpy(np.concatenate(acted))
    steps = episode_steps(episodes, chunk=chunk, acted=True)
    episode_of = torch.from_numpy(steps.episode_index)
    rewards_t, group_ids_t = torch.from_numpy(rewards), torch.from_numpy(group_ids)
    if config.advantage_norm == "group":  # each episode's 1 / its group's outcome spread
        scale = normalize_advantages(torch.ones(len(episodes)), rewards_t, group_ids_t, "group")
        advantages = advantages * scale[episode_of]
    else:
        advantages = normalize_advantages(
            advantages, rewards_t[episode_of], group_ids_t[episode_of], config.advantage_norm
        )
    advantages = torch.where(advantages < 0, advantages * config.negative_weight, advantages)
    return steps, advantages, skipped, metrics


def _gather(groups: Sequence, keep_uniform: bool):
    """The groups' episodes, rewards [E] and group ids [E] (float32, int64), and how many groups
    were left out: those of one member or equal rewards (no group-relative signal), unless
    `keep_uniform` (then only empty groups). Raises on a policy-acted step without finite
    rollout log-probs (the episode was not the MLLM's rollout)."""
    episodes, rewards, group_ids, skipped = [], [], [], 0
    for g, group in enumerate(groups):
        group_rewards = np.asarray(group.rewards, dtype=np.float32)
        if group_rewards.shape != (len(group.episodes),):
            raise ValueError(
                f"group {g} ({group.task_id} seed {group.env_seed}): expected rewards "
                f"[{len(group.episodes)}], got shape {group_rewards.shape}"
            )
        uniform = len(group_rewards) < 2 or np.all(group_rewards == group_rewards[0])
        if not len(group_rewards) or (uniform and not keep_uniform):
            skipped += 1
            continue
        for episode in group.episodes:
            if episode.relabelled_from is not None:
                continue  # a hindsight view: its actions were sampled under another instruction
            if not np.isfinite(episode.logprobs[policy_acted(episode)]).all():
                raise ValueError(
                    f"episode {episode.episode_id!r} (policy {episode.policy_id!r}) has non-finite "
                    "rollout log-probs; RL expects episodes sampled by the MLLM policy"
                )
        episodes.extend(group.episodes)
        rewards.append(group_rewards)
        group_ids.extend([g] * len(group.episodes))
    if not episodes:
        return [], np.zeros(0, np.float32), np.zeros(0, np.int64), skipped
    return episodes, np.concatenate(rewards), np.asarray(group_ids, dtype=np.int64), skipped


def fill_old_logprobs(
    policy, steps: StepSet, temperature: float, chunk: int, current: torch.Tensor | None = None
) -> tuple[torch.Tensor, int]:
    """The steps' behaviour log-probs [N, d]: the recorded ones, and for the rows without any
    (hindsight views of relabelled episodes: `train.organize.datasets.hindsight_views`) those of
    `policy` as it is now, before the update, so their ratio starts at 1 and the clip keeps the
    update near the entering policy under the relabelled instruction. `current`: the policy's
    log-probs of every step, when the caller has them already (no second forward pass). Also
    how many rows were filled."""
    old = torch.from_numpy(steps.old_logprobs)
    missing = np.flatnonzero(~np.isfinite(steps.old_logprobs).all(axis=1))
    if len(missing):
        rows = torch.from_numpy(missing)
        old = old.clone()
        old[rows] = (
            current[rows]
            if current is not None
            else step_logprobs(policy, steps.select(missing), temperature, chunk)
        )
    return old, len(missing)


def episode_weights(episode_index: np.ndarray) -> torch.Tensor:
    """[N] per-step weights for episode-level aggregation: 1 / the length of the step's episode,
    scaled so that they average 1 over the steps (the loss keeps its scale)."""
    _, inverse, counts = np.unique(episode_index, return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return torch.from_numpy(weights * len(weights) / weights.sum()).to(torch.float32)


def normalize_advantages(
    advantages: torch.Tensor, rewards: torch.Tensor, group_ids: torch.Tensor, norm: str
) -> torch.Tensor:
    """`advantages` [N] scaled per `norm`: `none`; `group`, divided by the standard deviation of
    their group's rewards (GRPO); `batch`, by the standard deviation of all advantages. A zero
    deviation leaves them as they are."""
    if norm == "none":
        return advantages
    if norm == "batch":
        std = advantages.std(unbiased=False)
        return advantages / std if std > 0 else advantages
    if norm != "group":
        raise ValueError(f"unknown advantage_norm {norm!r}; expected none, group or batch")
    out = advantages.clone()
    for g in torch.unique(group_ids):
        rows = group_ids == g
        std = rewards[rows].std(unbiased=False)
        if std > 0:
            out[rows] = advantages[rows] / std
    return out


def reference_logprobs(policy, steps: StepSet, temperature: float, chunk: int, reference=None):
    """Log-probs [N, d] of the steps under the reference policy, computed once before training.

    The reference is `reference` if given; else, with LoRA, the policy with its adapter
    disabled; else the policy as it is now (before the update), which then needs no copy.
    """
    if reference is not None:
        return step_logprobs(reference, steps, temperature, chunk)
    if policy.has_lora:
        with policy.adapter_disabled():
            return step_logprobs(policy, steps, temperature, chunk)
    return step_logprobs(policy, steps, temperature, chunk)


def rl_update(
    policy,
    groups: Sequence,
    config: RLConfig | None = None,
    reference=None,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    demos: Sequence = (),
) -> dict[str, float]:
    """One group-relative policy-gradient update of `policy` in place on `groups` (RLGroups).

    `temperature`: the one the episodes were sampled at (their recorded log-probs were taken at
    it; a campaign passes `collect.temperature`); `seed` seeds the shuffling and any dropout.
    `demos`: successful demonstrations (frames loaded); with `config.demo_weight` > 0 every
    minibatch also learns as many of their steps by cross-entropy (`train/rl_demo_nll`, the
    last epoch's mean), the policy-gradient term weighted by `config.pg_weight`.

    Returns `train/rl_loss`, `train/rl_pg_loss`, `train/rl_clip_frac`, `train/rl_ratio`, `train/kl`,
    `train/rl_approx_kl` (KL of the acting policy from the updated one, k3), `train/rl_entropy`
    (sampled-token estimate) (means over the last epoch), `train/rl_ratio_max` (over the whole
    update), `train/rl_groups_used`, `train/rl_groups_skipped`, `train/rl_advantage_abs`,
    `_mean`, `_std`, `_max`, the optimizer's metrics (gradient norm and optimizer steps among
    them), `train/rl_stopped_by_kl` (1 when `config.target_kl` ended the update early),
    `train/rl_hindsight_step_frac` (the share of steps from hindsight views, whose behaviour
    log-probs are the entering policy's: `fill_old_logprobs`),
    `train/rl_samples`, `train/rl_samples_per_s` (the policy's training alone) and
    `train/rl_seconds` (the whole update, a value baseline's critic included).
    With `config.baseline = "value"` (`value_steps`) every non-empty group is used and the
    critic's diagnostics are added (`train/value_loss`, `train/value_explained_variance`, ...).
    With every group skipped nothing is trained and only the counts are returned.
    """
    config = config or RLConfig()
    _check_temperature(temperature)
    begin = time.perf_counter()
    value_metrics = {}
    if config.baseline == "value":
        steps, advantages, skipped, value_metrics = value_steps(groups, policy.chunk, config, seed)
    elif config.baseline == "tree":
        steps, advantages, skipped = tree_steps(
            groups, policy.chunk, config.advantage_norm, config.negative_weight
        )
    else:
        steps, advantages, skipped = group_steps(
            groups, policy.chunk, config.advantage_norm, config.negative_weight
        )
    counts = {
        "train/rl_groups_used": float(len(groups) - skipped),
        "train/rl_groups_skipped": float(skipped),
    }
    if steps is None:
        return counts
    start = time.perf_counter()
    ref = None
    if config.kl_coef > 0:
        ref = reference_logprobs(policy, steps, temperature, config.forward_chunk, reference)
    demo_steps = demo_step_set(demos, policy.chunk, config.demo_weight, "optimize.rl")
    params = trainable_parameters(policy, config)
    opt = Optimization(params, config, num_optimizer_steps(len(steps), config), name="rl")
    generator = torch.Generator().manual_seed(seed)
    old, filled = fill_old_logprobs(policy, steps, temperature, config.forward_chunk)
    weights = episode_weights(steps.episode_index) if config.aggregation == "episode" else None
    keys = ("loss", "pg_loss", "clip_frac", "ratio_mean", "kl", "approx_kl", "entropy", "demo_nll")
    ratio_max = 0.0
    samples = 0
    stopped = False
    with training_mode(policy, seed):
        for _ in range(config.epochs):
            if opt.done or stopped:
                break
            sums, count = dict.fromkeys(keys, 0.0), 0
            for index in minibatches(len(steps), config.batch_size, generator):
                if opt.done or stopped:
                    break
                batch_kl = 0.0
                for rows in (index[part] for part in chunks(len(index), config.forward_chunk)):
                    part = steps.select(rows)
                    part.images = shift_images(part.images, config.augment_shift, generator)
                    new = forward_logprobs(policy, part, temperature)
                    loss, m = grpo_loss(
                        new,
                        old[rows].to(new.device),
                        advantages[rows].to(new.device),
                        clip_eps=config.clip_eps,
                        ref_logprobs=None if ref is None else ref[rows].to(new.device),
                        kl_coef=config.kl_coef,
                        clip_high=config.clip_high or None,
                        weights=None if weights is None else weights[rows].to(new.device),
                    )
                    loss = loss * config.pg_weight
                    if demo_steps is not None:
                        nll = demo_nll(
                            policy, demo_steps, len(rows), generator, config.augment_shift
                        )
                        loss = loss + config.demo_weight * nll
                        m["demo_nll"] = nll.detach()
                    (loss * (len(rows) / len(index)) * opt.loss_scale).backward()
                    for key, value in {"loss": loss.detach(), **m}.items():
                        if key in sums:
                            sums[key] += float(value) * len(rows)
                    ratio_max = max(ratio_max, float(m["ratio_max"]))
                    batch_kl += float(m["approx_kl"]) * len(rows) / len(index)
                count += len(index)
                opt.accumulated()
                # PPO's early stop: the minibatch just taken shows the policy has left the
                # neighbourhood of the one that acted; the ratio clip no longer bounds the step
                stopped = config.target_kl > 0 and batch_kl > config.target_kl
            samples += count
        opt.flush()
    elapsed = time.perf_counter() - start
    mean = {key: value / max(count, 1) for key, value in sums.items()}
    return {
        "train/rl_loss": mean["loss"],
        "train/rl_pg_loss": mean["pg_loss"],
        "train/rl_clip_frac": mean["clip_frac"],
        "train/rl_ratio": mean["ratio_mean"],
        "train/kl": mean["kl"],
        "train/rl_approx_kl": mean["approx_kl"],
        "train/rl_entropy": mean["entropy"],
        "train/rl_ratio_max": ratio_max,
        **counts,
        "train/rl_advantage_abs": float(advantages.abs().mean()),
        "train/rl_advantage_mean": float(advantages.mean()),
        "train/rl_advantage_std": float(advantages.std(unbiased=False)),
        "train/rl_advantage_max": float(advantages.abs().max()),
        **opt.metrics(),
        **value_metrics,
        **({"train/rl_demo_nll": mean["demo_nll"]} if demo_steps is not None else {}),
        "train/rl_stopped_by_kl": float(stopped),
        "train/rl_hindsight_step_frac": filled / len(steps),
        "train/rl_samples": float(samples),
        "train/rl_samples_per_s": samples / elapsed,
        "train/rl_seconds": time.perf_counter() - begin,
    }


@torch.no_grad()
def rl_objective(
    policy, groups: Sequence, config: RLConfig | None = None, *, temperature: float = 1.0
) -> float:
    """The clipped surrogate loss (no KL) of `policy` on the groups' steps against their rollout
    log-probs (sampled at `temperature`); lower is better. NaN when every group is skipped."""
    config = config or RLConfig()
    _check_temperature(temperature)
    steps, advantages, _ = group_steps(
        groups, policy.chunk, config.advantage_norm, config.negative_weight
    )
    if steps is None:
        return float("nan")
    new = step_logprobs(policy, steps, temperature, config.forward_chunk)
    old, _ = fill_old_logprobs(policy, steps, temperature, config.forward_chunk, current=new)
    loss, _ = grpo_loss(
        new,
        old,
        advantages,
        clip_eps=config.clip_eps,
        clip_high=config.clip_high or None,
    )
    return float(loss)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0 (the one the episodes were sampled at), got {temperature}"
        )
