"""Loading models and tokenizers (a Hub id or a local folder), and batched classification. Every loader applies
the architecture quirks of tuneops.models.quirks, so training, evaluation and serving load alike."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tuneops.config.errors import TransientError, UserError
from tuneops.io import hub
from tuneops.models.batches import PAD_TO_MULTIPLE_OF, length_sorted_batches
from tuneops.models.hardware import native_bf16
from tuneops.models.quirks import configure_padding, fuse_gelu, set_pad_token

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


log = logging.getLogger("tuneops.modeling")


def _from_pretrained(loader: type, name: str, **kwargs: object) -> Any:  # an Auto class's model/tokenizer/config
    if not Path(name).expanduser().exists():  # a Hub id: fail in seconds when the Hub is out of reach
        try:
            hub.probe(f"model {name!r}")
        except (UserError, TransientError) as unreachable:
            try:  # a model fetched before is still in the Hugging Face cache
                return loader.from_pretrained(name, local_files_only=True, **kwargs)
            except OSError:
                raise unreachable from None
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise UserError(
            f"model {name!r}: {' '.join(str(exc).split())[:240]} "
            "(set model.name to a Hub id you can reach or a local directory in Hub format)"
        ) from None


def load_tokenizer(name: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, revision=revision, trust_remote_code=False)
    return set_pad_token(tokenizer)


def max_positions(name: str, revision: str | None = None) -> int | None:
    """How many token positions the model has (GPT-2: n_positions), or None where its config does not say."""
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, name, revision=revision)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def load_classifier(
    name: str, labels: list[str], tokenizer: PreTrainedTokenizerBase, revision: str | None = None
) -> PreTrainedModel:
    """A sequence classifier with our label names, from a Hub id or a local directory."""
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained(
        AutoModelForSequenceClassification,
        name,
        revision=revision,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        # a classifier checkpoint with another label set gets a fresh head instead of a size error
        ignore_mismatched_sizes=True,
    )
    return configure_padding(model, tokenizer)


def refuse_code(*dirs: Path) -> None:
    """Refuse a model folder that brings its own Python: an `auto_map` in its configs, or a .py file.

    transformers runs such code when asked to trust it, and MLflow's loader asks whenever the model was logged
    that way: anyone who can write to a shared registry could run code on every machine that serves from it.
    """
    for folder in dirs:
        if scripts := sorted(p.name for p in folder.glob("*.py")):
            raise UserError(f"{folder}: carries Python code ({', '.join(scripts)}); tuneops loads no code with a model")
        for config in folder.glob("*.json"):
            try:
                mapped = "auto_map" in json.loads(config.read_text(encoding="utf-8"))
            except (ValueError, TypeError):
                continue  # not a JSON object: not a config that can map to code
            if mapped:
                raise UserError(
                    f"{config}: has an auto_map (classes from its own code); tuneops loads no code with a model"
                )


def is_generator(model: PreTrainedModel) -> bool:
    """A causal language model (generates completions), as opposed to a sequence classifier."""
    return bool(model.can_generate())  # transformers' own answer: True for GPT2LMHeadModel, False for a classifier


def saved_task(model_dir: Path) -> str:
    """`generation` for a saved causal LM (its config's architectures say so), else `classification`."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "classification"  # the loader then says what is wrong with the folder
    archs = config.get("architectures") or []
    return "generation" if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) else "classification"


def load_trained(
    model_dir: str | Path, tokenizer_dir: str | Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model saved by the train stage or downloaded from the registry: weights, labels and tokenizer.

    A causal LM (task: generation) or a sequence classifier, as its saved config says. Only transformers' own
    classes load (trust_remote_code=False, and refuse_code before that).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    refuse_code(Path(model_dir), Path(tokenizer_dir or model_dir))
    tokenizer = load_tokenizer(str(tokenizer_dir or model_dir))
    generator = saved_task(Path(model_dir)) == "generation"
    loader = AutoModelForCausalLM if generator else AutoModelForSequenceClassification
    model = _from_pretrained(loader, str(model_dir), trust_remote_code=False)
    return for_inference(model, tokenizer), tokenizer


def load_causal_lm(name: str, tokenizer: PreTrainedTokenizerBase, revision: str | None = None) -> PreTrainedModel:
    """A causal language model to fine-tune on prompt/completion pairs (GPT2LMHeadModel for GPT-2)."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, name, revision=revision)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # generate() warns on every call otherwise
    return configure_padding(model, tokenizer)


def for_inference(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A loaded model ready to predict or generate: pad token set, fused GELU, eval mode (dropout off), on the
    GPU when there is one (predict_logits and generation follow the model's device)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return fuse_gelu(configure_padding(model, tokenizer)).eval().to(device)


@torch.inference_mode()
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: list[list[int]],
    batch_size: int = 64,
    bf16: bool = False,
) -> np.ndarray:
    """Logits for pre-tokenized inputs, in their original order; batches sorted by length, padded per batch.

    fp32 unless `bf16`: evaluation keeps exact metrics, serving takes the faster matmuls where they are native.
    """
    out = np.zeros((len(encoded), model.config.num_labels), dtype=np.float32)
    device = "cuda" if next(model.parameters()).is_cuda else "cpu"
    for idx in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        batch = tokenizer.pad(
            {"input_ids": [encoded[i] for i in idx]}, return_tensors="pt", pad_to_multiple_of=PAD_TO_MULTIPLE_OF
        ).to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


def predict_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int = 64,
    bf16: bool | None = None,
) -> list[dict[str, object]]:
    """Label and class probabilities for raw texts (bf16 matmuls where the hardware has them natively)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    encoded = [ids or [tokenizer.eos_token_id] for ids in encoded]  # an empty text still gets one token
    bf16 = native_bf16() if bf16 is None else bf16
    logits = predict_logits(model, tokenizer, encoded, batch_size, bf16)
    probs = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return [
        {"label": labels[int(row.argmax())], "probabilities": dict(zip(labels, row.round(6).tolist(), strict=True))}
        for row in probs
    ]
