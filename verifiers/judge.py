"""The policy's own backbone as a judge: asked "was the instruction accomplished?", it answers yes or no.

The final frame and a question quoting the instruction go through the MLLM
(`policy.text_prompt_inputs`); the logits of the next token for "yes" and "no"
(`policy.next_token_logits`) give P(yes) = softmax([yes, no])[0]. Fine-tuned with cross-entropy
over {yes, no} on episodes the environment labelled, fully or through a LoRA adapter, on shifted
final frames. The built-in backbone's vision reads the instruction alone (not the question's
other words), as when acting.

Start it from a policy that has learnt the tasks, e.g. `MLLMJudge(Policy.from_pretrained(
"RUN/checkpoints/round_3"))`: its vision already finds the named object. Measured on 600
held-out episodes of the six tasks (BENCHMARKS.md, "Verifiers"): precision 0.92 and recall 0.95
from a `default` campaign's last checkpoint, against 0.63 / 0.91 from fresh weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from verifiers.base import probability_verdicts, require_frames
from verifiers.classifier import augment_frames
from verifiers.episode import Episode, Verdict

QUESTION = "Instruction: {instruction}\nWas the instruction accomplished? Answer yes or no:"


@dataclass
class JudgeConfig:
    """Prompt and fine-tuning budget of the MLLM judge."""

    question: str = QUESTION
    """The prompt after the image; `{instruction}` is replaced by the episode's instruction."""
    yes: str = "yes"
    """Text whose first token means a pass."""
    no: str = "no"
    """Text whose first token means a fail."""
    lora_r: int = 0
    """LoRA rank; 0 fine-tunes every weight (the right choice for the fresh-weight presets)."""
    epochs: int = 8
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = True
    """Train on final frames shifted by up to 3 pixels with small brightness changes (as the
    success classifier does): without it the fresh backbone memorizes its training frames."""
    threshold: float = 0.5
    """Pass when P(yes) is at least this."""
    seed: int = 0
    """Seeds batch order and augmentation."""


class MLLMJudge:
    """Verifier: the MLLM backbone judges the final frame against the instruction.

    `policy` is an `agent.Policy`; the judge trains a deep copy, never the acting policy. Without
    one, a fresh `Policy.from_preset(preset)` is built.
    """

    name = "mllm_judge"
    judges_outcome = True

    def __init__(
        self, policy=None, config: JudgeConfig | None = None, *, preset: str = "tiny"
    ) -> None:
        self.config = config or JudgeConfig()
        if policy is None:
            from agent import Policy

            policy = Policy.from_preset(preset, seed=self.config.seed)
        else:
            policy = copy.deepcopy(policy)
        self.policy = policy
        self.yes_id, self.no_id = self._answer_ids()
        self.fitted = False

    def _answer_ids(self) -> tuple[int, int]:
        tokenizer = self.policy.tokenizer
        ids = [
            tokenizer(text, add_special_tokens=False)["input_ids"]
            for text in (self.config.yes, self.config.no)
        ]
        if not ids[0] or not ids[1] or ids[0][0] == ids[1][0]:
            raise ValueError(
                f"the answers {self.config.yes!r} and {self.config.no!r} must start with different "
                f"tokens; the tokenizer gives {ids[0]} and {ids[1]}"
            )
        return ids[0][0], ids[1][0]

    def _answer_logits(
        self, episodes: Sequence[Episode], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[B, 2] next-token logits of (yes, no) for a batch of episodes; with a `generator`,
        of randomly shifted final frames."""
        images = np.stack([require_frames(e, self.name)[-1] for e in episodes])
        if generator is not None:
            frames = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
            frames = augment_frames(frames, generator)
            images = (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        prompts = [self.config.question.format(instruction=e.instruction) for e in episodes]
        instructions = [e.instruction for e in episodes]
        inputs = self.policy.text_prompt_inputs(images, prompts, instructions)
        logits = self.policy.next_token_logits(inputs)
        return logits[:, [self.yes_id, self.no_id]].float()

    def fit(self, episodes: Sequence[Episode]) -> dict[str, float]:
        """Fine-tune on environment-labelled episodes; returns the last epoch's loss and accuracy."""
        config = self.config
        episodes = list(episodes)
        labels = torch.tensor([0 if e.is_success else 1 for e in episodes])
        if len(episodes) == 0 or labels.min() == labels.max():
            raise ValueError(
                f"MLLMJudge.fit needs both successes and failures; got "
                f"{int((labels == 0).sum())} successes of {len(episodes)} episodes"
            )
        for episode in episodes:
            require_frames(episode, self.name)
        if config.lora_r > 0:
            self.policy.add_lora(r=config.lora_r, alpha=2 * config.lora_r)
            parameters = list(self.policy.trainable_parameters())
        else:
            parameters = list(self.policy.model.parameters())
            for parameter in parameters:
                parameter.requires_grad_(True)
        counts = torch.bincount(labels, minlength=2).float()
        class_weight = (counts.sum() / (2 * counts)).to(self.policy.device)
        optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(config.seed)
        self.policy.model.train()
        stats: dict[str, float] = {}
        for _ in range(config.epochs):
            order = torch.randperm(len(episodes), generator=generator).tolist()
            total, correct = 0.0, 0
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                target = labels[batch].to(self.policy.device)
                logits = self._answer_logits(
                    [episodes[i] for i in batch], generator if config.augment else None
                )
                loss = F.cross_entropy(logits, target, weight=class_weight)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
                correct += int((logits.argmax(-1) == target).sum())
            stats = {"loss": total / len(order), "train_accuracy": correct / len(order)}
        self.policy.model.eval()
        self.fitted = True
        return stats

    @torch.no_grad()
    def predict(self, episodes: Sequence[Episode]) -> np.ndarray:
        """P(yes) per episode, float32 [N]."""
        episodes = list(episodes)
        self.policy.model.eval()
        probs = [
            torch.softmax(self._answer_logits(episodes[i : i + 64]), dim=-1)[:, 0].cpu()
            for i in range(0, len(episodes), 64)
        ]
        return torch.cat(probs).numpy().astype(np.float32) if probs else np.zeros(0, np.float32)

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        threshold = self.config.threshold
        suffix = "" if self.fitted else " (not fine-tuned)"
        return probability_verdicts(
            episodes,
            self.predict(episodes),
            self.name,
            threshold,
            lambda p, cmp: (
                f"the backbone answers yes with probability {p:.3f} ({cmp} {threshold:g}){suffix}"
            ),
        )

    def save(self, directory: str | Path) -> None:
        """Write `judge.json` and the backbone (`policy/`, via `save_pretrained`) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(directory / "policy")
        (directory / "judge.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> MLLMJudge:
        from agent import Policy

        directory = Path(directory)
        if not (directory / "judge.json").is_file():
            raise FileNotFoundError(f"no judge.json in {directory}; expected a saved MLLMJudge")
        config = JudgeConfig(**json.loads((directory / "judge.json").read_text()))
        judge = cls.__new__(cls)
        judge.config = config
        judge.policy = Policy.from_pretrained(directory / "policy")
        judge.yes_id, judge.no_id = judge._answer_ids()
        judge.fitted = True
        return judge
