"""Policy throughput: actions/s of `Policy.act` against plain `model.generate` and the compute bound.

For each preset and batch size, in one run:
- `act`: `policy.act(images, instructions, states)` end to end from numpy observations (greedy,
  prompt built on the fast path, one prefill + 3 cached steps, action-restricted logits). Each
  call gets new images and states; instructions are fixed per episode slot, as in a rollout.
- `generate`: `policy.model.generate(**inputs, max_new_tokens=4)` (greedy, unconstrained) on the
  same model and batch, with the inputs built beforehand (so its time leaves out prompt building).
- compute bound: FLOPs per action / matmul FLOP/s. FLOPs per action = 2 x (weights touched per
  token x tokens through them), summed over the vision encoder (every patch), the connector
  (every image token), the text model (prompt tokens + 3 decode tokens), the head (the 4
  positions whose logits are read, restricted to 256 rows for `act`) plus attention scores
  (4 x seq^2 x width per layer). Matmul FLOP/s: a large square fp32 `torch.mm`, same threads.

Usage: python bench/policy_throughput.py [--threads 1] [--presets tiny small] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from agent import Policy

INSTRUCTIONS = [
    "push the red cube to the green goal",
    "pick the blue ball and place it in the bowl",
    "open the drawer",
    "press the yellow button",
    "reach the purple ball",
    "stack the orange block on the red block",
]


def matmul_flops_per_s(n: int = 1024, seconds: float = 1.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
    return 2 * n**3 * calls / (time.perf_counter() - start)


def _linear_params(module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def flops_per_action(policy: Policy, prompt_len: int) -> float:
    """Model FLOPs to produce one action (4 tokens) for one observation (see module docstring)."""
    model = policy.backbone
    config = model.config
    vision, text = config.vision_config, config.text_config
    patches = (vision.image_size // vision.patch_size) ** 2
    vis_layers = _linear_params(model.model.vision_model.encoder)
    patch_embed = model.model.vision_model.embeddings.patch_embedding.weight.numel()
    connector = _linear_params(model.model.connector)
    image_tokens = policy.settings.image_seq_len
    text_layers = _linear_params(model.model.text_model)
    decode = policy.action_dim - 1
    head = text.hidden_size * 256 * policy.action_dim
    flops = 2 * ((vis_layers + patch_embed) * patches + connector * image_tokens)
    flops += 2 * text_layers * (prompt_len + decode) + 2 * head
    flops += 4 * patches**2 * vision.hidden_size * vision.num_hidden_layers
    seq = prompt_len + decode
    flops += 4 * seq**2 * text.hidden_size * text.num_hidden_layers
    return float(flops)


def _observations(rng, batch: int, size: int):
    images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    states = rng.uniform(-0.3, 0.3, size=(batch, 4)).astype(np.float32)
    return images, states


def _time(fn, seconds: float) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls


def bench(preset: str, batches: list[int], seconds: float, peak: float) -> list[dict]:
    policy = Policy.from_preset(preset)
    size = policy.settings.image_size
    rows = []
    for batch in batches:
        rng = np.random.default_rng(batch)
        instructions = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch)]

        def act():
            images, states = _observations(rng, batch, size)
            policy.act(images, instructions, states)

        images, states = _observations(rng, batch, size)
        inputs = policy._prompt_inputs(images, instructions, states)
        inputs.pop("position_ids")
        pad = policy.tokenizer.pad_token_id

        def generate():
            with torch.inference_mode():
                policy.model.generate(
                    **inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=pad
                )

        t_act = _time(act, seconds)
        t_gen = _time(generate, seconds)
        prompt_len = int(inputs["attention_mask"].sum(1).float().mean())
        flops = flops_per_action(policy, prompt_len)
        bound = peak / flops
        rows.append(
            {
                "preset": preset,
                "params_M": round(policy.num_parameters() / 1e6, 2),
                "batch": batch,
                "act_actions_per_s": batch / t_act,
                "generate_actions_per_s": batch / t_gen,
                "speedup_vs_generate": t_gen / t_act,
                "mflops_per_action": flops / 1e6,
                "bound_actions_per_s": bound,
                "fraction_of_bound": batch / t_act / bound,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_flops_per_s()
    print(json.dumps({"threads": torch.get_num_threads(), "matmul_gflops_per_s": peak / 1e9}))
    rows = [row for p in args.presets for row in bench(p, args.batches, args.seconds, peak)]
    print("\n| preset | params | batch | act actions/s | generate actions/s | speed-up | "
          "MFLOP/action | bound actions/s | of bound |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['params_M']}M | {r['batch']} | {r['act_actions_per_s']:.0f} | "
            f"{r['generate_actions_per_s']:.0f} | {r['speedup_vs_generate']:.2f}x | "
            f"{r['mflops_per_action']:.1f} | {r['bound_actions_per_s']:.0f} | "
            f"{100 * r['fraction_of_bound']:.0f}% |"
        )
    print(f"\nmatmul peak (torch.mm 1024^2 fp32, {torch.get_num_threads()} threads): "
          f"{peak / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
