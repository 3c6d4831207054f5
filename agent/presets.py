"""Built-in model presets: typed configs for the policies built from scratch.

`tiny`, `tiny_vision` and `small` build the instruction-aware policy (`agent.model`, the
default); `tiny_keypoints` is `tiny` with the earlier manipulation levers (spatial-softmax and
instruction-queried keypoints, weighted word pooling, ordinal bin embeddings; BENCHMARKS.md,
"Manipulation levers", measures them); `tiny_grasp` is `tiny` with the manipulation design
(keypoints, "where next" waypoints, action chunks; BENCHMARKS.md, "Manipulation, session 9"),
with its ablations `tiny_grasp_tokens` (the waypoints as tokens the language model writes),
`tiny_grasp_k1` (one step per decision) and `tiny_grasp_ordered` (FiLM reads word order);
`idefics3_tiny`, `idefics3_tiny_vision` and `idefics3_small` build small Idefics3
(SmolVLM architecture) models, kept for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ARCHITECTURES = ("autodidact_vlm", "idefics3")


@dataclass(frozen=True)
class PolicyPreset:
    """Sizes of a policy built from scratch.

    `autodidact_vlm`: FiLM conv tower -> dense layer -> image tokens -> Llama decoder.
    `idefics3`: SigLIP-style vision encoder, pixel-shuffle connector, Llama decoder.
    """

    name: str
    architecture: str = "autodidact_vlm"
    """Which model the preset builds: one of `ARCHITECTURES`."""
    image_size: int = 64
    """Side of the square RGB camera image, in pixels (the envs' default is 64)."""
    vision_channels: int = 32
    """autodidact_vlm: width of the conv stem (the last map has twice as many channels)."""
    image_tokens: int = 4
    """autodidact_vlm: dense image tokens per image in the prompt (a keypoint token follows them
    when the preset has keypoints)."""
    film_dim: int = 32
    """autodidact_vlm: width of the instruction's bag-of-words embedding for FiLM."""
    word_pooling: str = "mean"
    """autodidact_vlm: `mean`, `weighted` or `ordered` (word positions count) pooling of the
    instruction's words for FiLM (`agent.model.AutodidactVLMConfig.word_pooling`)."""
    keypoints: int = 0
    """autodidact_vlm: spatial-softmax keypoints, in an image token of their own (0: none)."""
    queried_keypoints: int = 0
    """autodidact_vlm: keypoints the instruction asks for (see `agent.model`; 0: none)."""
    bin_features: bool = False
    """autodidact_vlm: ordinal embeddings for the state and action bin tokens."""
    waypoints: int = 0
    """autodidact_vlm: how many of the next keyframes' fingertip positions the vision estimates
    ("where next", an auxiliary target), in an image token of their own (`agent.model`; 0: none)."""
    waypoint_tokens: int = 0
    """autodidact_vlm: "where next" as tokens the language model emits before the action
    queries (x, y, z state-bin tokens per keyframe; `agent.model`) instead of the vision's head;
    needs `chunk` > 1 and `waypoints` = 0 (0: none)."""
    chunk: int = 1
    """Actions per decision. 1: one action, its tokens emitted one by one; K > 1 (autodidact_vlm):
    the next K actions from learnt queries in one forward pass (`agent.model.action_queries`),
    executed with temporal ensembling when greedy, open loop when sampled (`agent.chunking`)."""
    patch_size: int = 8
    """idefics3: vision patch side; (image_size / patch_size)^2 patches enter the encoder."""
    scale_factor: int = 2
    """idefics3: pixel-shuffle factor (image tokens = patches / scale_factor^2)."""
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
        if self.architecture == "idefics3":
            return (self.image_size // self.patch_size) ** 2 // self.scale_factor**2
        keypoint_token = 1 if self.keypoints or self.queried_keypoints else 0
        return self.image_tokens + keypoint_token + (1 if self.waypoints else 0)


_TINY = PolicyPreset(name="tiny")
_SMALL = replace(
    _TINY,
    name="small",
    vision_channels=48,
    text_hidden=320,
    text_layers=6,
    text_heads=5,
    text_kv_heads=5,
    text_intermediate=960,
)
_IDEFICS3_SMALL = replace(
    _SMALL,
    name="idefics3_small",
    architecture="idefics3",
    vision_hidden=192,
    vision_layers=4,
    vision_heads=3,
    vision_intermediate=576,
)

_MANIPULATION = dict(word_pooling="weighted", keypoints=32, queried_keypoints=4, bin_features=True)

PRESETS: dict[str, PolicyPreset] = {
    "tiny": _TINY,
    "tiny_vision": replace(_TINY, name="tiny_vision", use_state=False),
    "small": _SMALL,
    "idefics3_tiny": replace(_TINY, name="idefics3_tiny", architecture="idefics3"),
    "idefics3_tiny_vision": replace(
        _TINY, name="idefics3_tiny_vision", architecture="idefics3", use_state=False
    ),
    "idefics3_small": _IDEFICS3_SMALL,
    "tiny_keypoints": replace(_TINY, name="tiny_keypoints", **_MANIPULATION),
    # the manipulation design (issue 31; `../shared/probes/manip_probe.py`'s levers): spatial-
    # softmax keypoints, "where next" waypoints (the next two keyframes) and chunks of 4 actions
    "tiny_grasp": replace(_TINY, name="tiny_grasp", keypoints=32, waypoints=2, chunk=4),
}
# `tiny_grasp` with the waypoints as tokens the language model emits (way (a) of issue 31)
PRESETS["tiny_grasp_tokens"] = replace(
    PRESETS["tiny_grasp"], name="tiny_grasp_tokens", waypoints=0, waypoint_tokens=2
)
# `tiny_grasp` deciding one step at a time (the chunk ablation of issue 31)
PRESETS["tiny_grasp_k1"] = replace(PRESETS["tiny_grasp"], name="tiny_grasp_k1", chunk=1)
# `tiny_grasp` whose FiLM reads word order ("red on blue" is not "blue on red"): for stack
PRESETS["tiny_grasp_ordered"] = replace(
    PRESETS["tiny_grasp"], name="tiny_grasp_ordered", word_pooling="ordered"
)


def get_preset(name: str) -> PolicyPreset:
    """Look up a preset by name; unknown names raise a ValueError listing the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown policy preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
