"""Architecture quirks, in one place: pad tokens, padding side, the modules LoRA adapts, the fused GELU. Training,
evaluation and serving all go through these, so the three can never disagree.

GPT-2 has no pad token of its own, and SmolLM2's is its eos (<|im_end|>). We pad with eos, tell the model
(`config.pad_token_id`) so the classifier head pools the last real token instead of a pad, and pad on the right
for training (generation pads on the left: tuneops.models.batches.left_pad). Masks always come from positions,
never from comparing ids with the pad id: the pad IS eos, and a mask by id would hide the eos that teaches a model
to stop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

# LoRA's targets where `train.lora.target_modules: auto`, by config.model_type. GPT-2 keeps the two tuneops always
# adapted: c_attn (q, k and v in one Conv1D) and c_proj (attention's and the MLP's output), so its LoRA runs are
# unchanged. Every other architecture gets PEFT's "all-linear": each Linear of its blocks whatever its names (a
# Llama's q/k/v/o_proj and gate/up/down_proj: 7 a layer), never the output head (lm_head, or the classifier's
# score, which SEQ_CLS trains in full).
LORA_TARGETS: dict[str, list[str]] = {"gpt2": ["c_attn", "c_proj"]}
ALL_LINEAR = "all-linear"


def set_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Pad with eos where the tokenizer has no pad token (GPT-2), on the right (training's side)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def gguf_pad_id(pad_id: int | None, vocab_size: int) -> dict[str, None]:
    """`from_pretrained` overrides for a GGUF whose pad token id is no token: none where it is in the vocabulary.

    llama2.c's GGUFs (stories260K) say pad = -1, stored as 4,294,967,295 (uint32): transformers would build the
    embedding with that padding_idx and fail. Such a model has no pad token; set_pad_token then pads with eos.
    """
    return {} if pad_id is None or 0 <= pad_id < vocab_size else {"pad_token_id": None}


def lora_target_modules(config: PretrainedConfig, wanted: list[str] | Literal["auto"]) -> list[str] | str:
    """The modules LoRA adapts: `wanted` as params.yaml lists them, or for `auto` the architecture's own."""
    if wanted != "auto":
        return wanted
    return LORA_TARGETS.get(config.model_type, ALL_LINEAR)


def configure_padding(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def fuse_gelu(model: torch.nn.Module) -> torch.nn.Module:
    """Swap GPT-2's `gelu_new` modules, in place, for torch's one-kernel gelu(approximate="tanh").

    Same function, but `gelu_new` is written out in Python: six kernels and five intermediates kept for
    backward per MLP. The fused kernel trains ~15% faster with ~0.3 GB less peak memory (bench/train_speed.py)
    and serves faster. The config keeps `gelu_new`, so a saved model loads the same anywhere.
    """
    from transformers.activations import GELUTanh, NewGELUActivation

    for module in list(model.modules()):
        for name, child in module.named_children():
            if type(child) is NewGELUActivation:
                setattr(module, name, GELUTanh())
    return model
