"""The Policy API on the `tiny` preset (instruction-aware vision) and on `idefics3_tiny`: acting,
log-probs, determinism, fast path, save/load."""

import numpy as np
import pytest
import torch

from agent import PRESETS, Policy
from agent.families import processor_inputs
from agent.prompt import prompt_text

B = 4
INSTRUCTIONS = [
    "pick the red cube",
    "push the blue ball to the green goal",
    "open the drawer",
    "press the yellow button",
]


@pytest.fixture(scope="module", params=["tiny", "idefics3_tiny"])
def policy(request):
    return Policy.from_preset(request.param, seed=0)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(B, 64, 64, 3), dtype=np.uint8)
    states = rng.uniform(-0.3, 0.3, size=(B, 4)).astype(np.float32)
    return images, list(INSTRUCTIONS), states


def test_presets_are_sized_as_specified():
    sizes = {name: Policy.from_preset(name).num_parameters() for name in PRESETS}
    assert 4e6 <= sizes["tiny"] <= 7e6 and sizes["tiny_vision"] == sizes["tiny"]
    assert sizes["tiny"] <= sizes["tiny_keypoints"] <= 1.05 * sizes["tiny"]
    assert 10e6 <= sizes["small"] <= 30e6
    assert 1e6 <= sizes["idefics3_tiny"] <= 5e6
    assert 10e6 <= sizes["idefics3_small"] <= 30e6
    assert type(Policy.from_preset("tiny").backbone).__name__ == (
        "AutodidactVLMForConditionalGeneration"
    )
    with pytest.raises(
        ValueError, match="unknown policy preset 'huge'; known: tiny, tiny_vision, small, idefics3"
    ):
        Policy.from_preset("huge")


def test_act_returns_actions_bins_and_logprobs(policy, batch):
    out = policy.act(*batch)
    assert out.actions.shape == (B, 4) and out.actions.dtype == np.float32
    assert out.bins.shape == (B, 4) and out.bins.dtype == np.int64
    assert out.logprobs.shape == (B, 4) and out.logprobs.dtype == np.float32
    assert (out.logprobs <= 0).all() and np.isfinite(out.logprobs).all()
    assert np.abs(out.actions).max() <= 1


def test_greedy_is_deterministic_and_seeded_sampling_repeats(policy, batch):
    assert np.array_equal(policy.act(*batch).bins, policy.act(*batch).bins)

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return policy.act(*batch, greedy=False, temperature=1.5, top_k=50, generator=gen)

    a, b, c = sample(1), sample(1), sample(2)
    assert np.array_equal(a.bins, b.bins) and np.array_equal(a.logprobs, b.logprobs)
    assert not np.array_equal(a.bins, c.bins)


def test_top_k_one_equals_greedy(policy, batch):
    gen = torch.Generator().manual_seed(0)
    sampled = policy.act(*batch, greedy=False, top_k=1, generator=gen)
    assert np.array_equal(sampled.bins, policy.act(*batch).bins)


@pytest.mark.parametrize("greedy,temperature", [(True, 1.0), (False, 0.7), (False, 2.0)])
def test_teacher_forced_logprobs_match_act(policy, batch, greedy, temperature):
    gen = torch.Generator().manual_seed(3)
    out = policy.act(*batch, greedy=greedy, temperature=temperature, top_k=20, generator=gen)
    logprobs = policy.action_logprobs(*batch, out.bins, temperature=temperature)
    assert logprobs.shape == (B, 4)
    np.testing.assert_allclose(logprobs.detach().numpy(), out.logprobs, atol=1e-4)


def test_logprobs_are_differentiable(policy, batch):
    inputs = policy.prepare_inputs(*batch, np.zeros((B, 4), dtype=np.int64))
    loss = -policy.logprobs_from_inputs(inputs).sum()
    loss.backward()
    grads = [p.grad for p in policy.trainable_parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    policy.model.zero_grad(set_to_none=True)


def test_fast_path_equals_the_processor(policy, batch):
    images, instructions, states = batch
    fast = policy._prompt_inputs(images, instructions, states)
    texts = [prompt_text(i, s, "<image>") for i, s in zip(instructions, states, strict=True)]
    slow = processor_inputs(policy.processor, policy.family, images, texts)
    assert torch.equal(fast["input_ids"], slow["input_ids"])
    assert torch.equal(fast["attention_mask"], slow["attention_mask"])
    torch.testing.assert_close(fast["pixel_values"], slow["pixel_values"], atol=1e-6, rtol=0)


def test_actions_do_not_depend_on_batch_composition(policy, batch):
    images, instructions, states = batch
    together = policy.act(images, instructions, states)
    for row in range(B):
        alone = policy.act(
            images[row : row + 1], instructions[row : row + 1], states[row : row + 1]
        )
        np.testing.assert_array_equal(alone.bins[0], together.bins[row])
        np.testing.assert_allclose(alone.logprobs[0], together.logprobs[row], atol=1e-5)


def test_save_and_load_give_identical_actions(policy, batch, tmp_path):
    policy.save_pretrained(tmp_path)
    loaded = Policy.from_pretrained(tmp_path)
    assert loaded.policy_id == policy.policy_id
    expected, got = policy.act(*batch), loaded.act(*batch)
    np.testing.assert_array_equal(got.bins, expected.bins)
    np.testing.assert_array_equal(got.logprobs, expected.logprobs)


def test_instruction_prefix_is_reused_within_an_episode_and_matches(policy, batch):
    images, instructions, states = batch
    rng = np.random.default_rng(5)
    policy._prefix.clear()
    hits, misses = policy._prefix.hits, policy._prefix.misses
    for _ in range(3):
        images = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
        policy.reuse_prefix = True
        cached = policy.act(images, instructions, states)
        policy.reuse_prefix = False
        fresh = policy.act(images, instructions, states)
        np.testing.assert_array_equal(cached.bins, fresh.bins)
        np.testing.assert_allclose(cached.logprobs, fresh.logprobs, atol=1e-5)
        teacher = policy.action_logprobs(images, instructions, states, cached.bins)
        np.testing.assert_allclose(teacher.detach().numpy(), cached.logprobs, atol=1e-4)
    policy.reuse_prefix = True
    assert policy._prefix.misses - misses == 1 and policy._prefix.hits - hits == 2


@pytest.mark.parametrize("preset", ["tiny", "idefics3_tiny"])
def test_prefix_is_recomputed_after_a_weight_update(batch, preset):
    policy = Policy.from_preset(preset, seed=1)
    images, instructions, states = batch
    before = policy.act(images, instructions, states)
    optimizer = torch.optim.SGD(policy.trainable_parameters(), lr=0.5)
    loss = -policy.action_logprobs(images, instructions, states, (before.bins + 7) % 256).sum()
    loss.backward()
    optimizer.step()
    cached = policy.act(images, instructions, states)
    policy.reuse_prefix = False
    fresh = policy.act(images, instructions, states)
    np.testing.assert_allclose(cached.logprobs, fresh.logprobs, atol=1e-5)
    assert not np.allclose(cached.logprobs, before.logprobs, atol=1e-3)
    instructions = ["another instruction"] + instructions[1:]
    policy.reuse_prefix = True
    cached = policy.act(images, instructions, states)
    policy.reuse_prefix = False
    np.testing.assert_allclose(
        cached.logprobs, policy.act(images, instructions, states).logprobs, atol=1e-5
    )


def test_text_prompt_inputs_feed_the_backbone(policy, batch):
    images, _, _ = batch
    texts = ["is the red cube on the goal? answer yes or no", "yes?", "no", "did it work"]
    inputs = policy.text_prompt_inputs(images, texts)
    assert inputs["input_ids"].shape[0] == B
    assert (inputs["attention_mask"][:, -1] == 1).all()  # left padded
    logits = policy.next_token_logits(inputs)
    assert logits.shape == (B, len(policy.tokenizer))
    logits.sum().backward()
    assert any(p.grad is not None for p in policy.trainable_parameters())
    policy.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        direct = policy.model(**inputs).logits[:, -1]
        alone = policy.next_token_logits(policy.text_prompt_inputs(images[1:2], texts[1:2]))
    torch.testing.assert_close(logits.detach(), direct, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone[0], direct[1], atol=1e-4, rtol=0)
    other = policy.next_token_logits(policy.text_prompt_inputs(images[::-1].copy(), texts))
    assert not torch.allclose(other.detach(), logits.detach())


def test_act_runs_one_prefill_and_cached_single_token_steps(policy, batch):
    lengths = []
    backbone = policy.backbone
    text_model = getattr(backbone, "language_model", None) or backbone.model.text_model
    handle = text_model.register_forward_pre_hook(
        lambda module, args, kwargs: lengths.append(kwargs["inputs_embeds"].shape[1]),
        with_kwargs=True,
    )
    try:
        policy.reuse_prefix = False
        policy.act(*batch)
        fresh = list(lengths)
        lengths.clear()
        policy.reuse_prefix = True
        policy.act(*batch)
        policy.act(*batch)
    finally:
        handle.remove()
        policy.reuse_prefix = True
    prompt = policy._prompt_inputs(*batch)["input_ids"].shape[1]
    assert fresh == [prompt, 1, 1, 1]
    suffix = len(policy._pieces.suffix_ids(batch[2][0]))
    # the second call reuses the instruction's cache: only the suffix is prefilled
    assert lengths[-4:] == [suffix, 1, 1, 1] and suffix < prompt


def test_top_k_sampling_stays_within_the_k_most_likely(policy, batch):
    inputs = policy.prepare_inputs(*batch, np.zeros((B, 4), dtype=np.int64))
    with torch.no_grad():
        first = policy.model(**{k: v for k, v in inputs.items() if k != "action_bins"})
    logits = first.logits[:, -5][:, policy.action_token_ids]
    top3 = logits.topk(3, dim=-1).indices.numpy()
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        out = policy.act(*batch, greedy=False, temperature=3.0, top_k=3, generator=gen)
        assert all(out.bins[row, 0] in top3[row] for row in range(B))


def test_a_bfloat16_copy_acts_like_the_float32_policy_and_leaves_it_alone(policy, batch):
    assert policy.with_dtype("float32") is policy
    twin = policy.with_dtype("bfloat16")
    assert twin.backbone.dtype == torch.bfloat16 and policy.backbone.dtype == torch.float32
    assert twin.policy_id == policy.policy_id
    out = twin.act(*batch, greedy=False, generator=torch.Generator().manual_seed(0))
    assert out.logprobs.dtype == np.float32 and np.isfinite(out.logprobs).all()
    # The float32 policy gives the copy's sampled bins nearly the same log-probs (bf16 rounding).
    exact = policy.action_logprobs(*batch, out.bins).detach().numpy()
    np.testing.assert_allclose(out.logprobs, exact, atol=0.05)
    before = next(policy.model.parameters()).detach().clone()
    with torch.no_grad():
        next(twin.model.parameters()).zero_()
    assert torch.equal(next(policy.model.parameters()), before)  # weights are not shared
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        policy.with_dtype("int8")
