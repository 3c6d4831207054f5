"""Offline tokenizer for the built-in presets: a byte-level BPE trained on tabletop words.

The merges are learnt from a small corpus of instruction-like sentences built from the task
vocabulary, so common instructions take few tokens; the byte-level alphabet is always present,
so any text (any language, any symbol) still encodes. The image placeholders and the
`N_BINS` action tokens `<act_0>`..`<act_255>` are added as special tokens.
"""

from __future__ import annotations

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from agent.action_tokens import N_BINS

PAD_TOKEN = "<pad>"
IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE_TOKEN = "<end_of_utterance>"
STATE_MARKER = "<state>"
"""Precedes the state tokens in the prompt."""
ACTION_MARKER = "<action>"
"""Ends the prompt; the action tokens follow it."""
SPECIAL_TOKENS = [
    PAD_TOKEN,
    END_OF_UTTERANCE_TOKEN,
    FAKE_IMAGE_TOKEN,
    IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
]


def action_token(k: int) -> str:
    """The text of the action token for bin `k`."""
    return f"<act_{k}>"


ACTION_TOKENS = [action_token(k) for k in range(N_BINS)]
POLICY_TOKENS = [STATE_MARKER, ACTION_MARKER, *ACTION_TOKENS]
"""Tokens the policy adds to any vocabulary that lacks them."""

COLOURS = "red green blue yellow purple orange white black pink cyan grey brown".split()
OBJECTS = (
    "ball cube block button drawer bowl bin goal region zone square target handle object box "
    "marker disc plate tray table top".split()
)
VERBS = (
    "touch reach push move pick place put stack press open pull close lift slide grab get go "
    "drop hold".split()
)
FUNCTION_WORDS = (
    "the a an to on onto into in of and then up with its from at by it that this left right "
    "front back near far over under above below inside".split()
)
PROMPT_WORDS = ["instruction:", "task:"]


def training_corpus() -> list[str]:
    """Sentences covering the task vocabulary, the prompt markers, digits and punctuation."""
    lines = []
    for verb, colour, obj in itertools.product(VERBS, COLOURS, OBJECTS):
        lines.append(f"{verb} the {colour} {obj}")
    for verb, c1, o1, prep, c2, o2 in itertools.product(
        VERBS[:8], COLOURS[:6], OBJECTS[:6], FUNCTION_WORDS[3:9], COLOURS[:6], OBJECTS[6:10]
    ):
        lines.append(f"{verb} the {c1} {o1} {prep} the {c2} {o2}.")
    lines.extend(f"then {verb} the {obj}" for verb, obj in itertools.product(VERBS, OBJECTS))
    lines.extend(" ".join(FUNCTION_WORDS[i : i + 5]) for i in range(len(FUNCTION_WORDS)))
    lines.extend(f"{word}\n" for word in PROMPT_WORDS)
    lines.extend(" ".join(str(d) for d in range(k, k + 10)) for k in range(10))
    lines.append("Reach, push; pick & place! (a-b) [c] 'd' \"e\" ? 0.5 1,2")
    return lines


def train_tokenizer(
    vocab_size: int = 640,
    extra_special_tokens: tuple[str, ...] = (),
    with_action_tokens: bool = True,
) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE offline and wrap it for transformers (left padding).

    `extra_special_tokens` (e.g. another family's image placeholders) follow the built-in ones;
    `with_action_tokens=False` leaves the action tokens out (to test adding them at load time).
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS + list(extra_special_tokens),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD_TOKEN, padding_side="left"
    )
    if with_action_tokens:
        add_action_tokens(tokenizer)
    return tokenizer


def add_action_tokens(tokenizer) -> int:
    """Add any missing prompt markers and `<act_k>` tokens (as special tokens); returns how many
    were added."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in POLICY_TOKENS if t not in vocab]
    if not missing:
        return 0
    return tokenizer.add_special_tokens(
        {"additional_special_tokens": missing}, replace_extra_special_tokens=False
    )
