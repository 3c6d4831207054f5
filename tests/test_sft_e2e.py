"""End to end: SFT of a fresh `tiny` policy on scripted-expert ReachBall demonstrations should beat
a random policy on held-out seeds (greedy decoding).

Known to fail within this budget (marked xfail, still run). The policy does learn to read the
image (after ~1-2k optimizer steps, shuffling the frames raises its action cross-entropy by
0.16-0.38 nats; `bench/sft_grounding.py`, BENCHMARKS.md), yet greedy success on held-out seeds
stays near random's (0.08-0.14 after up to 6,000 steps on 1,000 demos): the scripted expert is a
deadbeat bang-bang controller whose y action is almost always "towards the camera", so small
errors compound (the imitator overshoots and its demos never show a recovery). Meeting this needs
more training than a test can spend on a 2-core CPU, or a pretrained backbone.
"""

import pytest
import torch

from agent.policy import Policy
from train.collect import Job, collect_episodes
from train.evaluate import evaluate
from train.optim import SFTConfig
from train.sft import sft_update

TASK = "autodidact/ReachBall-v0"
NUM_DEMOS = 300
EVAL_EPISODES = 30
CONFIG = SFTConfig(lr=1e-3, batch_size=8, epochs=6, warmup_steps=20, schedule="cosine", seed=0)


@pytest.mark.slow
@pytest.mark.xfail(
    reason="a from-scratch imitator of the bang-bang expert drifts off its demos (few CPU minutes)",
    strict=False,
)
def test_sft_on_expert_demos_beats_random_on_held_out_seeds():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a loaded 2-core machine runs one thread several times faster
    try:
        demos = collect_episodes([Job(TASK, s) for s in range(NUM_DEMOS)], "expert", num_envs=8)
        assert all(e.is_success for e in demos)
        policy = Policy.from_preset("tiny", seed=0)
        metrics = sft_update(policy, demos, CONFIG)
        policy.model.eval()
        trained, _ = evaluate(policy, [TASK], EVAL_EPISODES)
        random, _ = evaluate("random", [TASK], EVAL_EPISODES)
    finally:
        torch.set_num_threads(threads)
    sft_rate = trained[TASK].success_rate
    random_rate = random[TASK].success_rate
    print(
        f"SFT {sft_rate:.2f} vs random {random_rate:.2f} on {EVAL_EPISODES} held-out seeds; "
        f"final loss {metrics['train/sft_loss']:.3f}, {metrics['train/samples_per_s']:.1f} samples/s"
    )
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert sft_rate >= random_rate + 0.2, (sft_rate, random_rate)
