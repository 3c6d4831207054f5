"""End to end: SFT of a fresh policy on scripted-expert ReachBall demonstrations, against a random
policy on held-out seeds (greedy decoding).

The policy is `tiny_vision` (`tiny` without the proprioceptive state in its prompt). With the
state, a from-scratch policy fits the demonstrations' average motion from it and barely uses the
image: `tiny` stays at random's level (7-14% after up to 6,000 steps on 1,000 demos; see
`bench/sft_grounding.py` and BENCHMARKS.md, "SFT on expert demonstrations"). Without it, the image
is the only source of where things are, and the policy learns to use it.

Measured here (2,400 optimizer steps of 8, ~4 min on one core): 17% [11, 26] against random's
2% [1, 7] on 100 held-out seeds; a probe of the same setup with another sampler reached 24.5% on
200 seeds. Beating random by 20 points is still not met in this budget (marked xfail, still run):
the policy reads the image but not which ball the instruction names (`diag/instruction_gain`
~0, even after 3x the demonstrations; BENCHMARKS.md, "SFT on expert demonstrations").
"""

import pytest
import torch

from agent.policy import Policy
from train.collect import Job, collect_episodes
from train.evaluate import evaluate
from train.optim import SFTConfig
from train.sft import sft_update

TASK = "autodidact/ReachBall-v0"
NUM_DEMOS = 1000
EVAL_EPISODES = 100
CONFIG = SFTConfig(
    lr=1e-3, batch_size=8, epochs=1000, max_steps=2400, warmup_steps=50, schedule="cosine", seed=0
)


@pytest.fixture(scope="module")
def outcome():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded 2-core machine runs one thread several times faster
    try:
        demos = collect_episodes([Job(TASK, s) for s in range(NUM_DEMOS)], "expert", num_envs=8)
        assert all(e.is_success for e in demos)
        policy = Policy.from_preset("tiny_vision", seed=0)
        metrics = sft_update(policy, demos, CONFIG)
        policy.model.eval()
        trained, _ = evaluate(policy, [TASK], EVAL_EPISODES)
        random, _ = evaluate("random", [TASK], EVAL_EPISODES)
    finally:
        torch.set_num_threads(threads)
    print(
        f"SFT {trained[TASK].success_rate:.2f} vs random {random[TASK].success_rate:.2f} on "
        f"{EVAL_EPISODES} held-out seeds; final loss {metrics['train/sft_loss']:.3f}, "
        f"{metrics['train/samples_per_s']:.1f} samples/s"
    )
    return trained[TASK], random[TASK], metrics


@pytest.mark.slow
def test_sft_policy_is_above_random_with_separate_95_intervals(outcome):
    trained, random, metrics = outcome
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert trained.interval[0] > random.interval[1], (trained.interval, random.interval)


@pytest.mark.slow
@pytest.mark.xfail(reason="17% vs 2% in this budget: not yet 20 points above random", strict=False)
def test_sft_policy_beats_random_by_20_points(outcome):
    trained, random, _ = outcome
    assert trained.success_rate >= random.success_rate + 0.2, (trained, random)
