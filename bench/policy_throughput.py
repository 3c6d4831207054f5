"""Policy throughput: actions/s of `Policy.act` against plain `model.generate` and the compute bound.

For each preset and batch size, in one run:
- `act`: `policy.act(images, instructions, states)` end to end from numpy observations (greedy,
  prompt built on the fast path, one prefill + 3 cached steps, action-restricted logits). Each
  call gets new images and states; instructions are fixed per episode slot, as in a rollout.
- `generate`: `policy.model.generate(**inputs, max_new_tokens=4)` (greedy, unconstrained) on the
  same model and batch, with the inputs built beforehand (so its time leaves out prompt building).
- compute bound: FLOPs per action / matmul FLOP/s. FLOPs per action = 2 x (weights touched per
  token x tokens through them), summed over the vision (the instruction-aware conv tower at each
  conv's output resolution and its dense projection; for the Idefics3 presets the ViT over every
  patch and the connector over every image token), the text model (the tokens `act` really runs: image, state and marker
  tokens + 3 decode tokens; the instruction prefix is computed once per episode and reused, so
  it is left out), the head (full vocabulary, at the 4 positions whose logits are read) plus
  attention scores (4 x query tokens x context x width per layer). Matmul FLOP/s: a large
  square fp32 `torch.mm`, same threads, same run. `generate` processes the whole padded prompt
  each call; its FLOPs per action are reported beside.

Times are CPU seconds of this process (one thread by default), calls of `act` and `generate`
interleaved, medians reported: on a shared machine that is the work each one does.

A chunk preset (`tiny_grasp`) decides K actions per forward pass: its rows give decisions/s,
which are actions/s under temporal ensembling (a decision every step, greedy evaluation), and K
times that executed open loop (sampled collection).

Usage: python bench/policy_throughput.py [--threads 1] [--presets tiny small idefics3_tiny
       idefics3_small tiny_grasp] [--seconds 3]
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


def matmul_flops_per_s(n: int = 1024, seconds: float = 2.0) -> float:
    """FLOP per CPU second of a large fp32 `torch.mm` (the best of several timings)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, start = float("inf"), time.process_time()
    while time.process_time() - start < seconds:
        t = time.process_time()
        torch.mm(a, b)
        best = min(best, time.process_time() - t)
    return 2 * n**3 / best


def _linear_params(module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def _vision_flops(policy: Policy) -> float:
    """FLOPs of the vision for one image, from the shapes one forward pass produces: 2 x weights
    x output positions for every conv and dense layer (and, for a ViT, the attention scores)."""
    model = policy.backbone
    if not hasattr(model, "vision"):  # Idefics3: ViT over every patch, connector per image token
        vision = model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        layers = _linear_params(model.model.vision_model.encoder)
        patch_embed = model.model.vision_model.embeddings.patch_embedding.weight.numel()
        connector = _linear_params(model.model.connector)
        flops = 2 * ((layers + patch_embed) * patches + connector * policy.settings.image_seq_len)
        return flops + 4 * patches**2 * vision.hidden_size * vision.num_hidden_layers
    total = 0.0

    def count(module, _inputs, output):
        nonlocal total
        positions = output[0, 0].numel() if isinstance(module, torch.nn.Conv2d) else 1
        total += 2 * module.weight.numel() * positions

    layers = [m for m in model.vision.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    handles = [m.register_forward_hook(count) for m in layers]
    size = policy.settings.image_size
    try:
        with torch.inference_mode():
            model.vision(torch.zeros(1, 3, size, size), torch.zeros(1, 1, dtype=torch.long))
    finally:
        for handle in handles:
            handle.remove()
    return total


def flops_per_action(policy: Policy, text_tokens: int, context: int) -> float:
    """Model FLOPs of one decision for one observation (see module docstring): `text_tokens` go
    through the text model (decode tokens or a chunk's queries included), attending to
    `context`; the head is read at every action-token position (4, or K x 4 for a chunk)."""
    model = policy.backbone
    text = model.config.text_config
    text_model = (
        model.language_model if hasattr(model, "language_model") else model.model.text_model
    )
    head = model.lm_head.weight.numel() * policy.action_dim * policy.chunk
    flops = _vision_flops(policy) + 2 * _linear_params(text_model) * text_tokens + 2 * head
    flops += 4 * text_tokens * context * text.hidden_size * text.num_hidden_layers
    return float(flops)


def _observations(rng, batch: int, size: int):
    images = rng.integers(0, 256, size=(batch, size, size, 3), dtype=np.uint8)
    states = rng.uniform(-0.3, 0.3, size=(batch, 4)).astype(np.float32)
    return images, states


def _interleaved(fns: list, seconds: float) -> list[float]:
    """Median CPU seconds per call of each function, calls interleaved so that load changes on
    the shared machine hit all of them alike. CPU time of this process is used, not wall time:
    with one thread it is the work done, whatever else the machine runs."""
    for fn in fns:
        fn()
    samples: list[list[float]] = [[] for _ in fns]
    start = time.process_time()
    while len(samples[0]) < 5 or time.process_time() - start < seconds * len(fns):
        for fn, out in zip(fns, samples, strict=True):
            t = time.process_time()
            fn()
            out.append(time.process_time() - t)
    return [float(np.median(s)) for s in samples]


def bench(preset: str, batches: list[int], seconds: float, peak: float) -> list[dict]:
    policy = Policy.from_preset(preset)
    size = policy.settings.image_size
    pad = policy.tokenizer.pad_token_id
    rows = []
    if policy.chunk > 1:
        return bench_chunks(policy, preset, batches, seconds, peak)
    for batch in batches:
        rng = np.random.default_rng(batch)
        instructions = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch)]
        images, states = _observations(rng, batch, size)
        inputs = policy._prompt_inputs(images, instructions, states)
        inputs.pop("position_ids")

        def act(rng=rng, batch=batch, instructions=instructions):
            images, states = _observations(rng, batch, size)
            policy.act(images, instructions, states)

        def generate(inputs=inputs):
            with torch.inference_mode():
                policy.model.generate(
                    **inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=pad
                )

        t_act, t_gen = _interleaved([act, generate], seconds)
        decode = policy.action_dim - 1
        padded = inputs["attention_mask"].shape[1]
        suffix = len(policy._pieces.suffix_ids(states[0]))
        flops = flops_per_action(policy, suffix + decode, padded + decode)
        gen_flops = flops_per_action(policy, padded + decode, padded + decode)
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
                "generate_mflops_per_action": gen_flops / 1e6,
                "bound_actions_per_s": bound,
                "fraction_of_bound": batch / t_act / bound,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_chunks(policy: Policy, preset: str, batches: list[int], seconds: float, peak: float):
    """A chunk policy: one forward pass decides K actions. Executed open loop (sampled
    collection) each decision serves K steps; with temporal ensembling (greedy evaluation) the
    policy decides at every step, so a step costs one decision."""
    size, k = policy.settings.image_size, policy.chunk
    rows = []
    for batch in batches:
        rng = np.random.default_rng(batch)
        instructions = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(batch)]

        def act(rng=rng, batch=batch, instructions=instructions):
            images, states = _observations(rng, batch, size)
            policy.act(images, instructions, states)

        (t_act,) = _interleaved([act], seconds)
        suffix = len(policy._pieces.suffix_ids(np.zeros(4, np.float32))) + k * policy.action_dim
        flops = flops_per_action(policy, suffix, suffix + 12)  # + a typical instruction
        rows.append(
            {
                "preset": preset,
                "params_M": round(policy.num_parameters() / 1e6, 2),
                "batch": batch,
                "chunk": k,
                "decisions_per_s": batch / t_act,
                "act_actions_per_s": batch / t_act,  # ensembled: one decision per step
                "open_loop_actions_per_s": batch * k / t_act,
                "mflops_per_action": flops / 1e6,
                "bound_actions_per_s": peak / flops,
                "fraction_of_bound": batch / t_act / (peak / flops),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", nargs="+", default=["tiny", "small", "idefics3_tiny", "idefics3_small"]
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_flops_per_s()
    print(json.dumps({"threads": torch.get_num_threads(), "matmul_gflops_per_s": peak / 1e9}))
    rows = [row for p in args.presets for row in bench(p, args.batches, args.seconds, peak)]
    print(
        "\n| preset | params | batch | act actions/s | generate actions/s | speed-up | "
        "MFLOP/action | bound actions/s | of bound |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        if "chunk" in r:  # a chunk policy: no `generate` baseline; open-loop actions/s instead
            print(
                f"| {r['preset']} (chunk {r['chunk']}) | {r['params_M']}M | {r['batch']} | "
                f"{r['act_actions_per_s']:.0f} ensembled, {r['open_loop_actions_per_s']:.0f} "
                f"open loop | - | - | {r['mflops_per_action']:.1f} per decision | "
                f"{r['bound_actions_per_s']:.0f} | {100 * r['fraction_of_bound']:.0f}% |"
            )
            continue
        print(
            f"| {r['preset']} | {r['params_M']}M | {r['batch']} | {r['act_actions_per_s']:.0f} | "
            f"{r['generate_actions_per_s']:.0f} | {r['speedup_vs_generate']:.2f}x | "
            f"{r['mflops_per_action']:.1f} | {r['bound_actions_per_s']:.0f} | "
            f"{100 * r['fraction_of_bound']:.0f}% |"
        )
    print(
        f"\nmatmul peak (torch.mm 1024^2 fp32, {torch.get_num_threads()} threads): "
        f"{peak / 1e9:.1f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
