"""The updates' typed configs: what SFT, RL and DPO share (`OptimConfig`) and each one's knobs.

Plain dataclasses that import no torch, so a campaign config loads without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from train.organize.waypoints import KEYFRAME_KINDS


@dataclass
class OptimConfig:
    """Optimisation settings shared by SFT, RL and DPO updates."""

    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    schedule: str = "cosine"
    """`cosine` (decay from `lr` to `lr * min_lr_ratio` after warm-up) or `constant`."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to `lr`."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule, as a fraction of `lr`."""
    batch_size: int = 32
    """Samples per micro-batch: steps for SFT and RL, pairs for DPO."""
    grad_accum_steps: int = 1
    """Micro-batches whose gradients are summed (each scaled by 1/n) before one optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this before each step; None disables clipping."""
    epochs: int = 1
    """Passes over the update's data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps even if epochs remain; None: run all epochs."""
    lora: bool = False
    """Train a LoRA adapter (added if the policy has none) instead of all parameters."""
    lora_rank: int = 8
    """LoRA rank r, used when an adapter is added."""
    lora_alpha: int = 16
    """LoRA scaling alpha, used when an adapter is added."""
    forward_chunk: int = 64
    """Most steps (frames) in one forward pass; bounds memory when a trajectory is long."""

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; expected 'cosine' or 'constant'")
        for name in ("batch_size", "grad_accum_steps", "epochs", "forward_chunk", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class SFTConfig(OptimConfig):
    """Filtered behaviour cloning: cross-entropy on the action tokens of (successful) episodes."""

    augment_shift: int = 0
    """Translate each training image by up to this many pixels (random per sample; 0: off)."""
    waypoint_weight: float = 1.0
    """Weight of the auxiliary "where next" loss (`losses.waypoint_loss`) for a policy whose
    vision estimates waypoints (`agent.model`); 0: off (the head is then left untrained)."""
    keyframes: str = "gripper"
    """Which steps are keyframes for the waypoint targets (`train.organize.waypoints`):
    `gripper` (finger changes, the last step) or `gripper_and_moves` (also move ends)."""
    labelled_failure_waypoints: bool = True
    """Whether failed dagger episodes (trained on the expert's labels of the policy's states,
    `collect.guidance`) train the waypoint estimate too. Their states follow what the policy
    did, so the fingertip at the labels' keyframes is where the policy went (over a cube it
    never grasped): false leaves their waypoint targets out (the labels still train the actions)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment_shift < 0:
            raise ValueError(f"augment_shift must be >= 0, got {self.augment_shift}")
        if self.waypoint_weight < 0:
            raise ValueError(f"waypoint_weight must be >= 0, got {self.waypoint_weight}")
        if self.keyframes not in KEYFRAME_KINDS:
            raise ValueError(
                f"unknown keyframes {self.keyframes!r}; expected one of {KEYFRAME_KINDS}"
            )


ADVANTAGE_NORMS = ("none", "group", "batch")
"""`RLConfig.advantage_norm` options."""
AGGREGATIONS = ("token", "episode")
"""`RLConfig.aggregation` options."""
BASELINES = ("group", "value", "tree")
"""`RLConfig.baseline` options."""


@dataclass
class RLConfig(OptimConfig):
    """Group-relative policy gradient (RLOO advantages, PPO-clip, optional KL to a reference)."""

    lr: float = 1e-4
    """Peak learning rate of AdamW (lower than SFT: on-policy data, ratio clipping)."""
    clip_eps: float = 0.2
    """PPO ratio clipping: the ratio is clipped to [1 - clip_eps, 1 + clip_high] per token."""
    clip_high: float = 0.0
    """Upper clip of the ratio above 1 (asymmetric clipping, as DAPO and SimpleVLA-RL: 0.28 with
    clip_eps 0.2); 0: the same as `clip_eps`."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the reference policy; 0 skips the reference entirely."""
    aggregation: str = "token"
    """How the policy-gradient terms are averaged: `token` (every action token of the update
    alike: long episodes weigh more) or `episode` (each episode's tokens weigh 1 / its length,
    so every episode counts alike, as a sequence-level loss)."""
    target_kl: float = 0.0
    """Stop the update early (PPO's target KL) once a minibatch's approximate KL of the acting
    policy from the updated one exceeds this; 0: off (run every epoch)."""
    negative_weight: float = 1.0
    """Scale of the negative advantages (the failures' push-down), in [0, 1]: 1 is the plain
    group-relative gradient; 0 learns only from the successes of mixed groups (a REINFORCE
    that never pushes a sampled token down, so the 256-way action softmax is not flattened)."""
    advantage_norm: str = "none"
    """How the RLOO advantages are scaled: `none`, `group` (divided by their group's outcome
    standard deviation, as GRPO does) or `batch` (by the standard deviation over the update's
    samples)."""
    demo_weight: float = 0.0
    """Add this times the demonstrations' action-token cross-entropy to every minibatch's loss
    (demonstration-augmented policy gradient, as DAPG; a batch of demonstration steps as large as
    the minibatch, drawn each step): the demonstrations name every object, which the policy's
    own samples of a scene mostly do not, so RL keeps reading the instruction (BENCHMARKS.md,
    "RL beside the demonstrations": on the `default` seed it rises no more than its
    `pg_weight = 0` control). 0: RL on the rollouts alone."""
    augment_shift: int = 0
    """Translate each image of the update by up to this many pixels (random per sample, as
    SFT's; the behaviour log-probs stay those recorded on the image the policy saw, as RAD and
    DrQ do with PPO): the update sees each scene in many places, not the one it collected;
    0: off."""
    pg_weight: float = 1.0
    """Weight of the policy-gradient term; 0 with `demo_weight` > 0 trains on the
    demonstrations alone with the same optimizer, steps and batches: the control that shows
    what the rollouts' outcomes add."""
    baseline: str = "group"
    """Where the advantages come from: `group` (RLOO: each episode's outcome minus the mean of
    its group's others, shared by all its steps; groups with equal outcomes are skipped) or
    `value` (a learned critic of the chance of success from each step, cross-fitted on the
    update's episodes, and per-step GAE advantages: `train.updates.value`; every group is
    used) or `tree` (per-token Monte-Carlo advantages from the prefix tree of the group's
    samples: the credit sits on the tokens where samples of one scene parted ways,
    `train.updates.rl.tree_advantages`; groups with equal outcomes are skipped)."""
    gae_lambda: float = 0.95
    """`baseline = "value"`: GAE's lambda (1: the outcome minus the critic's value at each
    step; lower: more credit to the steps where the predicted chance of success changes)."""
    value_folds: int = 2
    """`baseline = "value"`: cross-fitting folds of scenes (each fold's values from a critic
    that never saw it); 1: one critic, read on the episodes it was fitted to."""
    value_epochs: int = 3
    """`baseline = "value"`: the critic's passes over the update's steps (per fold)."""
    value_lr: float = 2e-3
    """`baseline = "value"`: the critic's AdamW learning rate."""
    value_batch_size: int = 64
    """`baseline = "value"`: the critic's minibatch size in steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment_shift < 0:
            raise ValueError(f"augment_shift must be >= 0, got {self.augment_shift}")
        if self.demo_weight < 0 or self.pg_weight < 0:
            raise ValueError(
                f"demo_weight and pg_weight must be >= 0, got {self.demo_weight} and "
                f"{self.pg_weight}"
            )
        if self.demo_weight == 0 and self.pg_weight == 0:
            raise ValueError("pg_weight=0 needs demo_weight > 0: the update would learn nothing")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.clip_eps <= 0 or self.clip_high < 0:
            raise ValueError(
                f"need clip_eps > 0 and clip_high >= 0, got {self.clip_eps} and {self.clip_high}"
            )
        if self.target_kl < 0:
            raise ValueError(f"target_kl must be >= 0 (0: off), got {self.target_kl}")
        if not 0.0 <= self.negative_weight <= 1.0:
            raise ValueError(f"negative_weight must be in [0, 1], got {self.negative_weight}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; expected one of {AGGREGATIONS}"
            )
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; expected one of {BASELINES}")
        if not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1], got {self.gae_lambda}")
        if self.value_folds < 1 or self.value_epochs < 1 or self.value_batch_size < 1:
            raise ValueError(
                f"value_folds, value_epochs and value_batch_size must be >= 1, got "
                f"{self.value_folds}, {self.value_epochs} and {self.value_batch_size}"
            )
        if not self.value_lr > 0:
            raise ValueError(f"value_lr must be > 0, got {self.value_lr}")
        if self.advantage_norm not in ADVANTAGE_NORMS:
            raise ValueError(
                f"unknown advantage_norm {self.advantage_norm!r}; expected one of {ADVANTAGE_NORMS}"
            )


DPO_LEVELS = ("trajectory", "step")
"""`DPOConfig.level` options."""


@dataclass
class DPOConfig(OptimConfig):
    """DPO on (success, failure) trajectory pairs against a frozen reference."""

    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    batch_size: int = 4
    """Pairs per micro-batch."""
    beta: float = 0.1
    """DPO inverse temperature: scales the implicit reward `log pi - log pi_ref`."""
    temperature: float = 1.0
    """Softmax temperature of the action logits when scoring trajectories."""
    length_norm: bool = False
    """Score a trajectory by its mean action-token log-prob instead of the sum (as SimPO and
    length-normalised DPO do): a long failure then weighs no more than a short success."""
    nll_weight: float = 0.0
    """Add this times the chosen trajectories' mean action-token negative log-likelihood to the
    loss (RPO / iterative RPO): DPO alone can lower the chosen trajectory's likelihood along with
    the rejected one's; 0: plain DPO."""
    demo_weight: float = 0.0
    """Add this times the demonstrations' action-token cross-entropy to every minibatch's loss
    (as `RLConfig.demo_weight`; as many demonstration steps as the batch's chosen trajectories
    hold, at most `forward_chunk`); 0: off."""
    level: str = "trajectory"
    """What a pair compares: `trajectory` (the success's and the failure's whole action
    sequences) or `step` (the one step where they first part ways: the same observation and two
    choices, one of which went on to succeed; `train.updates.dpo.step_pairs`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.demo_weight < 0:
            raise ValueError(f"demo_weight must be >= 0, got {self.demo_weight}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.nll_weight < 0:
            raise ValueError(f"nll_weight must be >= 0, got {self.nll_weight}")
        if self.level not in DPO_LEVELS:
            raise ValueError(f"unknown DPO level {self.level!r}; expected one of {DPO_LEVELS}")
