"""The manipulation levers of the built-in backbone (`agent.model`): spatial-softmax keypoints,
keypoints the instruction asks for, weighted word pooling and ordinal bin embeddings."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

from agent import Policy
from agent.model import (
    AutodidactVLMConfig,
    BinFeatures,
    SpatialSoftmax,
    pixel_grid,
    queried_keypoints,
)

PRESET = "tiny_keypoints"


@pytest.fixture(scope="module")
def policy():
    return Policy.from_preset(PRESET, seed=0)


def _words(policy, text: str) -> torch.Tensor:
    return torch.tensor([policy._pieces.instruction_ids(text)])


def test_spatial_softmax_finds_a_bright_spot_to_a_fraction_of_a_pixel():
    layer = SpatialSoftmax(channels=1, keypoints=1)
    with torch.no_grad():
        layer.conv.weight.fill_(1.0)
        layer.conv.bias.zero_()
    maps = torch.zeros(1, 1, 16, 16)
    maps[0, 0, 3, 12] = 50.0  # row 3, column 12
    x, y = layer(maps)[0].tolist()
    grid = torch.linspace(-1, 1, 16)
    assert x == pytest.approx(float(grid[12]), abs=1e-3)
    assert y == pytest.approx(float(grid[3]), abs=1e-3)
    maps[0, 0, 3, 13] = 50.0  # two equal spots: halfway between them
    assert layer(maps)[0, 0].item() == pytest.approx(float(grid[12:14].mean()), abs=1e-3)


def test_each_query_finds_where_its_feature_is_and_reports_what_is_there():
    features = torch.zeros(1, 2, 8, 8)
    features[0, 0, 1, 6] = 30.0  # feature 0 at row 1, column 6
    features[0, 1, 5, 2] = 30.0  # feature 1 at row 5, column 2
    queries = torch.tensor([[1.0, 0.0, 0.0, 1.0]])  # query 0 asks for feature 0, query 1 for 1
    out = queried_keypoints(features, queries).view(2, 4)  # per query: x, y, feature 0, feature 1
    grid = pixel_grid(8, 8, features).view(8, 8, 2)
    torch.testing.assert_close(out[0, :2], grid[1, 6], atol=1e-3, rtol=0)
    torch.testing.assert_close(out[1, :2], grid[5, 2], atol=1e-3, rtol=0)
    assert out[0, 2] > 29 and out[1, 3] > 29


def test_bin_features_make_neighbouring_bins_alike_and_leave_other_tokens_alone():
    torch.manual_seed(0)
    layer = BinFeatures(first_bin_id=100, num_bins=256, hidden_size=32)
    ids = torch.tensor([[5, 100 + 40, 100 + 41, 100 + 200, 100 + 255, 356]])
    embeds = torch.zeros(1, ids.shape[1], 32)
    with torch.no_grad():
        added = layer(ids, embeds)[0]
    assert torch.equal(added[0], torch.zeros(32)) and torch.equal(added[5], torch.zeros(32))
    near, far = (added[1] - added[2]).norm(), (added[1] - added[3]).norm()
    assert near < 0.2 * far, (near, far)


def test_weighted_pooling_starts_as_the_mean_and_can_single_out_a_word(policy):
    vision = policy.backbone.vision
    red = _words(policy, "put the red cube in the bin")
    is_word = (red >= vision.first_word_id) & (red < vision.word_vocab_size)
    mean = vision.words(red)[is_word].mean(0)
    with torch.no_grad():
        torch.testing.assert_close(vision.instruction_embedding(red)[0], mean)
        red_id = policy.tokenizer.convert_tokens_to_ids("Ġred")  # " red" inside a sentence
        saved = vision.word_scores.weight.clone()
        try:
            vision.word_scores.weight[red_id] = 30.0
            pooled = vision.instruction_embedding(red)[0]
        finally:
            vision.word_scores.weight.copy_(saved)
        torch.testing.assert_close(pooled, vision.words.weight[red_id], atol=1e-4, rtol=0)


def test_the_keypoint_token_follows_the_named_colour(policy):
    vision = policy.backbone.vision
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    red, blue = (
        _words(policy, "put the red cube in the bin"),
        _words(policy, "put the blue cube in the bin"),
    )
    with torch.no_grad():
        tokens = vision(pixels, red)[0]
        other = vision(pixels, blue)[0]
    hidden = policy.backbone.config.text_config.hidden_size
    assert tokens.shape == (1, 5, hidden)  # four dense tokens and the keypoint token
    assert policy.settings.image_seq_len == 5
    assert not torch.allclose(tokens[:, -1], other[:, -1])


def test_a_keypoint_policy_acts_trains_and_round_trips(policy, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    instructions = ["put the red cube in the bin", "press the blue button", "go to the red ball"]
    states = np.zeros((3, 4), np.float32)
    out = policy.act(images, instructions, states, greedy=True)
    logprobs = policy.action_logprobs(images, instructions, states, out.bins)
    np.testing.assert_allclose(logprobs.detach().numpy(), out.logprobs, atol=1e-4)
    logprobs.sum().backward()
    for module in (policy.backbone.vision.queries, policy.backbone.bin_features.proj):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    policy.model.zero_grad()
    policy.save_pretrained(tmp_path)
    loaded = Policy.from_pretrained(tmp_path)
    again = loaded.act(images, instructions, states, greedy=True)
    np.testing.assert_array_equal(again.bins, out.bins)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), type(policy.backbone))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"word_pooling": "max"}, "unknown word_pooling 'max'"),
        ({"keypoints": -1}, "keypoints and queried_keypoints must be >= 0"),
        ({"queried_keypoints": 2, "image_seq_len": 1}, "image_seq_len must be >= 2"),
    ],
)
def test_config_rejects_bad_lever_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutodidactVLMConfig(**kwargs)


def test_ordered_pooling_starts_as_the_mean_and_learns_which_colour_comes_first():
    """A bag of words pools "red on blue" and "blue on red" alike; `ordered` pooling starts as
    that mean and, trained on the two orders, tells them apart (stack names two cubes)."""
    policy = Policy.from_preset("tiny_grasp_ordered", seed=0)
    vision = policy.backbone.vision
    first = _words(policy, "stack the red cube on the blue cube")
    second = _words(policy, "stack the blue cube on the red cube")
    is_word = (first >= vision.first_word_id) & (first < vision.word_vocab_size)
    with torch.no_grad():
        start = vision.instruction_embedding(torch.cat([first, second]))
    torch.testing.assert_close(start[0], vision.words(first)[is_word].mean(0))
    torch.testing.assert_close(start[0], start[1])  # the mean cannot tell the orders apart
    # a probe that must read the order: +1 for red first, -1 for blue first
    readout = torch.nn.Linear(vision.words.embedding_dim, 1)
    params = [vision.word_positions.weight, *readout.parameters()]
    optimizer = torch.optim.Adam(params, lr=0.05)
    target = torch.tensor([[1.0], [-1.0]])
    for _ in range(100):
        optimizer.zero_grad()
        pooled = vision.instruction_embedding(torch.cat([first, second]))
        loss = torch.nn.functional.mse_loss(readout(pooled), target)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01, loss.item()
