"""The built-in policy backbone: instruction-aware vision feeding a transformers language model.

`AutodidactVLMForConditionalGeneration` is a multimodal LLM in the shape of RT-1 and InstructBLIP:
the instruction conditions the visual features before any spatial mixing, and the language model
(a Llama decoder) reads the instruction's tokens, the image tokens and the state, and emits the
action tokens.

- Vision (`InstructedVision`): a 3x3 conv stem at full resolution; a bag-of-words embedding of
  the instruction's tokens gives a per-channel scale and shift (FiLM) of the stem's features,
  followed by a ReLU, so the instruction can switch features off pixel by pixel ("only red
  things"); three strided convs down to an (H/8)x(W/8) map; one dense layer from the whole map to
  `image_seq_len` image tokens, so where the named object lies is in the tokens' features rather
  than something the language model must find by attention (BENCHMARKS.md, "Instruction
  following", measures the alternatives and this model).
- The FiLM words are the instruction's own tokens: the word tokens of the prompt (ids in
  `[first_word_id, word_vocab_size)`; the image placeholders, markers, state and action tokens
  are special tokens outside that range), or `instruction_ids` given alongside the prompt when
  the instruction is not in `input_ids` (a cached instruction prefix).

Registered with `AutoConfig` / `AutoModelForImageTextToText` under `model_type="autodidact_vlm"`,
so `from_pretrained` on a saved folder finds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from torch.nn import functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    GenerationMixin,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.modeling_utils import slice_logits_to_keep

from agent.runtime import tune_allocator

tune_allocator()  # the vision's full-resolution maps are freed and reallocated every call


WORD_POOLINGS = ("mean", "weighted", "ordered")
MAX_WORD_POSITIONS = 32
"""`word_pooling="ordered"`: words past this many share the last position's embedding."""


@strict
class AutodidactVLMConfig(PreTrainedConfig):
    """Sizes of the instruction-aware vision and the Llama `text_config` behind it."""

    model_type = "autodidact_vlm"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(
            config_class=AutoConfig, model_type="llama", init_kwargs={"rms_norm_eps": 1e-5}
        ),
    }

    text_config: dict | PreTrainedConfig | None = None
    image_size: int = 64
    """Side of the square input image; a multiple of 8."""
    vision_channels: int = 32
    """Width of the conv stem (the map after the strided convs has twice as many channels)."""
    image_seq_len: int = 4
    """Image tokens per image in the prompt."""
    image_token_id: int = 3
    word_vocab_size: int = 640
    """Token ids below this (and >= `first_word_id`) are instruction words for the FiLM embedding."""
    first_word_id: int = 5
    """Ids below this are the tokenizer's special tokens (pad, image placeholders)."""
    film_dim: int = 32
    """Width of the instruction's bag-of-words embedding."""
    word_pooling: str = "mean"
    """How the instruction's word embeddings become one FiLM vector: `mean`, or `weighted` (a
    learnt score per word, softmax-normalized over the instruction's words: the colour word can
    outweigh the template's words; starts as the mean), or `ordered` (each word's embedding is
    scaled elementwise by 1 + a learnt embedding of its position among the instruction's words
    before the mean, so "red on blue" and "blue on red" differ, which a bag of words cannot
    tell apart; the position embeddings start at zero, so it starts as the mean)."""
    keypoints: int = 0
    """Spatial-softmax keypoints (expected x, y of each of this many feature maps) read from the
    instruction-conditioned half-resolution map. These and the `queried_keypoints` make the last
    of the `image_seq_len` image tokens (the others are the dense projection's); 0: none."""
    queried_keypoints: int = 0
    """Keypoints the instruction asks for: each of this many queries (a linear map of the pooled
    instruction words) scores every pixel of the half-resolution map by a dot product; the
    softmax over pixels gives where the named thing is (its expected x, y) and what is there
    (the expected feature), in the keypoint token (see `keypoints`); 0: none."""
    first_bin_id: int = -1
    """Id of the first of `num_bins` consecutive bin tokens (the state and action tokens); when
    >= 0, each bin token's embedding gets a learnt function of the bin's value added, so that
    neighbouring bins start out alike (an ordinal embedding); -1: plain token embeddings."""
    num_bins: int = 256
    waypoints: int = 0
    """"Where next": the vision estimates the fingertip's position (metres, world frame) at this
    many of the episode's next keyframes (gripper changes, ends of straight-line moves, the last
    step; `train.organize.waypoints`), trained by an auxiliary loss; the estimate enters the
    prompt as an image token of its own (the last one), so the action tokens read where the hand
    is going before they are emitted. 0: none."""
    waypoint_tokens: int = 0
    """"Where next" as tokens (embodied chain-of-thought, as ECoT writes gripper positions): the
    language model emits the fingertip's position at this many next keyframes as 3 state-bin
    tokens each (`agent.action_tokens.positions_to_bins`) after the prompt and before the
    action queries, which read them; trained by their cross-entropy under teacher forcing,
    decoded greedily when acting. The alternative to the vision's `waypoints` head (one or the
    other); needs `action_queries`. 0: none."""
    action_queries: int = 0
    """Parallel decoding of an action chunk (as OpenVLA-OFT): the prompt ends with this many
    learnt query embeddings (chunk length x action dimension), and the logits at query q give
    the bins of the chunk's q-th action token, all in one forward pass; the chunk's tokens are
    independent given the prompt. 0: one action, emitted token by token."""
    use_cache: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8, got {self.image_size}")
        if self.word_pooling not in WORD_POOLINGS:
            raise ValueError(
                f"unknown word_pooling {self.word_pooling!r}; expected one of {WORD_POOLINGS}"
            )
        if self.keypoints < 0 or self.queried_keypoints < 0:
            raise ValueError(
                f"keypoints and queried_keypoints must be >= 0, got {self.keypoints} and "
                f"{self.queried_keypoints}"
            )
        if (self.keypoints or self.queried_keypoints) and self.image_seq_len < 2:
            raise ValueError(
                f"image_seq_len must be >= 2 with keypoints (one dense token and the keypoint "
                f"token), got {self.image_seq_len}"
            )
        if self.waypoints < 0 or self.action_queries < 0:
            raise ValueError(
                f"waypoints and action_queries must be >= 0, got {self.waypoints} and "
                f"{self.action_queries}"
            )
        if self.waypoint_tokens < 0:
            raise ValueError(f"waypoint_tokens must be >= 0, got {self.waypoint_tokens}")
        if self.waypoint_tokens and (self.waypoints or not self.action_queries):
            raise ValueError(
                "waypoint_tokens need action_queries > 0 and no waypoint head (waypoints=0); "
                f"got waypoints={self.waypoints}, action_queries={self.action_queries}"
            )
        if self.waypoints and self.image_seq_len < 2 + bool(
            self.keypoints or self.queried_keypoints
        ):
            raise ValueError(
                f"image_seq_len {self.image_seq_len} leaves no dense token beside the waypoint "
                "token (and the keypoint token, when there is one)"
            )
        if not 0 < self.first_word_id < self.word_vocab_size:
            raise ValueError(
                f"need 0 < first_word_id < word_vocab_size, got {self.first_word_id} and "
                f"{self.word_vocab_size}"
            )
        super().__post_init__(**kwargs)


def strided_conv_trunk(channels: int) -> nn.Sequential:
    """Three stride-2 3x3 convs with ReLUs: `channels` in, 2 x `channels` out, 1/8 the side."""
    c = channels
    return nn.Sequential(  # in-place ReLUs: a conv's backward does not need its output
        nn.Conv2d(c, c, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1),
        nn.ReLU(inplace=True),
    )


class InstructedVision(nn.Module):
    """Image + instruction words -> `image_seq_len` image tokens of the language model's width."""

    def __init__(self, config: AutodidactVLMConfig, hidden_size: int):
        super().__init__()
        c = config.vision_channels
        self.first_word_id = config.first_word_id
        self.word_vocab_size = config.word_vocab_size
        self.image_seq_len = config.image_seq_len
        self.hidden_size = hidden_size
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.words = nn.Embedding(config.word_vocab_size, config.film_dim)
        self.film = nn.Linear(config.film_dim, 2 * c)
        self.word_scores = (
            nn.Embedding(config.word_vocab_size, 1) if config.word_pooling == "weighted" else None
        )
        self.word_positions = None
        if config.word_pooling == "ordered":
            self.word_positions = nn.Embedding(MAX_WORD_POSITIONS, config.film_dim)
        self.trunk = strided_conv_trunk(c)
        self.keypoints = SpatialSoftmax(c, config.keypoints) if config.keypoints else None
        queried = config.queried_keypoints
        self.queries = nn.Linear(config.film_dim, queried * c) if queried else None
        width = 2 * config.keypoints + queried * (2 + c)
        self.keypoint_proj = nn.Linear(width, hidden_size) if width else None
        self.waypoints = config.waypoints
        self.dense_tokens = (
            config.image_seq_len - (1 if width else 0) - (1 if self.waypoints else 0)
        )
        side = config.image_size // 8
        self.image_proj = nn.Linear(2 * c * side * side, self.dense_tokens * hidden_size)
        if self.waypoints:
            self.waypoint_head = nn.Sequential(
                nn.Linear(2 * c * side * side + width, WAYPOINT_HEAD_WIDTH),
                nn.ReLU(),
                nn.Linear(WAYPOINT_HEAD_WIDTH, WAYPOINT_HEAD_WIDTH),
                nn.ReLU(),
                nn.Linear(WAYPOINT_HEAD_WIDTH, 3 * self.waypoints),
            )
            features = 3 * self.waypoints * (1 + 2 * WAYPOINT_FREQUENCIES)
            self.waypoint_proj = nn.Linear(features, hidden_size)

    def instruction_embedding(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Pooled embedding [B, film_dim] of the word tokens in each row of `token_ids` [B, L]:
        their mean, their softmax-weighted mean under `word_pooling="weighted"`, or the mean of
        position-scaled embeddings under `word_pooling="ordered"`."""
        is_word = (token_ids >= self.first_word_id) & (token_ids < self.word_vocab_size)
        ids = token_ids.clamp(0, self.word_vocab_size - 1)
        vectors = self.words(ids)
        if self.word_positions is not None:  # position among the row's words, padding aside
            position = (is_word.long().cumsum(1) - 1).clamp(0, MAX_WORD_POSITIONS - 1)
            vectors = vectors * (1 + self.word_positions(position))
        if self.word_scores is None:
            weights = is_word.to(vectors.dtype)[..., None]
            return (vectors * weights).sum(1) / weights.sum(1).clamp(min=1)
        scores = self.word_scores(ids).squeeze(-1).masked_fill(~is_word, float("-inf"))
        weights = torch.softmax(scores, dim=1).nan_to_num(0.0)  # a row without words: zeros
        return (vectors * weights[..., None]).sum(1)

    def forward(
        self, pixel_values: torch.Tensor, token_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image tokens [B, image_seq_len, hidden] and the waypoint estimate [B, waypoints, 3]
        in metres (None without `waypoints`)."""
        if pixel_values.dim() == 5:  # [B, images=1, C, H, W], the processors' layout
            pixel_values = pixel_values.flatten(0, 1)
        words = self.instruction_embedding(token_ids)
        gamma, beta = self.film(words).chunk(2, dim=-1)
        x = self.stem(pixel_values)
        # FiLM then ReLU at full resolution, the tower's most memory-bound step: one fused
        # multiply-add and an in-place ReLU (faster than x * (1 + g) + b; BENCHMARKS.md, "Policy").
        x = F.relu(torch.addcmul(beta[:, :, None, None], x, 1 + gamma[:, :, None, None]), True)
        half = self.trunk[:2](x)  # the first stride-2 conv: the half-resolution map
        low = self.trunk[2:](half).flatten(1)
        tokens = self.image_proj(low).view(-1, self.dense_tokens, self.hidden_size)
        points = []
        if self.keypoints is not None:
            points.append(self.keypoints(half))
        if self.queries is not None:
            points.append(queried_keypoints(half, self.queries(words)))
        head_inputs = [low]
        if points:  # a token of their own: the dense tokens' scale would drown them
            keypoints = torch.cat(points, dim=1)
            tokens = torch.cat([tokens, self.keypoint_proj(keypoints)[:, None]], dim=1)
            head_inputs.append(keypoints)
        if not self.waypoints:
            return tokens, None
        found = self.waypoint_head(torch.cat(head_inputs, dim=1))
        waypoints = found.view(-1, self.waypoints, 3) * WAYPOINT_SCALE
        token = self.waypoint_proj(fourier_features(found / 3.0, WAYPOINT_FREQUENCIES).flatten(1))
        return torch.cat([tokens, token[:, None]], dim=1), waypoints


WAYPOINT_SCALE = 0.1
"""The waypoint head's outputs are positions in decimetres (the workspace spans about +-3)."""
WAYPOINT_HEAD_WIDTH = 256
WAYPOINT_FREQUENCIES = 6


def fourier_features(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """x [..., n] -> [..., n, 1 + 2 * frequencies]: x and sin, cos of pi * k * x, k = 1..F."""
    angles = (
        x[..., None] * math.pi * torch.arange(1, frequencies + 1, device=x.device, dtype=x.dtype)
    )
    return torch.cat([x[..., None], angles.sin(), angles.cos()], dim=-1)


def pixel_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """[h * w, 2]: each pixel's (x, y) in [-1, 1], row by row."""
    ys = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(h * w, 2)


def queried_keypoints(features: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Maps [B, C, H, W] and queries [B, Q * C] -> [B, Q * (2 + C)]: per query, the expected
    (x, y) and the expected feature under the softmax over pixels of query . feature / sqrt(C)."""
    b, c, h, w = features.shape
    flat = features.flatten(2)  # [B, C, HW]
    scores = queries.view(b, -1, c) @ flat / math.sqrt(c)  # [B, Q, HW]
    probs = torch.softmax(scores.float(), dim=-1).to(features.dtype)
    where = probs @ pixel_grid(h, w, features)  # [B, Q, 2]
    what = probs @ flat.transpose(1, 2)  # [B, Q, C]
    return torch.cat([where, what], dim=-1).flatten(1)


class SpatialSoftmax(nn.Module):
    """Feature maps -> the expected (x, y) in [-1, 1] of `keypoints` learnt 1x1-conv maps, each
    taken as a distribution over the pixels (Levine et al. 2016; robomimic's image encoders):
    where a feature is, to a fraction of a pixel, in a few numbers a dense layer can use."""

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, keypoints, 1)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        logits = self.conv(x).flatten(2) / self.log_temperature.exp()  # [B, K, H*W]
        probs = torch.softmax(logits.float(), dim=-1).to(x.dtype)
        return (probs @ pixel_grid(h, w, x)).flatten(1)  # [B, 2K]: x, y of each keypoint


class BinFeatures(nn.Module):
    """Bin token ids -> a learnt function of the bin's value (its position in [-1, 1] and a few
    of its Fourier features), added to those tokens' embeddings so neighbouring bins share what
    they learn: the state and the actions are numbers, not names."""

    def __init__(self, first_bin_id: int, num_bins: int, hidden_size: int, frequencies: int = 8):
        super().__init__()
        self.first_bin_id, self.num_bins = first_bin_id, num_bins
        self.frequencies = frequencies
        self.proj = nn.Linear(1 + 2 * frequencies, hidden_size)

    def forward(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor) -> torch.Tensor:
        offset = input_ids - self.first_bin_id
        is_bin = (offset >= 0) & (offset < self.num_bins)
        value = (2.0 * offset.clamp(0, self.num_bins - 1) / (self.num_bins - 1) - 1.0)[..., None]
        angles = value * math.pi * torch.arange(1, self.frequencies + 1, device=value.device)
        features = torch.cat([value, angles.sin(), angles.cos()], dim=-1)
        added = self.proj(features.to(inputs_embeds.dtype)) * is_bin[..., None]
        return inputs_embeds + added


class AutodidactVLMPreTrainedModel(PreTrainedModel):
    config_class = AutodidactVLMConfig
    config: AutodidactVLMConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LlamaDecoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        """The vision keeps PyTorch's default initialization (as the measured design had); the
        language model gets transformers' usual one."""
        if getattr(module, "_zero_init", False):
            init.zeros_(module.weight)
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and getattr(module, "_torch_init", False):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            fan_in = module.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.Embedding) and getattr(module, "_torch_init", False):
            init.normal_(module.weight, mean=0.0, std=1.0)
        else:
            super()._init_weights(module)


class AutodidactVLMForConditionalGeneration(AutodidactVLMPreTrainedModel, GenerationMixin):
    """Instruction-aware vision -> image tokens -> Llama decoder -> next-token logits."""

    def __init__(self, config: AutodidactVLMConfig):
        super().__init__(config)
        text = config.text_config
        self.vision = InstructedVision(config, text.hidden_size)
        for module in self.vision.modules():
            module._torch_init = True
        if self.vision.word_scores is not None:
            self.vision.word_scores._zero_init = True  # equal scores: the mean to begin with
        if self.vision.word_positions is not None:
            self.vision.word_positions._zero_init = True  # no position effect: the mean at first
        self.language_model = AutoModel.from_config(text)
        self.bin_features = (
            BinFeatures(config.first_bin_id, config.num_bins, text.hidden_size)
            if config.first_bin_id >= 0
            else None
        )
        self.lm_head = nn.Linear(text.hidden_size, text.vocab_size, bias=False)
        self.action_queries = (
            nn.Embedding(config.action_queries, text.hidden_size) if config.action_queries else None
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def merge_image_tokens(
        self,
        input_ids: torch.Tensor,
        inputs_embeds: torch.Tensor,
        pixel_values: torch.Tensor,
        instruction_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`inputs_embeds` with the image tokens' rows replaced by the vision's image tokens, and
        the vision's waypoint estimate (None without `waypoints`)."""
        words = input_ids if instruction_ids is None else instruction_ids
        image_tokens, waypoints = self.vision(pixel_values.to(self.vision.stem.weight.dtype), words)
        is_image = input_ids == self.config.image_token_id
        found, expected = int(is_image.sum()), image_tokens.shape[0] * image_tokens.shape[1]
        if found != expected:
            raise ValueError(
                f"the prompt has {found} image tokens for {image_tokens.shape[0]} images; "
                f"expected {self.config.image_seq_len} per image ({expected})"
            )
        image_tokens = image_tokens.to(inputs_embeds.dtype).reshape(-1, inputs_embeds.shape[-1])
        return inputs_embeds.masked_scatter(is_image[..., None], image_tokens), waypoints

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        instruction_ids: torch.LongTensor | None = None,
        pixel_attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        with_action_queries: bool = False,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """`instruction_ids` [B, L]: the instruction's token ids for the FiLM words, when the
        instruction is not part of `input_ids` (it sits in `cache`). `past_key_values` (the
        name transformers deprecates for `cache`) is accepted for `generate` and older callers.
        `with_action_queries`: the last `config.action_queries` positions of `input_ids` are
        placeholders for the action-chunk queries; their embeddings become the learnt queries.
        `pixel_attention_mask` (from the processor) is accepted and unused: every image is one
        whole, unpadded frame."""
        past = kwargs.pop("past_key_values", None)
        cache = cache if cache is not None else past
        waypoints = None
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if self.bin_features is not None:
                inputs_embeds = self.bin_features(input_ids, inputs_embeds)
        if pixel_values is not None:
            if input_ids is None:
                raise ValueError("pixel_values need input_ids to place the image tokens")
            inputs_embeds, waypoints = self.merge_image_tokens(
                input_ids, inputs_embeds, pixel_values, instruction_ids
            )
        if with_action_queries:
            q = self.config.action_queries
            if not q:
                raise ValueError("with_action_queries needs a model with config.action_queries > 0")
            queries = self.action_queries.weight.to(inputs_embeds.dtype)
            queries = queries.expand(inputs_embeds.shape[0], -1, -1)
            inputs_embeds = torch.cat([inputs_embeds[:, :-q], queries], dim=1)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            **kwargs,
        )
        hidden = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, self.config.text_config.vocab_size)
        return AutodidactVLMOutput(
            loss=loss, logits=logits, cache=outputs.cache, waypoints=waypoints
        )


@dataclass
class AutodidactVLMOutput(CausalLMOutputWithPast):
    """`CausalLMOutputWithPast` and `waypoints` [B, config.waypoints, 3]: the vision's estimate
    of where the fingertip will be at the next keyframes, in metres (None without waypoints or
    without pixel values)."""

    waypoints: torch.Tensor | None = None


AutoConfig.register(AutodidactVLMConfig.model_type, AutodidactVLMConfig, exist_ok=True)
AutoModelForImageTextToText.register(
    AutodidactVLMConfig, AutodidactVLMForConditionalGeneration, exist_ok=True
)

__all__ = [
    "AutodidactVLMConfig",
    "AutodidactVLMForConditionalGeneration",
    "InstructedVision",
]
