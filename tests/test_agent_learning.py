"""The policy learns: it overfits a handful of examples to exact bins and reads both inputs."""

import numpy as np
import torch

from agent import Policy


def _examples():
    """Four examples: each image with two instructions, each instruction with two images, and
    a different target for every pair, so only a policy that reads both inputs fits all four."""
    rng = np.random.default_rng(0)
    image_a = np.full((64, 64, 3), 40, dtype=np.uint8)
    image_a[4:36, 4:36] = (230, 30, 30)
    image_b = np.full((64, 64, 3), 40, dtype=np.uint8)
    image_b[28:60, 28:60] = (30, 30, 230)
    images = np.stack([image_a, image_a, image_b, image_b])
    instructions = ["push the red cube", "open the drawer"] * 2
    states = rng.uniform(-0.2, 0.2, size=(1, 4)).repeat(4, axis=0).astype(np.float32)
    bins = np.array([[10, 200, 128, 0], [240, 30, 128, 255], [128, 128, 5, 255], [60, 90, 250, 0]])
    return images, instructions, states, bins


def _fit(policy, images, instructions, states, bins, lr=1e-3, max_steps=150):
    """Train on the examples until greedy acting gives exactly `bins` with probability > 0.5
    per token; return the number of steps, or None when the budget runs out."""
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=lr, weight_decay=0.0)
    inputs = policy.prepare_inputs(images, instructions, states, bins)
    for step in range(max_steps):
        loss = -policy.logprobs_from_inputs(inputs).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 4:
            out = policy.act(images, instructions, states)
            if np.array_equal(out.bins, bins) and (out.logprobs > np.log(0.5)).all():
                return step + 1
    return None


def test_overfits_to_exact_bins_and_reads_image_and_instruction():
    torch.manual_seed(0)
    policy = Policy.from_preset("tiny", seed=0)
    images, instructions, states, bins = _examples()
    before = [p.detach().clone() for p in policy.trainable_parameters()]
    steps = _fit(policy, images, instructions, states, bins)
    assert steps is not None, "did not reach exact bins within the budget"
    out = policy.act(images, instructions, states)
    np.testing.assert_array_equal(out.bins, bins)
    # same image, different instructions -> different actions; same instruction, different images
    assert not np.array_equal(out.bins[0], out.bins[1])
    assert not np.array_equal(out.bins[0], out.bins[2])
    assert (out.logprobs > np.log(0.5)).all()
    assert any(
        not torch.equal(b, p) for b, p in zip(before, policy.trainable_parameters(), strict=True)
    )


def test_lora_alone_can_fit_and_leaves_base_weights_untouched():
    torch.manual_seed(0)
    policy = Policy.from_preset("tiny", seed=0)
    images, instructions, states, bins = _examples()
    policy.add_lora(r=16, alpha=32)
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora" not in n}
    assert _fit(policy, images[:2], instructions[:2], states[:2], bins[:2], lr=3e-3) is not None
    for name, param in policy.model.named_parameters():
        if "lora" not in name:
            assert torch.equal(param, base[name]), name
    with policy.adapter_disabled():
        assert not np.array_equal(
            policy.act(images[:2], instructions[:2], states[:2]).bins, bins[:2]
        )
