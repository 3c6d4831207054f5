"""End to end: SFT of a fresh built-in policy on scripted-expert ReachBall demonstrations. It must
follow its instruction (go to the ball the instruction names, not just to a ball) and beat a random
policy on held-out seeds (greedy decoding).

Instruction following is measured where it cannot be faked: for one held-out frame, each of its
three balls is named in turn (`reset(options={"instruction": ...})` keeps the scene), and the
greedy first action must move towards the named ball along x. A policy that goes to one ball
whatever the instruction gets at most about two of three such pairs right when the balls lie on
both sides of the gripper.
"""

import numpy as np
import pytest
import torch

import envs
from agent.action_tokens import actions_to_bins
from agent.policy import Policy
from train.collect.episodes import collect_episodes
from train.results.evaluate import evaluate
from train.updates.config import SFTConfig
from train.updates.sft import sft_update
from verifiers.episode import Job

TASK = "autodidact/ReachBall-v0"
PRESET = "tiny_vision"
NUM_DEMOS = 1000
EVAL_EPISODES = 100
PROBE_SCENES = 100
PROBE_SEED_BASE = 700_000
"""Scenes for the instruction probe: disjoint from the demonstrations and the evaluation seeds."""
STRAIGHT_AHEAD_BINS = 8
"""An expert x action within this many bins of the centre (~3 mm) counts as straight ahead."""
CONFIG = SFTConfig(
    lr=1e-3, batch_size=32, epochs=1000, max_steps=1200, warmup_steps=50, schedule="cosine"
)


def instruction_probe(policy, scenes: range) -> tuple[int, int]:
    """(pairs whose greedy first x action moves towards the named ball, pairs counted) over every
    (scene, ball) pair whose ball is not straight ahead of the gripper on x."""
    env = envs.make(TASK, image_size=64)
    images, instructions, expert_x = [], [], []
    try:
        for seed in scenes:
            env.reset(seed=seed)
            for text in env.unwrapped.possible_instructions():
                obs, _ = env.reset(seed=seed, options={"instruction": text})
                images.append(obs["image"])
                instructions.append(obs["instruction"])
                expert_x.append(actions_to_bins(env.unwrapped.expert_action()[None])[0, 0])
    finally:
        env.close()
    chosen = policy.act(np.stack(images), instructions, greedy=True).bins[:, 0]
    expert = np.asarray(expert_x, dtype=float) - 127.5
    counted = np.abs(expert) > STRAIGHT_AHEAD_BINS
    agree = np.sign(chosen.astype(float) - 127.5) == np.sign(expert)
    return int((agree & counted).sum()), int(counted.sum())


@pytest.fixture(scope="module")
def outcome():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded 2-core machine runs one thread several times faster
    try:
        demos = collect_episodes([Job(TASK, s) for s in range(NUM_DEMOS)], "expert", num_envs=8)
        assert all(e.is_success for e in demos)
        policy = Policy.from_preset(PRESET, seed=0)
        untrained = instruction_probe(policy, range(PROBE_SEED_BASE, PROBE_SEED_BASE + 20))
        metrics = sft_update(policy, demos, CONFIG)
        policy.model.eval()
        probe = instruction_probe(policy, range(PROBE_SEED_BASE, PROBE_SEED_BASE + PROBE_SCENES))
        trained, _ = evaluate(policy, [TASK], EVAL_EPISODES)
        random, _ = evaluate("random", [TASK], EVAL_EPISODES)
    finally:
        torch.set_num_threads(threads)
    print(
        f"SFT {trained[TASK].success_rate:.2f} vs random {random[TASK].success_rate:.2f} on "
        f"{EVAL_EPISODES} held-out seeds; first x towards the named ball in {probe[0]}/{probe[1]} "
        f"pairs (untrained {untrained[0]}/{untrained[1]}); final loss "
        f"{metrics['train/sft_loss']:.3f}, {metrics['train/sft_samples_per_s']:.1f} samples/s"
    )
    return trained[TASK], random[TASK], metrics, probe, untrained


@pytest.mark.slow
def test_sft_policy_moves_towards_the_ball_its_instruction_names(outcome):
    _, _, _, (agree, counted), (untrained_agree, untrained_counted) = outcome
    assert counted >= 150  # most of the 300 pairs have the ball off to one side
    assert untrained_agree < 0.75 * untrained_counted  # a fresh policy does not pass by chance
    assert agree >= 0.9 * counted, f"{agree}/{counted} pairs"


@pytest.mark.slow
def test_sft_policy_beats_random_by_20_points_with_separate_95_intervals(outcome):
    trained, random, metrics, _, _ = outcome
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert trained.interval[0] > random.interval[1], (trained.interval, random.interval)
    assert trained.success_rate >= random.success_rate + 0.2, (trained, random)
