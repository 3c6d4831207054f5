"""Choosing action tokens from action-restricted logits: greedy or sampled (temperature, top-k)."""

from __future__ import annotations

import torch


def choose_tokens(
    logits: torch.Tensor,
    *,
    greedy: bool,
    temperature: float,
    top_k: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one bin per row of `logits` [B, N_BINS]; return (bins int64 [B], logprobs float32 [B]).

    The log-prob reported is that of the chosen bin under softmax(logits / temperature), without
    top-k truncation, so it matches the teacher-forced log-prob of the same bin.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = no truncation), got {top_k}")
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    if greedy:
        bins = logprobs.argmax(dim=-1)
    else:
        sample_from = logprobs
        if 0 < top_k < logprobs.shape[-1]:
            kth = logprobs.topk(top_k, dim=-1).values[..., -1:]
            sample_from = logprobs.masked_fill(logprobs < kth, float("-inf"))
        probs = torch.softmax(sample_from, dim=-1)
        if generator is not None and generator.device != probs.device:
            probs = probs.to(generator.device)
        bins = torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logprobs.device)
    return bins, logprobs.gather(-1, bins[:, None]).squeeze(-1)
