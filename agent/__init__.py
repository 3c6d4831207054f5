"""The multimodal LLM policy: image + instruction in, action tokens out.

`Policy.from_preset(name)` builds a fresh policy offline: the built-in instruction-aware model
(`agent.model`; presets `tiny`, `tiny_vision`, `small`) or, for comparison, a small Idefics3
(`idefics3_tiny`, ...);
`Policy.from_pretrained(path)` loads a saved one or a local Idefics3/SmolVLM/Qwen2-VL/Qwen2.5-VL
checkpoint. `policy.act(...)` decodes actions; `policy.action_logprobs(...)` scores given ones.
Torch is imported only when a torch-backed name is first used, so `agent.action_tokens`
stays pure numpy.
"""

from agent.action_tokens import N_BINS, actions_to_bins, bins_to_actions

_LAZY = {
    "ActOutput": "agent.policy",
    "Policy": "agent.policy",
    "PolicySettings": "agent.policy",
    "PRESETS": "agent.presets",
    "PolicyPreset": "agent.presets",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")


__all__ = ["N_BINS", "actions_to_bins", "bins_to_actions", *_LAZY]
