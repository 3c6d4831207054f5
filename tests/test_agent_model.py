"""The built-in backbone (`agent.model`): Auto-class registration, instruction-aware image tokens,
and clear errors."""

import os

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForImageTextToText

from agent import Policy
from agent.model import AutodidactVLMConfig, AutodidactVLMForConditionalGeneration


@pytest.fixture(scope="module")
def policy():
    return Policy.from_preset("tiny", seed=0)


def _words(policy, text: str) -> torch.Tensor:
    return torch.tensor([policy._pieces.instruction_ids(text)])


def test_auto_classes_load_a_saved_model(policy, tmp_path):
    policy.backbone.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "autodidact_vlm"
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert isinstance(loaded, AutodidactVLMForConditionalGeneration)
    inputs = policy.prepare_inputs(
        np.zeros((1, 64, 64, 3), np.uint8),
        ["go to the red ball"],
        np.zeros((1, 4), np.float32),
        np.zeros((1, 4), np.int64),
    )
    inputs.pop("action_bins")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, policy.model(**inputs).logits)


def test_image_tokens_depend_on_the_instructions_words_only(policy):
    vision = policy.backbone.vision
    pixels = torch.rand(1, 3, 64, 64) * 2 - 1
    red, blue = _words(policy, "go to the red ball"), _words(policy, "go to the blue ball")
    special = torch.tensor(
        [policy.tokenizer.convert_tokens_to_ids(["<image>", "<act_7>", "<pad>"])]
    )
    with torch.no_grad():
        tokens = vision(pixels, red)[0]
        assert tokens.shape == (1, 4, policy.backbone.config.text_config.hidden_size)
        assert not torch.allclose(tokens, vision(pixels, blue)[0])
        # image placeholders, state/action tokens and padding are not words: they change nothing
        torch.testing.assert_close(tokens, vision(pixels, torch.cat([special, red], dim=1))[0])


def test_a_judge_prompt_conditions_the_vision_on_the_instruction_alone(policy):
    """`text_prompt_inputs(..., instructions)` hands the vision the instruction's words, as
    acting does, not the question's: the image tokens equal the acting ones."""
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    instructions = ["go to the red ball", "press the blue button"]
    questions = [
        f"Instruction: {i}\nWas the instruction accomplished? Answer yes or no:"
        for i in instructions
    ]
    vision = policy.backbone.vision
    with torch.no_grad():
        judged = policy.text_prompt_inputs(images, questions, instructions)
        acting = policy.text_prompt_inputs(images, instructions)
        tokens = vision(judged["pixel_values"], judged["instruction_ids"])[0]
        torch.testing.assert_close(tokens, vision(acting["pixel_values"], acting["input_ids"])[0])
        # without the instructions the question's other words dilute the conditioning
        assert "instruction_ids" not in policy.text_prompt_inputs(images, questions)
        diluted = vision(judged["pixel_values"], judged["input_ids"])[0]
        assert not torch.allclose(tokens, diluted)


def test_a_prompt_without_the_right_image_tokens_is_rejected(policy):
    inputs = policy._prompt_inputs(
        np.zeros((2, 64, 64, 3), np.uint8),
        ["press the red button"] * 2,
        np.zeros((2, 4), np.float32),
    )
    image_id = policy.backbone.config.image_token_id
    inputs["input_ids"] = inputs["input_ids"].masked_fill(inputs["input_ids"] == image_id, 7)
    with pytest.raises(ValueError, match="the prompt has 0 image tokens for 2 images; expected 4"):
        policy.model(**inputs)


def test_config_rejects_an_image_size_the_tower_cannot_reduce():
    with pytest.raises(ValueError, match="image_size must be a multiple of 8, got 60"):
        AutodidactVLMConfig(image_size=60)


def test_generate_runs_on_the_processors_inputs(policy):
    from agent.families import processor_inputs
    from agent.prompt import prompt_text

    text = prompt_text("go to the red ball", np.zeros(4, np.float32), "<image>")
    inputs = processor_inputs(
        policy.processor, policy.family, np.zeros((1, 64, 64, 3), np.uint8), [text]
    )
    with torch.inference_mode():
        out = policy.model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)


def test_the_allocator_is_tuned_on_glibc_unless_the_user_says_otherwise():
    import subprocess
    import sys

    code = "import agent.policy, agent.runtime as r; print(r.tune_allocator())"
    runs = {}
    for setting in ("tuned", "default", "user"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        env.pop("AUTODIDACT_MALLOC", None)
        if setting == "default":
            env["AUTODIDACT_MALLOC"] = "default"
        elif setting == "user":
            env["MALLOC_MMAP_THRESHOLD_"] = "131072"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        runs[setting] = out.stdout.strip().splitlines()[-1]
    glibc = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")
    assert runs == {"tuned": str(bool(glibc)), "default": "False", "user": "False"}
