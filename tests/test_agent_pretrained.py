"""Loading local pretrained VLMs by path: tiny random models of each supported family, no hub."""

import numpy as np
import pytest
from transformers import (
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    SmolVLMConfig,
    SmolVLMForConditionalGeneration,
)
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil

from agent import Policy
from agent.qwen_processor import QwenImageTextProcessor
from agent.tokenizer import ACTION_TOKENS, train_tokenizer

QWEN_SPECIALS = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>")
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)


def _idefics_like(path, family):
    tokenizer = train_tokenizer(with_action_tokens=False)
    config_cls, model_cls, image_cls = {
        "idefics3": (Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessorPil),
        "smolvlm": (SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil),
    }[family]
    config = config_cls(
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=64,
            patch_size=8,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            num_key_value_heads=2,
            pad_token_id=tokenizer.pad_token_id,
            **TEXT,
        ),
    )
    model_cls(config).save_pretrained(path)
    image_processor = image_cls(
        do_image_splitting=False, size={"longest_edge": 64}, max_image_size={"longest_edge": 64}
    )
    image_processor.save_pretrained(path)
    tokenizer.save_pretrained(path)


def _qwen(path, family):
    tokenizer = train_tokenizer(extra_special_tokens=QWEN_SPECIALS, with_action_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(list(QWEN_SPECIALS))
    text = dict(
        vocab_size=len(tokenizer),
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 2, 2]},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=None,
        **TEXT,
    )
    vision = dict(depth=1, num_heads=2, patch_size=8, spatial_merge_size=2, temporal_patch_size=2)
    if family == "qwen2_vl":
        config_cls, model_cls = Qwen2VLConfig, Qwen2VLForConditionalGeneration
        vision.update(embed_dim=32, hidden_size=64)
    else:
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        vision.update(
            hidden_size=32,
            intermediate_size=64,
            out_hidden_size=64,
            window_size=16,
            fullatt_block_indexes=[0],
        )
    config = config_cls(
        text_config=text,
        vision_config=vision,
        vision_start_token_id=ids[0],
        image_token_id=ids[1],
        vision_end_token_id=ids[2],
        video_token_id=ids[3],
    )
    model_cls(config).save_pretrained(path)
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=8, merge_size=2, temporal_patch_size=2, min_pixels=64 * 64, max_pixels=64 * 64
    )
    QwenImageTextProcessor(image_processor, tokenizer).save_pretrained(path)


FAMILY_BUILDERS = {
    "idefics3": _idefics_like,
    "smolvlm": _idefics_like,
    "qwen2_vl": _qwen,
    "qwen2_5_vl": _qwen,
}


def save_tiny_vlm(path, family: str):
    """Save a tiny random VLM of `family` (weights, config, tokenizer, image processor) to `path`."""
    FAMILY_BUILDERS[family](path, family)
    return path


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    states = rng.uniform(-0.3, 0.3, size=(3, 4)).astype(np.float32)
    return images, ["pick the red cube", "go", "open the blue drawer please"], states


@pytest.mark.parametrize("family", list(FAMILY_BUILDERS))
def test_local_pretrained_vlm_loads_and_acts(tmp_path, family, batch):
    path = save_tiny_vlm(tmp_path / "vlm", family)
    policy = Policy.from_pretrained(path)
    assert policy.family.name == family
    vocab = policy.tokenizer.get_vocab()
    assert all(token in vocab for token in ACTION_TOKENS)
    assert policy.backbone.get_input_embeddings().num_embeddings >= len(policy.tokenizer)

    out = policy.act(*batch)
    assert out.bins.shape == (3, 4)
    logprobs = policy.action_logprobs(*batch, out.bins)
    np.testing.assert_allclose(logprobs.detach().numpy(), out.logprobs, atol=1e-4)
    images, instructions, states = batch
    alone = policy.act(images[1:2], instructions[1:2], states[1:2])
    np.testing.assert_array_equal(alone.bins[0], out.bins[1])

    policy.save_pretrained(tmp_path / "saved")
    reloaded = Policy.from_pretrained(tmp_path / "saved")
    np.testing.assert_array_equal(reloaded.act(*batch).bins, out.bins)
