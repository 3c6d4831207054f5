"""Supported VLM families: how each one's processor is called and its position ids computed.

The built-in `autodidact_vlm`, Idefics3 and SmolVLM use 1-D positions (counting real tokens, so
left padding is harmless);
Qwen2-VL and Qwen2.5-VL use 3-D multimodal rotary positions from the model's `get_rope_index`.
Positions are always passed explicitly, so a prefill, the cached decode steps and a
teacher-forced pass over the same tokens agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Family:
    """What the policy needs to know about one model family."""

    name: str
    image_placeholder: str
    """Text standing for one image in a prompt, before the processor expands it."""
    rope_3d: bool
    """True for Qwen-style 3-D multimodal rotary positions."""
    reads_instruction_ids: bool = False
    """True when the vision reads the instruction's token ids (`instruction_ids`), which must be
    passed beside a prompt whose instruction sits in a cached prefix."""


FAMILIES: dict[str, Family] = {
    "autodidact_vlm": Family(
        "autodidact_vlm", "<image>", rope_3d=False, reads_instruction_ids=True
    ),
    "idefics3": Family("idefics3", "<image>", rope_3d=False),
    "smolvlm": Family("smolvlm", "<image>", rope_3d=False),
    "qwen2_vl": Family("qwen2_vl", "<|vision_start|><|image_pad|><|vision_end|>", rope_3d=True),
    "qwen2_5_vl": Family("qwen2_5_vl", "<|vision_start|><|image_pad|><|vision_end|>", rope_3d=True),
}


def get_family(model_type: str, where: str = "") -> Family:
    """The family of a config's `model_type`; unsupported types raise a ValueError."""
    if model_type not in FAMILIES:
        at = f" at {where}" if where else ""
        raise ValueError(
            f"unsupported model family {model_type!r}{at}; supported: {', '.join(FAMILIES)}"
        )
    return FAMILIES[model_type]


def processor_inputs(processor, family: Family, images: np.ndarray, texts: list[str]) -> dict:
    """Run the model's own processor on a batch (one image per prompt), left-padded."""
    processor.tokenizer.padding_side = "left"
    image_list = [np.ascontiguousarray(image) for image in images]
    if family.rope_3d:
        encoded = processor(images=image_list, text=texts)
    else:
        encoded = processor(
            images=[[image] for image in image_list], text=texts, padding=True, return_tensors="pt"
        )
    return dict(encoded)


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """1-D positions counting only real tokens (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def add_position_ids(model, family: Family, inputs: dict) -> dict:
    """Add `position_ids` to prompt inputs and drop what only served to compute them."""
    inputs = dict(inputs)
    mm_token_type_ids = inputs.pop("mm_token_type_ids", None)
    if family.rope_3d:
        if mm_token_type_ids is None:
            raise ValueError(f"{family.name} inputs need mm_token_type_ids from the processor")
        positions, _ = model.model.get_rope_index(
            inputs["input_ids"],
            mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=inputs["attention_mask"],
        )
    else:
        positions = text_positions(inputs["attention_mask"])
    inputs["position_ids"] = positions
    return inputs


def extend_positions(position_ids: torch.Tensor, n: int, start: int = 1) -> torch.Tensor:
    """Positions of `n` text tokens appended after a left-padded prompt (`start`-th onwards)."""
    last = position_ids[..., -1:]
    steps = torch.arange(start, start + n, device=position_ids.device)
    return last + steps
