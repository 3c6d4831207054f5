"""LoRA through peft: configurable targets and rank, adapter on/off, merge, save/load."""

import numpy as np
import torch
from peft import PeftModel

from agent import Policy

rng = np.random.default_rng(0)
IMAGES = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
INSTRUCTIONS = ["reach the red ball", "stack the cubes", "press the button"]
STATES = rng.uniform(-0.3, 0.3, size=(3, 4)).astype(np.float32)


def _perturbed_lora_policy(**lora_kwargs):
    policy = Policy.from_preset("tiny", seed=0)
    policy.add_lora(**lora_kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in policy.trainable_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return policy


def test_targets_and_rank_are_configurable():
    policy = Policy.from_preset("tiny")
    total = sum(p.numel() for p in policy.trainable_parameters())
    policy.add_lora(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    assert isinstance(policy.model, PeftModel)
    names = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert all(("q_proj" in n) or ("v_proj" in n) for n in names)
    assert all(p.shape[0] == 4 or p.shape[1] == 4 for p in policy.trainable_parameters())
    assert sum(p.numel() for p in policy.trainable_parameters()) < total / 20


def test_adapter_changes_actions_and_can_be_disabled():
    plain = Policy.from_preset("tiny", seed=0).act(IMAGES, INSTRUCTIONS, STATES)
    policy = _perturbed_lora_policy(r=4)
    adapted = policy.act(IMAGES, INSTRUCTIONS, STATES)
    assert not np.array_equal(adapted.logprobs, plain.logprobs)
    with policy.adapter_disabled():
        reference = policy.act(IMAGES, INSTRUCTIONS, STATES)
        ref_logprobs = policy.action_logprobs(IMAGES, INSTRUCTIONS, STATES, adapted.bins)
    np.testing.assert_array_equal(reference.bins, plain.bins)
    np.testing.assert_allclose(reference.logprobs, plain.logprobs, atol=1e-6)
    assert ref_logprobs.shape == (3, 4)
    np.testing.assert_array_equal(policy.act(IMAGES, INSTRUCTIONS, STATES).bins, adapted.bins)


def test_save_and_load_with_adapter_give_identical_actions(tmp_path):
    policy = _perturbed_lora_policy(r=4)
    expected = policy.act(IMAGES, INSTRUCTIONS, STATES)
    policy.save_pretrained(tmp_path)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    loaded = Policy.from_pretrained(tmp_path)
    assert isinstance(loaded.model, PeftModel)
    assert loaded.trainable_parameters() and all(
        "lora_" in n for n, p in loaded.model.named_parameters() if p.requires_grad
    )
    got = loaded.act(IMAGES, INSTRUCTIONS, STATES)
    np.testing.assert_array_equal(got.bins, expected.bins)
    np.testing.assert_allclose(got.logprobs, expected.logprobs, atol=1e-6)


def test_merge_keeps_the_actions():
    policy = _perturbed_lora_policy(r=4)
    expected = policy.act(IMAGES, INSTRUCTIONS, STATES)
    policy.merge_lora()
    assert not isinstance(policy.model, PeftModel)
    got = policy.act(IMAGES, INSTRUCTIONS, STATES)
    np.testing.assert_array_equal(got.bins, expected.bins)
    np.testing.assert_allclose(got.logprobs, expected.logprobs, atol=1e-3)
