"""Saving and loading policies: safetensors weights, tokenizer, processor, settings, adapter.

Loading checks what it reads and fails with a clear error on a missing folder, an unsupported
model family, missing files, unreadable weights or weights that do not cover the model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from peft import PeftModel
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Idefics3Processor,
)

from agent import model as _registers_autodidact_vlm  # noqa: F401  (Auto classes)
from agent.families import get_family
from agent.qwen_processor import QwenImageTextProcessor
from agent.tokenizer import add_action_tokens

SETTINGS_FILE = "autodidact_policy.json"
ADAPTER_DIR = "adapter"


def save(path, model, processor, settings: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        copy.deepcopy(model).unload().save_pretrained(path)
        model.save_pretrained(path / ADAPTER_DIR, save_embedding_layers=False)
    else:
        model.save_pretrained(path)
    processor.save_pretrained(path)
    (path / SETTINGS_FILE).write_text(json.dumps(settings, indent=2))


def _weights_present(path: Path) -> bool:
    return (path / "model.safetensors").exists() or (path / "model.safetensors.index.json").exists()


def _load_processor(path: Path, family, config):
    """The family's processor. Idefics3-like prompts get one `<image>` per merged patch, counted
    from the model's config; Qwen-VL and SmolVLM processors are built from their parts, since
    transformers' own ones need a video processor (torchvision), which the policy never uses."""
    if family.rope_3d:
        return QwenImageTextProcessor.from_pretrained(path)
    if family.reads_instruction_ids:
        image_seq_len = config.image_seq_len
    else:
        vision = config.vision_config
        image_seq_len = (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2
    if family.name == "smolvlm":
        return Idefics3Processor(
            image_processor=AutoImageProcessor.from_pretrained(path),
            tokenizer=AutoTokenizer.from_pretrained(path),
            image_seq_len=image_seq_len,
        )
    processor = AutoProcessor.from_pretrained(path)
    processor.image_seq_len = image_seq_len
    return processor


def load(path) -> tuple[object, object, dict]:
    """Return (model, processor, settings dict) from a local folder."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {str(path)!r}")
    if not (path / "config.json").exists():
        raise ValueError(f"incomplete checkpoint at {str(path)!r}: config.json is missing")
    try:
        config = AutoConfig.from_pretrained(path)
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(f"unreadable config.json at {str(path)!r}: {error}") from error
    family = get_family(config.model_type, str(path))
    if not _weights_present(path):
        raise ValueError(f"incomplete checkpoint at {str(path)!r}: no model.safetensors weights")
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(path, output_loading_info=True)
    except Exception as error:
        raise ValueError(
            f"corrupt checkpoint at {str(path)!r}: cannot read the weights ({error})"
        ) from error
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        detail = "; ".join(f"{k}: {sorted(map(str, v))[:5]}" for k, v in problems.items())
        raise ValueError(
            f"incomplete checkpoint at {str(path)!r}: the weights do not cover the model ({detail})"
        )
    try:
        processor = _load_processor(path, family, config)
    except Exception as error:
        raise ValueError(
            f"incomplete checkpoint at {str(path)!r}: cannot load the processor/tokenizer ({error})"
        ) from error
    if add_action_tokens(processor.tokenizer):
        model.resize_token_embeddings(len(processor.tokenizer), mean_resizing=False)
    settings_file = path / SETTINGS_FILE
    if settings_file.exists():
        settings = json.loads(settings_file.read_text())
    else:
        settings = {
            "family": family.name,
            "image_size": None,
            "fast_path": False,
            "policy_id": path.name,
        }
    if (path / ADAPTER_DIR).is_dir():
        model = PeftModel.from_pretrained(model, path / ADAPTER_DIR, is_trainable=True)
    model.eval()
    return model, processor, settings
