"""Built-in model presets: typed configs for small Idefics3 (SmolVLM architecture) policies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyPreset:
    """Sizes of a policy built from scratch. Idefics3 = SigLIP-style vision encoder, pixel-shuffle
    connector, Llama text model."""

    name: str
    image_size: int = 64
    """Side of the square RGB camera image, in pixels (the envs' default is 64)."""
    patch_size: int = 8
    """Vision patch side; (image_size / patch_size)^2 patches enter the vision encoder."""
    scale_factor: int = 2
    """Pixel-shuffle factor: image tokens in the prompt = patches / scale_factor^2."""
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    vision_intermediate: int = 128
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 3
    text_kv_heads: int = 3
    text_intermediate: int = 512
    max_positions: int = 256
    """Longest prompt + actions sequence the model supports."""
    tokenizer_vocab: int = 640
    """BPE vocabulary (bytes + merges + specials), before the action tokens are added."""
    use_state: bool = True
    """Write the proprioceptive state (quantized to bins) into the prompt."""

    @property
    def image_seq_len(self) -> int:
        """Number of `<image>` tokens per image in the prompt."""
        return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2


PRESETS: dict[str, PolicyPreset] = {
    "tiny": PolicyPreset(name="tiny"),
    "tiny_vision": PolicyPreset(name="tiny_vision", use_state=False),
    "small": PolicyPreset(
        name="small",
        vision_hidden=192,
        vision_layers=4,
        vision_heads=3,
        vision_intermediate=576,
        text_hidden=320,
        text_layers=6,
        text_heads=5,
        text_kv_heads=5,
        text_intermediate=960,
    ),
}


def get_preset(name: str) -> PolicyPreset:
    """Look up a preset by name; unknown names raise a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown policy preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
