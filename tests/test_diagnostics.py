"""train.results.diagnostics.input_reliance: the action cross-entropy gained by seeing each step's own image
and instruction."""

import numpy as np
import pytest
import torch

from agent import Policy
from train.results.diagnostics import input_reliance
from train.updates.batching import StepSet


def _steps(n: int = 8) -> StepSet:
    """Steps alternating between two scenes (red square top-left, blue bottom-right) whose target
    bins differ; instruction and state are the same for all, so only the image tells them apart."""
    red = np.full((64, 64, 3), 40, dtype=np.uint8)
    red[4:36, 4:36] = (230, 30, 30)
    blue = np.full((64, 64, 3), 40, dtype=np.uint8)
    blue[28:60, 28:60] = (30, 30, 230)
    scene = np.arange(n) % 2
    bins = np.array([[20, 200, 128, 0], [230, 40, 128, 255]])[scene]
    return StepSet(
        images=np.stack([red, blue])[scene],
        instructions=["touch the square"] * n,
        states=np.full((n, 4), 0.1, dtype=np.float32),
        bins=bins.astype(np.int64),
        episode_index=np.arange(n),
        old_logprobs=np.full((n, 4), np.nan, dtype=np.float32),
    )


def _fit(policy, steps: StepSet, iterations: int = 100) -> None:
    """Full-batch AdamW on the steps' action tokens (leaves the policy in train mode)."""
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-3)
    inputs = policy.prepare_inputs(steps.images, steps.instructions, steps.states, steps.bins)
    policy.model.train()
    for _ in range(iterations):
        loss = -policy.logprobs_from_inputs(inputs).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_gain_grows_when_the_policy_learns_to_read_the_image():
    torch.manual_seed(0)
    policy = Policy.from_preset("tiny", seed=0)
    steps = _steps()
    before = input_reliance(policy, steps)
    assert abs(before["diag/image_gain"]) < 0.1  # fresh weights: the image barely matters
    _fit(policy, steps)
    after = input_reliance(policy, steps)
    assert after["diag/action_ce"] < before["diag/action_ce"] - 1.0
    # Half the shuffled frames show the other scene, whose target bins the policy now predicts.
    assert after["diag/image_gain"] > 1.0
    assert after["diag/image_gain"] == pytest.approx(
        after["diag/action_ce_images_shuffled"] - after["diag/action_ce"]
    )
    assert policy.model.training  # the mode it was in is restored


def test_instruction_gain_grows_when_only_the_instruction_tells_the_actions_apart():
    torch.manual_seed(0)
    policy = Policy.from_preset("tiny", seed=0)
    steps = _steps()
    steps.images[:] = steps.images[0]  # one scene; the instruction names which corner to go to
    steps.instructions = ["touch the red square", "touch the blue square"] * (len(steps) // 2)
    _fit(policy, steps)
    after = input_reliance(policy, steps)
    assert after["diag/instruction_gain"] > 1.0
    assert after["diag/image_gain"] == pytest.approx(0.0, abs=1e-6)  # identical frames


def test_identical_images_give_no_gain_and_subsampling_is_bounded():
    policy = Policy.from_preset("tiny", seed=0)
    steps = _steps(40)
    steps.images[:] = steps.images[0]
    result = input_reliance(policy, steps, max_steps=10)
    assert result["diag/image_gain"] == pytest.approx(0.0, abs=1e-6)
    assert result["diag/instruction_gain"] == pytest.approx(0.0, abs=1e-6)  # one instruction
    assert not policy.model.training


def test_bad_input_is_named():
    policy = Policy.from_preset("tiny", seed=0)
    with pytest.raises(ValueError, match="max_steps must be >= 2"):
        input_reliance(policy, _steps(), max_steps=1)
    with pytest.raises(ValueError, match="at least 2 steps"):
        input_reliance(policy, _steps(1))
