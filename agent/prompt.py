"""The one place the policy's prompt is built: instruction, then image, then state, then `<action>`.

The instruction comes first so that, within an episode, its key/value cache can be kept while the
image and state change. The prompt ends with `<action>`; the policy then emits one action token per
action dimension. `PromptPieces` gives the same prompt as token ids for the fast path of the
built-in presets; `prompt_text` gives it as text for a model's processor. Both agree (tested).
"""

from __future__ import annotations

import numpy as np

from agent.action_tokens import states_to_bins
from agent.tokenizer import (
    ACTION_MARKER,
    FAKE_IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    IMAGE_TOKEN,
    STATE_MARKER,
    action_token,
)


def _clean(instruction: str) -> str:
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
    return instruction.strip()


def state_text(state: np.ndarray | None) -> str:
    """`<state><act_i>...` for a state vector, or nothing when the state is not used."""
    if state is None:
        return ""
    return STATE_MARKER + "".join(action_token(int(b)) for b in states_to_bins(state))


def prompt_text(instruction: str, state: np.ndarray | None, image_placeholder: str) -> str:
    """The policy prompt as text, with the model family's image placeholder in it."""
    return f"{_clean(instruction)}\n{image_placeholder}{state_text(state)}{ACTION_MARKER}"


def judge_prompt_text(text: str, image_placeholder: str) -> str:
    """A free-text prompt about an image (for judges built on the backbone)."""
    return f"{image_placeholder}\n{text}"


class PromptPieces:
    """Token ids of the prompt for the built-in Idefics3 format, without the processor.

    The tokenizer splits text at special tokens and encodes each span on its own, so the prompt's
    ids are the concatenation of the spans' ids; the constant spans are encoded once and each
    distinct instruction once.
    """

    def __init__(self, tokenizer, image_seq_len: int):
        self.tokenizer = tokenizer
        convert = tokenizer.convert_tokens_to_ids
        fake, glob, image = convert([FAKE_IMAGE_TOKEN, GLOBAL_IMAGE_TOKEN, IMAGE_TOKEN])
        self.image_ids = [fake, glob] + [image] * image_seq_len + [fake]
        self.state_marker_ids = [convert(STATE_MARKER)]
        self.action_marker_ids = [convert(ACTION_MARKER)]
        self.action_token_ids = np.array(convert([action_token(k) for k in range(256)]))
        self._instruction_ids: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def instruction_ids(self, instruction: str) -> list[int]:
        """Ids of the instruction span (instruction and the newline before the image)."""
        ids = self._instruction_ids.get(instruction)
        if ids is None:
            ids = self._encode(_clean(instruction) + "\n")
            if len(self._instruction_ids) < 4096:
                self._instruction_ids[instruction] = ids
        return ids

    def suffix_ids(self, state: np.ndarray | None) -> list[int]:
        """Ids after the instruction: image placeholders, state tokens, action marker."""
        ids = list(self.image_ids)
        if state is not None:
            ids += self.state_marker_ids + self.action_token_ids[states_to_bins(state)].tolist()
        return ids + self.action_marker_ids
