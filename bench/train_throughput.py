"""Training throughput: samples/s of the SFT, RL and DPO updates against the compute bound of the same run.

A sample is one step (frame + instruction + state -> 4 action tokens); for DPO, every step of
both trajectories of a pair. The compute bound is `flops_per_sample / matmul_flops_per_s`:

- `matmul_flops_per_s`: best of repeated square matmuls (`--matmul-size`, the model's dtype, on
  the policy's device), measured in this run, so the ratio is insensitive to machine load drift.
- `flops_per_sample = k x sum over towers of (matmul parameters x tokens through that tower)`:
  vision encoder parameters x image patches, connector x image tokens, text decoder (without the
  embedding table) x prompt+action tokens, LM head x the 5 positions whose logits are kept. `k` = 6 for a
  forward+backward (SFT, RL without KL), + 2 per extra forward pass (the reference pass of
  DPO and of RL with KL). Attention-score FLOPs are left out (sequences are ~40 tokens).

Data are synthetic episodes (random frames, bins and rollout log-probs): throughput does not
depend on what the pixels show. Usage: `python bench/train_throughput.py --presets tiny small`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from agent.policy import Policy
from train.organize.datasets import DPOPair, RLGroup
from train.updates.config import DPOConfig, RLConfig, SFTConfig
from train.updates.dpo import dpo_update
from train.updates.rl import rl_update
from train.updates.sft import sft_update
from verifiers.episode import Episode

INSTRUCTION = "touch the red ball"


def synthetic_episode(rng: np.random.Generator, length: int, image_size: int, k: int) -> Episode:
    return Episode(
        task_id="autodidact/Bench-v0",
        env_seed=k,
        instruction=INSTRUCTION,
        actions=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        action_bins=rng.integers(0, 256, (length, 4)),
        logprobs=np.full((length, 4), -5.5, dtype=np.float32),
        rewards=np.zeros(length, dtype=np.float32),
        is_success=bool(k % 2),
        truncated=not k % 2,
        states=rng.uniform(-0.3, 0.3, (length + 1, 4)).astype(np.float32),
        frames=rng.integers(0, 256, (length + 1, image_size, image_size, 3), dtype=np.uint8),
        episode_id=f"bench/{k}",
    )


def matmul_flops_per_s(
    device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10
) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _matmul_params(module: torch.nn.Module | None, skip_embeddings: bool = False) -> int:
    if module is None:
        return 0
    total = 0
    for name, p in module.named_parameters():
        if skip_embeddings and "embed_tokens" in name:
            continue
        if p.dim() >= 2:
            total += p.numel()
    return total


def forward_flops_per_sample(policy: Policy, episode: Episode) -> tuple[float, dict]:
    """2 x (params x tokens) summed over the towers of an Idefics3-style policy, for one step."""
    model = policy.backbone
    inner = model.model
    vision_cfg = model.config.vision_config
    patches = (vision_cfg.image_size // vision_cfg.patch_size) ** 2
    image_tokens = patches // model.config.scale_factor**2
    inputs = policy.prepare_inputs(
        episode.frames[:1], [episode.instruction], episode.states[:1], episode.action_bins[:1]
    )
    text_tokens = int(inputs["attention_mask"][0].sum())
    counts = {
        "vision": (_matmul_params(inner.vision_model), patches),
        "connector": (_matmul_params(inner.connector), image_tokens),
        "text": (_matmul_params(inner.text_model, skip_embeddings=True), text_tokens),
        "lm_head": (_matmul_params(model.lm_head), policy.action_dim + 1),
    }
    flops = 2.0 * sum(p * t for p, t in counts.values())
    return flops, {k: {"params": p, "tokens": t} for k, (p, t) in counts.items()}


def run_preset(name: str, args) -> list[dict]:
    policy = Policy.from_preset(name, seed=0)
    device = torch.device(policy.device)
    dtype = next(policy.model.parameters()).dtype
    rng = np.random.default_rng(0)
    image_size = policy.model.config.vision_config.image_size
    episodes = [
        synthetic_episode(rng, args.episode_length, image_size, k) for k in range(args.episodes)
    ]
    fwd, towers = forward_flops_per_sample(policy, episodes[0])
    k = 4
    groups = [
        RLGroup(
            "b", g, INSTRUCTION, episodes[g * k : (g + 1) * k], np.array([1, 0, 0, 1], np.float32)
        )
        for g in range(len(episodes) // k)
    ]
    pairs = [DPOPair(episodes[i], episodes[i + 1]) for i in range(0, len(episodes) - 1, 2)]
    common = dict(batch_size=args.batch_size, forward_chunk=args.batch_size, epochs=1)
    kinds = {
        "sft": (lambda: sft_update(policy, episodes, SFTConfig(**common)), 6),
        "rl": (lambda: rl_update(policy, groups, RLConfig(**common, kl_coef=0.0)), 6),
        "rl_kl": (lambda: rl_update(policy, groups, RLConfig(**common, kl_coef=0.05)), 8),
        "dpo": (
            lambda: dpo_update(
                policy,
                pairs,
                DPOConfig(
                    **{**common, "batch_size": max(1, args.batch_size // (2 * args.episode_length))}
                ),
            ),
            8,
        ),
    }
    kinds["sft"][0]()  # warm-up: allocator, kernels, tokenizer caches
    rows = []
    for kind, (update, passes) in kinds.items():
        # the machine's load drifts: bracket each update with matmul measurements, best of both,
        # and keep the best of `--repeats` runs of the update
        peak = matmul_flops_per_s(device, dtype, args.matmul_size)
        rate = max(update()[f"train/{kind}_samples_per_s"] for _ in range(args.repeats))
        peak = max(peak, matmul_flops_per_s(device, dtype, args.matmul_size))
        flops_per_sample = fwd * passes / 2
        bound = peak / flops_per_sample
        rows.append(
            {
                "preset": name,
                "update": kind,
                "params": sum(p.numel() for p in policy.model.parameters()),
                "samples_per_s": rate,
                "bound_samples_per_s": bound,
                "fraction_of_bound": rate / bound,
                "flops_per_sample": flops_per_sample,
                "matmul_tflops": peak / 1e12,
                "batch_size": args.batch_size,
                "towers": towers,
                "device": str(device),
                "threads": torch.get_num_threads(),
            }
        )
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "towers"}), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--episodes", type=int, default=16, help="synthetic episodes per update")
    parser.add_argument("--episode-length", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64, help="steps per micro-batch")
    parser.add_argument("--matmul-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2, help="runs per update; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", default=None, help="also write all rows to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [row for name in args.presets for row in run_preset(name, args)]
    print("\n| preset | update | samples/s | bound samples/s | fraction |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['update']} | {r['samples_per_s']:.1f} | "
            f"{r['bound_samples_per_s']:.1f} | {r['fraction_of_bound']:.0%} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
