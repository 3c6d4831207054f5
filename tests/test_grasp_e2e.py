"""End to end: SFT of a fresh `tiny_grasp` policy on noise-injected PickPlaceCube demonstrations
(DART, waypoints, chunks; issue 31). It must grasp the cube its instruction names in a stated
share of held-out episodes, where the same policy untrained never does, as `test_sft_e2e`
asserts instruction following on ReachBall.

The grasp is read from the task's own report (`grasp/named`: both fingers on the named cube, the
gripper closed on it), so grasping another cube does not count.
"""

import pytest
import torch

from agent.policy import Policy
from train.collect.episodes import ExpertActor, collect_episodes
from train.results.evaluate import evaluate, grasp_breakdown
from train.updates.config import SFTConfig
from train.updates.sft import sft_update
from verifiers.episode import Job

TASK = "autodidact/PickPlaceCube-v0"
NUM_DEMOS = 300
EVAL_EPISODES = 40
GRASPED_AT_LEAST = 0.05
"""Measured on an AMD EPYC (BENCHMARKS.md, "Manipulation, session 9"): 5 of 40 (12.5%) after
these 1,000 steps (2,000 steps of 16: 4 of 40); the untrained policy grasps in none. A grasp
this budget only begins to learn: 4,000 steps of 32 on 1,000 demonstrations grasp in 98-100%
and place in 73-89%; the threshold leaves room for another CPU's rounding."""
CONFIG = SFTConfig(
    lr=1e-3,
    batch_size=32,
    epochs=1000,
    max_steps=1000,
    warmup_steps=50,
    augment_shift=4,
    weight_decay=1e-4,
    min_lr_ratio=0.0,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outcome():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        jobs = [Job(TASK, s) for s in range(NUM_DEMOS)]
        demos = collect_episodes(jobs, ExpertActor(noise=0.1, seed=0), num_envs=8)
        demos = [e for e in demos if e.is_success]
        policy = Policy.from_preset("tiny_grasp", seed=0)
        _, before = evaluate(policy, [TASK], 10)
        metrics = sft_update(policy, demos, CONFIG)
        policy.model.eval()
        results, after = evaluate(policy, [TASK], EVAL_EPISODES)
    finally:
        torch.set_num_threads(threads)
    shares = grasp_breakdown(after)[TASK]
    print(
        f"grasped {shares['grasped']:.2f}, success {results[TASK].success_rate:.2f} on "
        f"{EVAL_EPISODES} held-out seeds; {metrics['train/sft_samples_per_s']:.1f} samples/s; "
        f"waypoint error {metrics['train/waypoint_error_cm']:.1f} cm; {shares}"
    )
    return grasp_breakdown(before)[TASK], shares, metrics


def test_the_trained_policy_grasps_the_named_cube(outcome):
    before, after, _ = outcome
    assert before["grasped"] == 0.0
    assert after["grasped"] >= GRASPED_AT_LEAST, after


def test_the_waypoint_head_learns_where_the_hand_goes(outcome):
    *_, metrics = outcome
    assert metrics["train/waypoint_error_cm"] < 5.0
