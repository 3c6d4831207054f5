"""The offline tokenizer and the prompt: compact on task words, byte fallback, one prompt builder."""

import numpy as np

from agent.prompt import PromptPieces, prompt_text
from agent.tokenizer import ACTION_TOKENS, COLOURS, OBJECTS, VERBS, train_tokenizer


def test_task_words_are_compact_and_any_text_round_trips():
    tokenizer = train_tokenizer()
    for word in COLOURS + OBJECTS + VERBS:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) <= 2, word
    sentence = "pick the red cube and place it on the green goal"
    assert len(tokenizer(sentence)["input_ids"]) <= len(sentence.split()) + 2
    for text in ["Öffne die Schublade 🤖", "x=0.25; y=-1e3", "タスク", "\t tabs\nand newlines"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text


def test_action_tokens_are_single_special_tokens():
    tokenizer = train_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(ACTION_TOKENS)
    assert len(set(ids)) == 256
    text = "".join(ACTION_TOKENS[k] for k in (0, 17, 255))
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == [ids[0], ids[17], ids[255]]
    assert "<act_0>" not in train_tokenizer(with_action_tokens=False).get_vocab()


def test_prompt_pieces_equal_the_tokenized_prompt_text():
    tokenizer = train_tokenizer()
    pieces = PromptPieces(tokenizer, image_seq_len=4)
    state = np.array([0.1, -0.2, 0.05, 0.04], dtype=np.float32)
    for instruction, st in [("  stack the cubes ", state), ("reach", None), ("", state)]:
        expected = tokenizer(
            prompt_text(
                instruction,
                st,
                "<fake_token_around_image><global-img>"
                + "<image>" * 4
                + "<fake_token_around_image>",
            ),
            add_special_tokens=False,
        )["input_ids"]
        assert pieces.instruction_ids(instruction) + pieces.suffix_ids(st) == expected
