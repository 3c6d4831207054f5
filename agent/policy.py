"""The policy: a transformers multimodal LLM that reads an image, an instruction and the state,
and emits one action token per action dimension, decoded under the constraint that only action
tokens can be produced. The built-in presets build `agent.model` (instruction-aware vision and a
Llama decoder) or, for comparison, small Idefics3 models; local pretrained VLMs load by path."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agent import checkpoint, lora
from agent.action_tokens import (
    ACTION_DIM,
    N_BINS,
    bins_to_actions,
    bins_to_positions,
    positions_to_bins,
)
from agent.build import IMAGE_MEAN, IMAGE_STD, build_model
from agent.checks import check_bins, check_images, check_instructions, check_states
from agent.decoding import choose_tokens
from agent.families import (
    FAMILIES,
    Family,
    add_position_ids,
    extend_positions,
    processor_inputs,
    text_positions,
)
from agent.prefix_cache import PrefixCache, weights_fingerprint
from agent.presets import get_preset
from agent.prompt import PromptPieces, judge_prompt_text, prompt_text
from agent.runtime import tune_allocator
from agent.tokenizer import action_token

tune_allocator()  # before the first large tensor: see agent.runtime


@dataclass
class ActOutput:
    """What `Policy.act` returns for a batch of B observations."""

    actions: np.ndarray
    """float32 [B, 4]: bin centres, ready for `env.step`."""
    bins: np.ndarray
    """int64 [B, 4]: the chosen action-token bins."""
    logprobs: np.ndarray
    """float32 [B, 4]: log-prob of each chosen token under softmax(restricted logits / T)."""
    chunk_bins: np.ndarray | None = None
    """int64 [B, K, 4]: a chunk policy's bins for the next K steps (`actions`, `bins` and
    `logprobs` are its first step's); None for a policy that decides one step at a time."""
    chunk_logprobs: np.ndarray | None = None
    """float32 [B, K, 4]: the log-prob of each of `chunk_bins` (the chunk's tokens are sampled
    independently given the prompt, so a step's log-prob is the sum of its row's)."""
    waypoints: np.ndarray | None = None
    """float32 [B, W, 3]: where the policy says the fingertip goes next (metres; None without a
    waypoint head)."""


@dataclass
class ForwardOutput:
    """What one teacher-forced forward pass gives (`Policy.forward_outputs`)."""

    logprobs: torch.Tensor
    """[B, 4], or [B, K * 4] for a chunk policy: log-probs of `inputs["action_bins"]`."""
    waypoints: torch.Tensor | None = None
    """[B, W, 3] metres: the waypoint head's estimate, or the waypoint tokens' most likely bins
    (each given the teacher-forced tokens before it); None without waypoints."""
    waypoint_logprobs: torch.Tensor | None = None
    """[B, W * 3]: log-probs of the waypoint tokens in the input (a waypoint-token policy)."""
    waypoint_known: torch.Tensor | None = None
    """bool [B, W * 3]: which of those tokens came from a known target (the rest: placeholders
    for an unknown target, not to be learnt)."""


@dataclass
class PolicySettings:
    """How the policy uses its backbone; saved beside the weights as `autodidact_policy.json`."""

    family: str
    use_state: bool = True
    """Write the proprioceptive state into the prompt."""
    image_size: int | None = 64
    """Required square image side, or None when the processor accepts any size."""
    fast_path: bool = False
    """Build inputs directly with torch (built-in Idefics3 format) instead of the processor."""
    image_seq_len: int = 16
    policy_id: str = "policy"


INPUT_RECORDS = ("action_bins", "waypoint_bins", "waypoint_known")
"""Entries of `prepare_inputs`' dict that record targets rather than feed the model."""


class Policy:
    """Image + instruction (+ state) in, action tokens out. See `agent/__init__.py` for the API."""

    action_dim = ACTION_DIM

    def __init__(
        self, model, processor, settings: PolicySettings, device: str | torch.device = "cpu"
    ):
        self.model = model.to(device)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.settings = settings
        self.family: Family = FAMILIES[settings.family]
        ids = self.tokenizer.convert_tokens_to_ids([action_token(k) for k in range(N_BINS)])
        self.action_token_ids = torch.tensor(ids, device=device)
        self.pad_id = self.tokenizer.pad_token_id
        self._pieces = (
            PromptPieces(self.tokenizer, settings.image_seq_len) if settings.fast_path else None
        )
        self._prefix = PrefixCache()
        self.reuse_prefix = True
        """Keep the instruction's key/value cache between `act` calls (fast path only)."""

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_preset(cls, name: str, seed: int = 0, device: str | torch.device = "cpu") -> Policy:
        """A fresh policy of a built-in preset (`tiny`, `small`, ..., `agent.presets.PRESETS`),
        weights drawn from `seed`."""
        preset = get_preset(name)
        model, tokenizer, processor = build_model(preset, seed)
        settings = PolicySettings(
            family=preset.architecture,
            use_state=preset.use_state,
            image_size=preset.image_size,
            fast_path=True,
            image_seq_len=preset.image_seq_len,
            policy_id=f"{name}-seed{seed}",
        )
        return cls(model, processor, settings, device)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Policy:
        """Load a saved policy, or any local Idefics3/SmolVLM/Qwen2-VL/Qwen2.5-VL checkpoint."""
        model, processor, settings = checkpoint.load(path)
        return cls(model, processor, PolicySettings(**settings), device)

    def with_dtype(self, dtype: str | torch.dtype) -> Policy:
        """This policy with its weights cast to `dtype` (`float32`, `bfloat16` or `float16`), for
        inference: a copy, unless the weights already have that dtype (then `self`).

        Whether bfloat16 is faster depends on the CPU's bf16 instructions (BENCHMARKS.md,
        "Rollout", measures it). Train the float32 original: the copy shares tokenizer, processor,
        settings and `policy_id`, not weights. Log-probs and sampling are computed in float32
        from the cast model's logits.
        """
        names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if isinstance(dtype, str):
            if dtype not in names:
                raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(names)}")
            dtype = names[dtype]
        if dtype not in names.values():
            raise ValueError(f"unsupported dtype {dtype}; expected one of {list(names)}")
        if self.backbone.dtype == dtype:
            return self
        model = copy.deepcopy(self.model).to(dtype)
        model.eval()
        twin = Policy(model, self.processor, self.settings, self.device)
        twin.reuse_prefix = self.reuse_prefix
        return twin

    def save_pretrained(self, path: str | Path) -> None:
        """Write weights (safetensors), tokenizer, processor, settings and any LoRA adapter."""
        checkpoint.save(path, self.model, self.processor, vars(self.settings))

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.action_token_ids.device

    @property
    def policy_id(self) -> str:
        return self.settings.policy_id

    @policy_id.setter
    def policy_id(self, value: str) -> None:
        self.settings.policy_id = str(value)

    @property
    def backbone(self):
        """The underlying transformers model (unwrapped from peft when LoRA is on)."""
        return lora.base_model(self.model)

    # ----------------------------------------------------------------- inputs
    def _observations(self, images, instructions, states):
        images = check_images(images, self.settings.image_size)
        instructions = check_instructions(instructions, len(images))
        states = check_states(states, len(images), self.settings.use_state)
        rows = [None] * len(images) if states is None else list(states)
        return images, instructions, rows

    def _prompt_inputs(self, images, instructions, states) -> dict[str, torch.Tensor]:
        images, instructions, rows = self._observations(images, instructions, states)
        if self._pieces is not None:
            seqs = [
                self._pieces.instruction_ids(i) + self._pieces.suffix_ids(s)
                for i, s in zip(instructions, rows, strict=True)
            ]
            inputs = self._left_pad(seqs)
            inputs["pixel_values"] = self._pixel_values(images)
            inputs["position_ids"] = text_positions(inputs["attention_mask"])
            return inputs
        texts = [
            prompt_text(i, s, self.family.image_placeholder)
            for i, s in zip(instructions, rows, strict=True)
        ]
        inputs = processor_inputs(self.processor, self.family, images, texts)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return add_position_ids(self.backbone, self.family, inputs)

    def _prefix_cached_inputs(self, images, instructions, states) -> dict[str, torch.Tensor]:
        """Prefill inputs that reuse the instruction prefix's key/value cache (fast path).

        Every row's suffix (image, state, action marker) has the same length, so the layout
        [pads | instruction | suffix] is exactly the one `_prompt_inputs` builds.
        """
        images, instructions, rows = self._observations(images, instructions, states)
        key = (weights_fingerprint(self.model), tuple(instructions), str(self.device))
        cache = self._prefix.lookup(key)
        if cache is None:
            prefix = self._left_pad([self._pieces.instruction_ids(i) for i in instructions])
            mask = prefix["attention_mask"]
            out = self.model(
                input_ids=prefix["input_ids"],
                attention_mask=mask,
                position_ids=text_positions(mask),
                use_cache=True,
                logits_to_keep=1,
            )
            cache = self._prefix.store(key, out.cache, mask)
        prefix_mask = self._prefix.mask
        suffix = torch.tensor([self._pieces.suffix_ids(s) for s in rows], device=self.device)
        mask = torch.cat([prefix_mask, torch.ones_like(suffix)], dim=1)
        lengths = prefix_mask.sum(1, keepdim=True)
        inputs = {
            "input_ids": suffix,
            "attention_mask": mask,
            "position_ids": lengths + torch.arange(suffix.shape[1], device=self.device),
            "pixel_values": self._pixel_values(images),
            "cache": cache,
        }
        if self.family.reads_instruction_ids:
            instruction_ids = [self._pieces.instruction_ids(i) for i in instructions]
            inputs["instruction_ids"] = self._left_pad(instruction_ids)["input_ids"]
        return inputs

    def _left_pad(self, seqs: list[list[int]]) -> dict[str, torch.Tensor]:
        length = max(len(s) for s in seqs)
        ids = np.full((len(seqs), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), length), dtype=np.int64)
        for row, seq in enumerate(seqs):
            ids[row, length - len(seq) :] = seq
            mask[row, length - len(seq) :] = 1
        return {
            "input_ids": torch.from_numpy(ids).to(self.device),
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }

    def _pixel_values(self, images: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(IMAGE_MEAN, device=self.device)[:, None, None]
        std = torch.tensor(IMAGE_STD, device=self.device)[:, None, None]
        return ((pixels - mean) / std)[:, None].to(self.backbone.dtype)

    @property
    def chunk(self) -> int:
        """Actions per decision: K > 1 for a model that decodes a chunk of K actions in parallel
        (`agent.model`'s `action_queries`), else 1."""
        queries = int(getattr(self.backbone.config, "action_queries", 0) or 0)
        return queries // self.action_dim if queries else 1

    @property
    def waypoints(self) -> int:
        """How many next keyframes' fingertip positions the model estimates ("where next",
        `agent.model`), by its vision head or as tokens; 0 for models without them (pretrained
        VLMs)."""
        head = int(getattr(self.backbone.config, "waypoints", 0) or 0)
        return head or self.waypoint_tokens

    @property
    def waypoint_tokens(self) -> int:
        """How many next keyframes the language model writes as tokens before the action
        queries (`agent.model`'s `waypoint_tokens`); 0 for a waypoint head or none."""
        return int(getattr(self.backbone.config, "waypoint_tokens", 0) or 0)

    def prepare_inputs(
        self, images, instructions, states, bins, waypoints=None
    ) -> dict[str, torch.Tensor]:
        """Prompt + the given action tokens, for `logprobs_from_inputs` (training pre-builds these).

        `bins`: [B, 4], or for a chunk policy [B, K, 4] (the next K steps' bins; the prompt then
        ends with the K x 4 action queries instead of the tokens themselves). A waypoint-token
        policy writes `waypoints` [B, W, 3] (metres, NaN: unknown) as its waypoint tokens
        (teacher forcing), or, without them, the tokens it decodes greedily itself (what it
        does when it acts, so the log-probs are those of the actions it would take)."""
        inputs = self._prompt_inputs(images, instructions, states)
        batch = len(inputs["input_ids"])
        if self.chunk > 1:
            if self.waypoint_tokens:
                inputs = self._with_waypoint_tokens(inputs, waypoints)
            return self._with_queries(inputs, np.asarray(bins).reshape(batch, -1))
        bins = torch.from_numpy(check_bins(bins, batch, self.action_dim))
        bins = bins.to(self.device)
        n = self.action_dim
        inputs["input_ids"] = torch.cat([inputs["input_ids"], self.action_token_ids[bins]], dim=1)
        ones = torch.ones_like(bins)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], ones], dim=1)
        positions = inputs["position_ids"]
        inputs["position_ids"] = torch.cat([positions, extend_positions(positions, n)], dim=-1)
        inputs["action_bins"] = bins
        return inputs

    def _with_queries(self, inputs: dict[str, torch.Tensor], bins=None) -> dict[str, torch.Tensor]:
        """`inputs` extended by the K x 4 action-query placeholders (a chunk policy), and
        `action_bins` [B, K * 4] when `bins` are given."""
        q = self.chunk * self.action_dim
        batch = len(inputs["input_ids"])
        placeholders = torch.full((batch, q), self.pad_id, device=self.device)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], placeholders], dim=1)
        if "attention_mask" in inputs:
            ones = torch.ones_like(placeholders)
            inputs["attention_mask"] = torch.cat([inputs["attention_mask"], ones], dim=1)
        positions = inputs["position_ids"]
        inputs["position_ids"] = torch.cat([positions, extend_positions(positions, q)], dim=-1)
        inputs["with_action_queries"] = True
        if bins is not None:
            bins = torch.from_numpy(check_bins(bins, batch, q)).to(self.device)
            inputs["action_bins"] = bins
        return inputs

    def _with_waypoint_tokens(self, inputs, waypoints=None) -> dict[str, torch.Tensor]:
        """`inputs` extended by the W x 3 waypoint tokens: `waypoints`' bins, or (None) the
        greedy decode; `waypoint_bins` [B, W * 3] and `waypoint_known` record them."""
        n = 3 * self.waypoint_tokens
        batch = len(inputs["input_ids"])
        if waypoints is None:
            bins = self._decode_waypoint_tokens(inputs)[0]
            known = torch.ones_like(bins, dtype=torch.bool)
        else:
            target = np.asarray(waypoints, dtype=np.float64).reshape(batch, -1, 3)
            if target.shape[1] != self.waypoint_tokens:
                raise ValueError(
                    f"waypoints must have shape [B, {self.waypoint_tokens}, 3], got "
                    f"{np.asarray(waypoints).shape}"
                )
            unknown = np.isnan(target)
            bins = positions_to_bins(np.where(unknown, 0.0, target)).reshape(batch, n)
            bins = torch.from_numpy(bins).to(self.device)
            known = torch.from_numpy(~unknown.reshape(batch, n)).to(self.device)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], self.action_token_ids[bins]], dim=1)
        ones = torch.ones_like(bins)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], ones], dim=1)
        positions = inputs["position_ids"]
        inputs["position_ids"] = torch.cat([positions, extend_positions(positions, n)], dim=-1)
        inputs["waypoint_bins"], inputs["waypoint_known"] = bins, known
        return inputs

    @torch.no_grad()
    def _decode_waypoint_tokens(self, inputs):
        """Greedy decode of the W x 3 waypoint tokens after the prompt `inputs`: (bins
        [B, W * 3], the cache holding the prompt and all tokens but the last, its mask)."""
        bins, _, cache, mask = self._decode_tokens(
            inputs, 3 * self.waypoint_tokens, greedy=True, temperature=1.0, top_k=0, generator=None
        )
        return bins, cache, mask

    def _decode_tokens(self, inputs, n: int, **choose):
        """Prefill `inputs`, then decode `n` action-vocabulary tokens (state / action bins), one
        cached step each, each chosen by `choose_tokens(**choose)`: (bins [B, n], their
        log-probs [B, n], the cache holding the prompt and all tokens but the last, its mask)."""
        model_inputs = {k: v for k, v in inputs.items() if k not in INPUT_RECORDS}
        mask, positions = inputs["attention_mask"], inputs["position_ids"]
        out = self.model(**model_inputs, use_cache=True, logits_to_keep=1)
        bins, logprobs = [], []
        for i in range(n):
            b, lp = choose_tokens(out.logits[:, -1][:, self.action_token_ids], **choose)
            bins.append(b)
            logprobs.append(lp)
            if i + 1 < n:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                out = self.model(
                    input_ids=self.action_token_ids[b][:, None],
                    attention_mask=mask,
                    position_ids=extend_positions(positions, 1, start=i + 1),
                    cache=out.cache,
                    use_cache=True,
                )
        return torch.stack(bins, dim=1), torch.stack(logprobs, dim=1), out.cache, mask

    # ----------------------------------------------------------------- log-probs
    def logprobs_from_inputs(self, inputs: dict[str, torch.Tensor], temperature: float = 1.0):
        """Teacher-forced log-probs of `inputs["action_bins"]`, differentiable: [B, 4], or
        [B, K * 4] for a chunk policy."""
        return self.logprobs_and_waypoints(inputs, temperature)[0]

    def logprobs_and_waypoints(self, inputs: dict[str, torch.Tensor], temperature: float = 1.0):
        """`logprobs_from_inputs` and, from the same forward pass, the waypoint estimate
        [B, waypoints, 3] in metres (None when the model makes none)."""
        out = self.forward_outputs(inputs, temperature)
        return out.logprobs, out.waypoints

    def forward_outputs(
        self, inputs: dict[str, torch.Tensor], temperature: float = 1.0
    ) -> ForwardOutput:
        """One teacher-forced forward pass over `prepare_inputs`' `inputs`: the action tokens'
        log-probs, and the waypoints (estimate, and for a waypoint-token policy the waypoint
        tokens' log-probs at temperature 1)."""
        model_inputs = {k: v for k, v in inputs.items() if k not in INPUT_RECORDS}
        wp_logprobs = wp_estimate = None
        if model_inputs.get("with_action_queries"):
            q = self.chunk * self.action_dim
            n = inputs["waypoint_bins"].shape[1] if "waypoint_bins" in inputs else 0
            keep = q + n + 1 if n else q  # the token before each waypoint token predicts it
            out = self.model(**model_inputs, use_cache=False, logits_to_keep=keep)
            logits = out.logits[:, -q:][..., self.action_token_ids].float() / temperature
            if n:
                wp_logits = torch.log_softmax(
                    out.logits[:, :n][..., self.action_token_ids].float(), dim=-1
                )
                wp_logprobs = wp_logits.gather(-1, inputs["waypoint_bins"][..., None])[..., 0]
                best = wp_logits.argmax(-1).cpu().numpy().reshape(len(logits), -1, 3)
                wp_estimate = torch.from_numpy(bins_to_positions(best)).to(logits.device)
        else:
            n = self.action_dim
            out = self.model(**model_inputs, use_cache=False, logits_to_keep=n + 1)
            logits = out.logits[:, :n][..., self.action_token_ids].float() / temperature
        logprobs = torch.log_softmax(logits, dim=-1)
        chosen = logprobs.gather(-1, inputs["action_bins"][..., None]).squeeze(-1)
        waypoints = getattr(out, "waypoints", None)
        return ForwardOutput(
            logprobs=chosen,
            waypoints=wp_estimate if waypoints is None else waypoints,
            waypoint_logprobs=wp_logprobs,
            waypoint_known=inputs.get("waypoint_known"),
        )

    def action_logprobs(self, images, instructions, states, bins, temperature: float = 1.0):
        """Teacher-forced log-probs [B, 4] of `bins` for these observations, differentiable."""
        inputs = self.prepare_inputs(images, instructions, states, bins)
        return self.logprobs_from_inputs(inputs, temperature)

    # ----------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(
        self,
        images,
        instructions,
        states=None,
        *,
        greedy: bool = True,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> ActOutput:
        """Actions for a batch: one prefill forward, then one cached step per further dimension.

        On the fast path the instruction's key/value cache is kept between calls with the same
        instructions and weights (see `agent.prefix_cache`); `reuse_prefix = False` turns that off.
        """
        if self._pieces is not None and self.reuse_prefix:
            inputs = self._prefix_cached_inputs(images, instructions, states)
        else:
            inputs = self._prompt_inputs(images, instructions, states)
        if self.chunk > 1:
            return self._act_chunk(inputs, greedy, temperature, top_k, generator)
        bins, logprobs, _, _ = self._decode_tokens(
            inputs,
            self.action_dim,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )
        bins_np = bins.cpu().numpy().astype(np.int64)
        return ActOutput(
            actions=bins_to_actions(bins_np),
            bins=bins_np,
            logprobs=logprobs.float().cpu().numpy(),
        )

    def _act_chunk(self, inputs, greedy, temperature, top_k, generator) -> ActOutput:
        """A chunk policy's decision: all K x 4 tokens from one forward pass over the queries
        (a waypoint-token policy first decodes its waypoint tokens greedily, one cached step
        each, and the queries follow them)."""
        q, k = self.chunk * self.action_dim, self.chunk
        if self.waypoint_tokens:
            wp_bins, cache, mask = self._decode_waypoint_tokens(inputs)
            n = wp_bins.shape[1]
            placeholders = torch.full((len(wp_bins), q), self.pad_id, device=self.device)
            ids = torch.cat([self.action_token_ids[wp_bins[:, -1:]], placeholders], dim=1)
            out = self.model(
                input_ids=ids,
                attention_mask=torch.cat([mask, torch.ones_like(ids)], dim=1),
                position_ids=extend_positions(inputs["position_ids"], 1 + q, start=n),
                cache=cache,
                use_cache=False,
                logits_to_keep=q,
                with_action_queries=True,
            )
            positions = bins_to_positions(wp_bins.cpu().numpy().reshape(len(wp_bins), -1, 3))
            out.waypoints = torch.from_numpy(positions)
        else:
            out = self.model(**self._with_queries(inputs), use_cache=False, logits_to_keep=q)
        logits = out.logits[..., self.action_token_ids]  # [B, Q, bins]
        batch = logits.shape[0]
        bins, logprobs = choose_tokens(
            logits.reshape(batch * q, -1),
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )
        chunk_bins = bins.view(batch, k, self.action_dim).cpu().numpy().astype(np.int64)
        chunk_logprobs = logprobs.view(batch, k, self.action_dim).float().cpu().numpy()
        waypoints = getattr(out, "waypoints", None)
        return ActOutput(
            actions=bins_to_actions(chunk_bins[:, 0]),
            bins=chunk_bins[:, 0],
            logprobs=chunk_logprobs[:, 0],
            chunk_bins=chunk_bins,
            chunk_logprobs=chunk_logprobs,
            waypoints=None if waypoints is None else waypoints.float().cpu().numpy(),
        )

    # ----------------------------------------------------------------- judges
    def text_prompt_inputs(
        self, images, texts: list[str], instructions: list[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Image + free-text prompt, left-padded, ready for `policy.model(**inputs)`.

        `instructions`: for a model whose vision reads the instruction (the built-in one), the
        instruction each image is about; its words condition the vision as when acting, instead
        of every word of the prompt (where a question's own words would dilute the colour)."""
        images = check_images(images, self.settings.image_size)
        texts = check_instructions(texts, len(images))
        prompts = [judge_prompt_text(t, self.family.image_placeholder) for t in texts]
        inputs = processor_inputs(self.processor, self.family, images, prompts)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs and self._pieces is not None:
            inputs["pixel_values"] = self._pixel_values(images)
            inputs.pop("pixel_attention_mask", None)
        if (
            instructions is not None
            and self.family.reads_instruction_ids
            and self._pieces is not None
        ):
            instructions = check_instructions(instructions, len(images))
            ids = [self._pieces.instruction_ids(i) for i in instructions]
            inputs["instruction_ids"] = self._left_pad(ids)["input_ids"]
        return add_position_ids(self.backbone, self.family, inputs)

    def next_token_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits [B, vocab] of the token after the prompt (differentiable)."""
        return self.model(**inputs, use_cache=False, logits_to_keep=1).logits[:, -1]

    # ----------------------------------------------------------------- LoRA
    def add_lora(self, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules=None):
        """Wrap the model with LoRA adapters (peft); only the adapters are then trainable."""
        self.model = lora.add_lora(self.model, r, alpha, dropout, target_modules)
        return self

    def merge_lora(self):
        """Fold the adapters into the weights; the model is a plain transformers model again."""
        self.model = lora.merge(self.model)
        return self

    @contextlib.contextmanager
    def adapter_disabled(self):
        """Act as the model without its LoRA adapters (the reference model for DPO / KL)."""
        with lora.disabled(self.model):
            yield self

    @property
    def has_lora(self) -> bool:
        """Whether the model carries LoRA adapters (peft)."""
        return lora.base_model(self.model) is not self.model

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    # ----------------------------------------------------------------- weights and modes
    def weights(self) -> dict[str, torch.Tensor]:
        """Every weight by name (adapters included, as `lora_` entries), as the model holds them."""
        return self.model.state_dict()

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        """Overwrite the named weights (a subset is fine, e.g. the adapters); unknown names are
        an error."""
        unknown = set(tensors) - set(self.model.state_dict())
        if unknown:
            raise KeyError(f"no such weights in the policy: {sorted(unknown)[:3]}")
        with torch.no_grad():
            self.model.load_state_dict(tensors, strict=False)

    def weights_fingerprint(self) -> tuple:
        """Changes whenever a weight is modified in place or replaced (cheap: no hashing)."""
        return weights_fingerprint(self.model)

    @contextlib.contextmanager
    def mode(self, training: bool):
        """Train (dropout on) or eval mode inside the block; the previous mode after it."""
        was_training = self.model.training
        self.model.train(training)
        try:
            yield self
        finally:
            self.model.train(was_training)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.backbone.parameters())


__all__ = ["ActOutput", "Policy", "PolicySettings"]
