"""End to end: SFT of a fresh `tiny` policy on scripted-expert ReachBall demonstrations should beat
a random policy on held-out seeds (greedy decoding).

Known to fail within this budget (marked xfail, still run): after 4-8 epochs over 300 demos
(~1,700 steps) the policy fits the demonstrations' average motion from the state in its prompt
and ignores the image (its first action is the same whatever the ball positions), so greedy
success on held-out seeds stays at 0.07-0.25 against random's 0.07. Measured runs and the
diagnosis are in the train/ report; learning the visual grounding needs a larger budget.
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
    reason="tiny from scratch does not ground vision in a few CPU minutes", strict=False
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
