"""A minimal image + text processor for the Qwen2-VL / Qwen2.5-VL families.

transformers' `Qwen2VLProcessor` insists on a video processor, which needs torchvision; this
machine's stack has none, and the policy never feeds video. This class does what that processor
does for images: run the image processor, expand each `<|image_pad|>` into one token per merged
patch, tokenize (left padding) and mark image tokens in `mm_token_type_ids`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoImageProcessor, AutoTokenizer

IMAGE_PAD = "<|image_pad|>"


class QwenImageTextProcessor:
    """`processor(images=[...], text=[...])` -> input_ids, attention_mask, mm_token_type_ids,
    pixel_values, image_grid_thw (torch tensors)."""

    def __init__(self, image_processor, tokenizer):
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {IMAGE_PAD} token; not a Qwen-VL tokenizer")

    @classmethod
    def from_pretrained(cls, path: str | Path) -> QwenImageTextProcessor:
        return cls(AutoImageProcessor.from_pretrained(path), AutoTokenizer.from_pretrained(path))

    def save_pretrained(self, path: str | Path) -> None:
        self.image_processor.save_pretrained(path)
        self.tokenizer.save_pretrained(path)

    def __call__(self, images, text: list[str], **_) -> dict[str, torch.Tensor]:
        image_inputs = self.image_processor(images=list(images), return_tensors="pt")
        merge = self.image_processor.merge_size**2
        counts = (image_inputs["image_grid_thw"].prod(-1) // merge).tolist()
        expanded, k = [], 0
        for prompt in text:
            pieces = prompt.split(IMAGE_PAD)
            out = pieces[0]
            for piece in pieces[1:]:
                out += IMAGE_PAD * counts[k] + piece
                k += 1
            expanded.append(out)
        if k != len(counts):
            raise ValueError(f"{len(counts)} images for {k} {IMAGE_PAD} placeholders in the text")
        encoded = self.tokenizer(expanded, padding=True, return_tensors="pt")
        mm_token_type_ids = (encoded["input_ids"] == self.image_token_id).long()
        return {**encoded, "mm_token_type_ids": mm_token_type_ids, **image_inputs}
