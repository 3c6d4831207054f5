"""Can a from-scratch policy preset tell where a small object is? The simplest spatial question.

Synthetic 64x64 frames: a plain background and one red disk (radius 3 px, about a ReachBall ball)
at a uniformly random place; the label is whether the disk lies in the left half. Two measurements
on the preset's fresh weights:

1. Linear probes of its image features (the connector's output, the image tokens the language
   model reads), fitted on 2,000 frames and scored on 500 others: on the 16 tokens concatenated
   (the information is there) and on their mean (what a language model whose attention is still
   uniform, as at initialization, receives).
2. Training the whole policy (AdamW, the SFT defaults: lr 1e-3, warm-up, cosine, gradient norm
   clipped to 1) to emit action bin 0 for "left" and 255 for "right" as the first action token,
   on fresh frames every step (no frame is seen twice), with held-out accuracy every
   `--eval-every` steps; and the same on one fixed batch (memorizing), for contrast.

Usage: python bench/spatial_probe.py [--preset tiny_vision] [--steps 600] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from agent.policy import Policy
from train.updates.config import SFTConfig
from train.updates.optim import Optimization

INSTRUCTION = "touch the red ball"
BACKGROUND = 205
RED = (230, 30, 25)
_YY, _XX = np.mgrid[:64, :64]


def disk_frames(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` frames with one red disk each, and whether it is in the left half (bool [n])."""
    frames = np.full((n, 64, 64, 3), BACKGROUND, np.uint8)
    x, y = rng.uniform(6, 58, n), rng.uniform(20, 50, n)
    for i in range(n):
        frames[i][(_XX - x[i]) ** 2 + (_YY - y[i]) ** 2 <= 9] = RED
    return frames, x < 32


def image_features(policy: Policy, frames: np.ndarray) -> torch.Tensor:
    """The image tokens the language model reads: [n, image_seq_len, text_hidden]."""
    with torch.no_grad():
        out = policy.backbone.get_image_features(pixel_values=policy._pixel_values(frames))
    feats = out.pooler_output if hasattr(out, "pooler_output") else out
    feats = torch.stack(list(feats)) if isinstance(feats, list | tuple) else feats
    return feats.reshape(len(frames), -1, feats.shape[-1])


def linear_probe(train_x, train_y, test_x, test_y, steps: int = 500) -> float:
    """Held-out accuracy of an L2-regularized logistic regression on standardized features."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    w = torch.zeros(train_x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=1e-2)
    target = torch.as_tensor(train_y, dtype=torch.float32)
    for _ in range(steps):
        logits = train_x @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        loss = loss + 1e-3 * w.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = (test_x @ w + b > 0).numpy()
    return float((predicted == test_y).mean())


def train_left_right(preset: str, steps: int, batch_size: int, eval_every: int, fresh: bool):
    """Fit the first action token to left/right; yield (step, batch loss, held-out accuracy)."""
    torch.manual_seed(0)
    policy = Policy.from_preset(preset, seed=0)
    rng = np.random.default_rng(0)
    held_frames, held_left = disk_frames(400, np.random.default_rng(99))
    held_states = np.zeros((len(held_frames), 4), np.float32)
    config = SFTConfig(lr=1e-3, warmup_steps=50, schedule="cosine", max_steps=steps)
    optimization = Optimization(policy.trainable_parameters(), config, steps)
    fixed = disk_frames(batch_size, rng)
    policy.model.train()
    for step in range(1, steps + 1):
        frames, left = disk_frames(batch_size, rng) if fresh else fixed
        bins = np.full((batch_size, policy.action_dim), 127)
        bins[:, 0] = np.where(left, 0, 255)
        states = np.zeros((batch_size, 4), np.float32)
        inputs = policy.prepare_inputs(frames, [INSTRUCTION] * batch_size, states, bins)
        loss = -policy.logprobs_from_inputs(inputs)[:, 0].mean()
        loss.backward()
        optimization.step()
        if step % eval_every == 0:
            policy.model.eval()
            chosen = policy.act(held_frames, [INSTRUCTION] * 400, held_states, greedy=True).bins
            policy.model.train()
            yield step, loss.item(), float(((chosen[:, 0] < 128) == held_left).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny_vision")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=100)
    args = parser.parse_args()

    policy = Policy.from_preset(args.preset, seed=0)
    rng = np.random.default_rng(0)
    train_frames, train_left = disk_frames(2000, rng)
    test_frames, test_left = disk_frames(500, rng)
    train_feats, test_feats = (image_features(policy, f) for f in (train_frames, test_frames))
    probes = {
        "probe_concat": linear_probe(
            train_feats.flatten(1), train_left, test_feats.flatten(1), test_left
        ),
        "probe_mean": linear_probe(train_feats.mean(1), train_left, test_feats.mean(1), test_left),
    }
    print(json.dumps({"preset": args.preset, "image_tokens": train_feats.shape[1], **probes}))
    for fresh in (True, False):
        start = time.perf_counter()
        for step, loss, accuracy in train_left_right(
            args.preset, args.steps, args.batch_size, args.eval_every, fresh
        ):
            row = {
                "data": "fresh frames" if fresh else "one fixed batch",
                "step": step,
                "samples_seen": step * args.batch_size,
                "batch_loss": round(loss, 3),
                "held_out_accuracy": round(accuracy, 3),
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
