"""Bad input gives clear errors: images, states, bins, model families, broken checkpoints."""

import numpy as np
import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from agent import Policy


@pytest.fixture(scope="module")
def policy():
    return Policy.from_preset("tiny")


@pytest.fixture(scope="module")
def saved(policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved")
    policy.save_pretrained(path)
    return path


IMAGES = np.zeros((2, 64, 64, 3), dtype=np.uint8)
STATES = np.zeros((2, 4), dtype=np.float32)
INSTRUCTIONS = ["reach the ball", "push the cube"]


@pytest.mark.parametrize(
    "images,error,match",
    [
        (np.zeros((2, 32, 32, 3), np.uint8), ValueError, r"64x64.*got shape \(2, 32, 32, 3\)"),
        (np.zeros((2, 64, 64), np.uint8), ValueError, r"\[B, H, W, 3\].*\(2, 64, 64\)"),
        (np.zeros((2, 3, 64, 64), np.uint8), ValueError, r"\[B, H, W, 3\]"),
        (np.zeros((2, 64, 64, 3), np.float32), TypeError, "dtype uint8.*float32"),
        ([[0]], TypeError, "numpy array"),
    ],
)
def test_bad_images(policy, images, error, match):
    with pytest.raises(error, match=match):
        policy.act(images, INSTRUCTIONS, STATES)


def test_bad_instructions_states_and_bins(policy):
    with pytest.raises(ValueError, match="got 1 instructions for 2 images"):
        policy.act(IMAGES, INSTRUCTIONS[:1], STATES)
    with pytest.raises(TypeError, match="list of str"):
        policy.act(IMAGES, "reach", STATES)
    with pytest.raises(ValueError, match="reads the state"):
        policy.act(IMAGES, INSTRUCTIONS)
    with pytest.raises(ValueError, match=r"shape \[2, 4\], got \(2, 3\)"):
        policy.act(IMAGES, INSTRUCTIONS, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        policy.act(IMAGES, INSTRUCTIONS, np.full((2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="0..255"):
        policy.action_logprobs(IMAGES, INSTRUCTIONS, STATES, np.full((2, 4), 256))
    with pytest.raises(ValueError, match=r"shape \[2, 4\]"):
        policy.action_logprobs(IMAGES, INSTRUCTIONS, STATES, np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        policy.act(IMAGES, INSTRUCTIONS, STATES, greedy=False, temperature=0.0)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        Policy.from_pretrained(tmp_path / "nowhere")


def test_unsupported_model_family(tmp_path):
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match="unsupported model family 'gpt2'.*supported: autodidact_vlm, idefics3"
    ):
        Policy.from_pretrained(tmp_path)


def _copy(saved, tmp_path):
    for file in saved.iterdir():
        if file.is_file():
            (tmp_path / file.name).write_bytes(file.read_bytes())
    return tmp_path


def test_missing_weights(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="incomplete checkpoint.*no model.safetensors"):
        Policy.from_pretrained(path)


def test_missing_config(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "config.json").unlink()
    with pytest.raises(ValueError, match="incomplete checkpoint.*config.json is missing"):
        Policy.from_pretrained(path)


def test_truncated_weights(saved, tmp_path):
    path = _copy(saved, tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        Policy.from_pretrained(path)


def test_weights_missing_tensors(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    path = _copy(saved, tmp_path)
    tensors = load_file(path / "model.safetensors")
    dropped = sorted(k for k in tensors if "layers.1." in k)
    save_file({k: v for k, v in tensors.items() if k not in dropped}, path / "model.safetensors")
    with pytest.raises(ValueError, match="incomplete checkpoint.*do not cover the model"):
        Policy.from_pretrained(path)


def test_missing_tokenizer(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "tokenizer.json").unlink()
    (path / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match="incomplete checkpoint.*processor/tokenizer"):
        Policy.from_pretrained(path)


def test_corrupt_config(saved, tmp_path):
    path = _copy(saved, tmp_path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        Policy.from_pretrained(path)


def test_lora_misuse(tmp_path):
    policy = Policy.from_preset("tiny")
    with pytest.raises(ValueError, match="no LoRA adapters to merge"):
        policy.merge_lora()
    with pytest.raises(ValueError, match="no LoRA adapters to disable"):
        with policy.adapter_disabled():
            pass
    policy.add_lora(r=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        policy.add_lora(r=2)
