"""Chat templates: what an instruct model really reads.

An instruct model was fine-tuned on conversations wrapped in special tokens. SmolLM2 uses
ChatML:

    <|im_start|>system
    You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    <|im_start|>user
    What is the capital of France?<|im_end|>
    <|im_start|>assistant

The playground shows this text so students see the whole input, not just their question.
"""

from __future__ import annotations

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def has_chat_template(tokenizer) -> bool:
    """True for tokenizers with ChatML's special tokens (SmolLM2-Instruct)."""
    special = getattr(tokenizer, "special_tokens_set", set())
    return IM_START in special and IM_END in special


def apply_chat_template(tokenizer, user_text: str, system: str | None = DEFAULT_SYSTEM) -> str:
    """The prompt text for one user turn, ending where the assistant's answer begins."""
    if not has_chat_template(tokenizer):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name', tokenizer)!r} has no chat template "
                         "(it lacks <|im_start|>/<|im_end|>); use a plain prompt")
    parts = []
    if system:
        parts.append(f"{IM_START}system\n{system}{IM_END}\n")
    parts.append(f"{IM_START}user\n{user_text}{IM_END}\n{IM_START}assistant\n")
    return "".join(parts)
