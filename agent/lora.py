"""LoRA through peft: add adapters, merge them, switch them off for a reference model."""

from __future__ import annotations

import contextlib

from peft import LoraConfig, PeftModel, get_peft_model

DEFAULT_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
    "film",
    "image_proj",
)
"""Attention and MLP projections (text and vision towers, where the names match), the head, and
the built-in policy's instruction conditioning (FiLM) and image-token projection."""


def base_model(model):
    """The transformers model under any peft wrapper."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def add_lora(model, r: int, alpha: int, dropout: float, target_modules=None):
    if isinstance(model, PeftModel):
        raise ValueError("the policy already has LoRA adapters; merge_lora() them first")
    if r <= 0:
        raise ValueError(f"LoRA rank r must be > 0, got {r}")
    targets = list(target_modules) if target_modules is not None else list(DEFAULT_TARGETS)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    return get_peft_model(model, config)


def merge(model):
    if not isinstance(model, PeftModel):
        raise ValueError("the policy has no LoRA adapters to merge; call add_lora() first")
    return model.merge_and_unload()


@contextlib.contextmanager
def disabled(model):
    if not isinstance(model, PeftModel):
        raise ValueError("the policy has no LoRA adapters to disable; call add_lora() first")
    with model.disable_adapter():
        yield
