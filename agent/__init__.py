"""The multimodal LLM policy: image + instruction in, action tokens out."""
