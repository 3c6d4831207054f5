"""A learned success classifier: final frame + instruction -> probability that the episode succeeded.

A small CNN over the last frame, its feature maps modulated by the instruction (FiLM from a
bag of hashed words), pooled to one logit. Trained with binary cross-entropy on episodes the
environment labelled (`is_success`); used as a verifier where no environment check exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from agent.model import strided_conv_trunk
from verifiers.base import probability_verdicts, require_frames
from verifiers.episode import Episode, Verdict
from verifiers.text import encode_instructions


@dataclass
class ClassifierConfig:
    """Size and training budget of the success classifier."""

    channels: int = 32
    """Width of the convolutional trunk (doubles once)."""
    text_buckets: int = 512
    """Hash buckets for instruction words."""
    text_dim: int = 32
    """Instruction embedding width."""
    epochs: int = 30
    """Passes over the training episodes."""
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    threshold: float = 0.5
    """Pass when the predicted success probability is at least this."""
    seed: int = 0
    """Seeds weight init and batch order."""


class InstructedConvNet(nn.Module):
    """A small CNN whose first layer's features the instruction's words modulate (FiLM), so the
    trunk sees the image through the instruction (which colour, which object) before any
    spatial mixing; `features` pools it to [B, 4 * channels]. The success classifier's body,
    and the RL value baseline's (`train.updates.value`)."""

    def __init__(self, channels: int, text_buckets: int, text_dim: int) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.text = nn.EmbeddingBag(text_buckets, text_dim, mode="mean")
        self.film = nn.Linear(text_dim, 2 * c)
        self.trunk = strided_conv_trunk(c)

    def features(
        self, images: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        """images float [B, 3, H, W] in [0, 1], the instructions' words (`batch_text`) ->
        [B, 4 * channels] (max- and mean-pooled)."""
        gamma, beta = self.film(self.text(ids, offsets)).chunk(2, dim=-1)
        x = self.stem(images - 0.5)
        x = self.trunk(F.relu(x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]))
        return torch.cat([x.amax(dim=(2, 3)), x.mean(dim=(2, 3))], dim=-1)


class _Network(InstructedConvNet):
    """The classifier: the pooled features to one success logit."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config.channels, config.text_buckets, config.text_dim)
        self.out = nn.Linear(4 * config.channels, 1)

    def forward(
        self, images: torch.Tensor, ids: torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.features(images, ids, offsets)).squeeze(-1)


def _images(episodes: Sequence[Episode], name: str) -> torch.Tensor:
    frames = [require_frames(e, name)[-1] for e in episodes]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ValueError(f"verifier {name!r}: episodes have frames of different sizes {shapes}")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0


class SuccessClassifier:
    """Verifier: a CNN that predicts `is_success` from the final frame and the instruction."""

    name = "success_classifier"
    judges_outcome = True

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        self.config = config or ClassifierConfig()
        torch.manual_seed(self.config.seed)
        self.network = _Network(self.config)
        self.fitted = False

    def fit(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """Train on environment-labelled episodes; returns the last epoch's mean loss and accuracy."""
        config = self.config
        labels = torch.tensor([float(e.is_success) for e in episodes])
        if len(episodes) == 0 or labels.min() == labels.max():
            raise ValueError(
                f"SuccessClassifier.fit needs both successes and failures; got "
                f"{int(labels.sum())} successes of {len(episodes)} episodes"
            )
        images = _images(episodes, self.name)
        ids_offsets = [encode_instructions([e.instruction], config.text_buckets) for e in episodes]
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.AdamW(
            self.network.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.network.train()
        stats = {}
        for _ in range(config.epochs):
            order = torch.randperm(len(episodes), generator=generator)
            total, correct = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size].tolist()
                ids, offsets = batch_text([ids_offsets[i] for i in batch])
                logits = self.network(augment_frames(images[batch], generator), ids, offsets)
                loss = F.binary_cross_entropy_with_logits(logits, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                correct += int(((logits > 0).float() == labels[batch]).sum())
            stats = {"loss": total / len(order), "train_accuracy": correct / len(order)}
        self.network.eval()
        self.fitted = True
        return stats

    @torch.no_grad()
    def predict(self, episodes: Sequence[Episode]) -> np.ndarray:
        """Success probability per episode, float32 [N]."""
        if not episodes:
            return np.zeros(0, dtype=np.float32)
        self.network.eval()
        probs = []
        for start in range(0, len(episodes), 256):
            chunk = episodes[start : start + 256]
            ids, offsets = encode_instructions(
                [e.instruction for e in chunk], self.config.text_buckets
            )
            logits = self.network(_images(chunk, self.name), ids, offsets)
            probs.append(torch.sigmoid(logits))
        return torch.cat(probs).numpy().astype(np.float32)

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        threshold = self.config.threshold
        suffix = "" if self.fitted else " (untrained classifier)"
        return probability_verdicts(
            episodes,
            self.predict(list(episodes)),
            self.name,
            threshold,
            lambda p, cmp: (
                f"predicted success probability {p:.3f} ({cmp} {threshold:g}) "
                f"from the final frame{suffix}"
            ),
        )

    def save(self, directory: str | Path) -> None:
        """Write `config.json` and `model.safetensors` into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        save_file(self.network.state_dict(), str(directory / "model.safetensors"))

    @classmethod
    def load(cls, directory: str | Path) -> SuccessClassifier:
        directory = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (directory / name).is_file():
                raise FileNotFoundError(
                    f"no {name} in {directory}; expected a saved SuccessClassifier"
                )
        classifier = cls(ClassifierConfig(**json.loads((directory / "config.json").read_text())))
        classifier.network.load_state_dict(load_file(str(directory / "model.safetensors")))
        classifier.network.eval()
        classifier.fitted = True
        return classifier


def batch_text(
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One EmbeddingBag input (ids, offsets) from per-instruction `encode_instructions` pairs."""
    ids = torch.cat([p[0] for p in pairs])
    lengths = torch.tensor([len(p[0]) for p in pairs])
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
    return ids, offsets


def augment_frames(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 3 pixels and small brightness changes: success is a matter of where
    things are relative to each other, not of exact pixels."""
    pad = 3
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    height, width = images.shape[-2:]
    out = torch.empty_like(images)
    shifts = torch.randint(0, 2 * pad + 1, (images.shape[0], 2), generator=generator).tolist()
    for i, (dy, dx) in enumerate(shifts):
        out[i] = padded[i, :, dy : dy + height, dx : dx + width]
    scale = 1 + 0.1 * (torch.rand(images.shape[0], 1, 1, 1, generator=generator) - 0.5)
    return (out * scale).clamp(0, 1)
