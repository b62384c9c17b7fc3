"""QLoRA: the frozen base weights loaded in 4-bit (NF4) or 8-bit through bitsandbytes, LoRA adapters trained on
top in bf16. Where the hardware or the setup cannot do it, one line says why and nothing trains."""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

from tuneops.config.errors import UserError
from tuneops.models.loading import is_gguf
from tuneops.models.quirks import configure_padding

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneops.config.params import ModelParams, TrainParams

log = logging.getLogger("tuneops.training")


def quantization_refusal(
    quantization: str | None, method: str, model_name: str, generator: bool, cuda: bool, has_bitsandbytes: bool
) -> str | None:
    """Why train.quantization cannot run here (one line), or None where it can (or is off)."""
    if quantization is None:
        return None
    if not generator:
        return "train.quantization loads a causal LM (task: generation); a classifier trains in full precision"
    if method != "lora":
        return "train.quantization trains LoRA adapters on frozen quantized weights: it needs train.method: lora"
    if not cuda:
        return (
            f"train.quantization: {quantization} needs a CUDA GPU (bitsandbytes' 4/8-bit matmuls); this machine has "
            "none: set it to null (LoRA on full-precision weights)"
        )
    if not has_bitsandbytes:
        return f"train.quantization: {quantization} needs bitsandbytes (pip install bitsandbytes)"
    if is_gguf(model_name):
        return (
            f"train.quantization: {model_name} is a GGUF file, quantized already and dequantized on load; "
            "give model.name the model's Hub id or Hub-format folder to load it in 4/8-bit"
        )
    return None


def refuse_unsupported_quantization(train: TrainParams, model: ModelParams, generator: bool) -> None:
    import torch

    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    cuda = torch.cuda.is_available()
    why = quantization_refusal(train.quantization, train.method, model.name, generator, cuda, has_bnb)
    if why:
        raise UserError(why)


def load_quantized_causal_lm(
    model: ModelParams, train: TrainParams, tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """The base model in 4-bit NF4 (double-quantized, bf16 compute: the QLoRA paper's recipe) or 8-bit, made
    ready for k-bit training (PEFT: norms in fp32, inputs that carry gradients for activation checkpointing)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if train.quantization == "4bit":
        config = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    else:
        config = BitsAndBytesConfig(load_in_8bit=True)
    net = AutoModelForCausalLM.from_pretrained(model.name, revision=model.revision, quantization_config=config)
    log.info("QLoRA: %s loaded in %s through bitsandbytes", model.name, train.quantization)
    net = prepare_model_for_kbit_training(net, use_gradient_checkpointing=train.args.activation_checkpointing)
    return configure_padding(net, tokenizer)
