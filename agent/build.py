"""Build a built-in policy's model, tokenizer and processor from a preset, with fresh weights."""

from __future__ import annotations

import torch
from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

from agent.action_tokens import ACTION_DIM, N_BINS
from agent.model import AutodidactVLMConfig, AutodidactVLMForConditionalGeneration
from agent.presets import ARCHITECTURES, PolicyPreset
from agent.tokenizer import (
    IMAGE_TOKEN,
    PAD_TOKEN,
    POLICY_TOKENS,
    SPECIAL_TOKENS,
    action_token,
    train_tokenizer,
)

IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


def build_processor(preset: PolicyPreset, tokenizer) -> Idefics3Processor:
    """The processor for the preset's image format: one unsplit image, no resizing needed. Both
    architectures share it (`<image>` expands to `image_seq_len` image tokens)."""
    image_processor = Idefics3ImageProcessorPil(
        do_resize=True,
        size={"longest_edge": preset.image_size},
        max_image_size={"longest_edge": preset.image_size},
        do_image_splitting=False,
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
    )
    return Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=preset.image_seq_len
    )


def _text_config(preset: PolicyPreset, tokenizer) -> dict:
    return dict(
        model_type="llama",
        vocab_size=len(tokenizer),
        hidden_size=preset.text_hidden,
        intermediate_size=preset.text_intermediate,
        num_hidden_layers=preset.text_layers,
        num_attention_heads=preset.text_heads,
        num_key_value_heads=preset.text_kv_heads,
        max_position_embeddings=preset.max_positions,
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
        rms_norm_eps=1e-5,
    )


def _idefics3_config(preset: PolicyPreset, tokenizer) -> Idefics3Config:
    if preset.image_size % (preset.patch_size * preset.scale_factor):
        raise ValueError(
            f"image_size {preset.image_size} must be a multiple of patch_size * scale_factor "
            f"= {preset.patch_size * preset.scale_factor}"
        )
    return Idefics3Config(
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=preset.scale_factor,
        vision_config=dict(
            hidden_size=preset.vision_hidden,
            intermediate_size=preset.vision_intermediate,
            num_hidden_layers=preset.vision_layers,
            num_attention_heads=preset.vision_heads,
            image_size=preset.image_size,
            patch_size=preset.patch_size,
        ),
        text_config=_text_config(preset, tokenizer),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )


def _autodidact_config(preset: PolicyPreset, tokenizer) -> AutodidactVLMConfig:
    """The FiLM words are the BPE vocabulary: after the leading special tokens, before the
    state / action tokens added behind it."""
    return AutodidactVLMConfig(
        text_config=_text_config(preset, tokenizer),
        image_size=preset.image_size,
        vision_channels=preset.vision_channels,
        image_seq_len=preset.image_seq_len,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        word_vocab_size=min(tokenizer.convert_tokens_to_ids(POLICY_TOKENS)),
        first_word_id=len(SPECIAL_TOKENS),
        film_dim=preset.film_dim,
        word_pooling=preset.word_pooling,
        keypoints=preset.keypoints,
        queried_keypoints=preset.queried_keypoints,
        waypoints=preset.waypoints,
        waypoint_tokens=preset.waypoint_tokens,
        action_queries=preset.chunk * ACTION_DIM if preset.chunk > 1 else 0,
        first_bin_id=tokenizer.convert_tokens_to_ids(action_token(0))
        if preset.bin_features
        else -1,
        num_bins=N_BINS,
    )


def build_model(preset: PolicyPreset, seed: int = 0):
    """Return (model, tokenizer, processor) for `preset`, weights drawn from `seed`."""
    if preset.architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {preset.architecture!r} in preset {preset.name!r}; "
            f"known: {', '.join(ARCHITECTURES)}"
        )
    if preset.chunk < 1:
        raise ValueError(f"preset {preset.name!r}: chunk must be >= 1, got {preset.chunk}")
    if preset.architecture == "idefics3" and (
        preset.chunk > 1 or preset.waypoints or preset.waypoint_tokens
    ):
        raise ValueError(
            f"preset {preset.name!r}: action chunks and waypoints need the autodidact_vlm "
            f"architecture, got {preset.architecture!r}"
        )
    tokenizer = train_tokenizer(preset.tokenizer_vocab)
    torch.manual_seed(seed)
    if preset.architecture == "idefics3":
        model = Idefics3ForConditionalGeneration(_idefics3_config(preset, tokenizer))
    else:
        model = AutodidactVLMForConditionalGeneration(_autodidact_config(preset, tokenizer))
    model.eval()
    processor = build_processor(preset, tokenizer)
    return model, tokenizer, processor
