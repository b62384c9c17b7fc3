"""Loading models and tokenizers, and batched inference: GPT-2's quirks live here and nowhere else.

GPT-2 has no pad token. We pad with eos, tell the model (`config.pad_token_id`) so the classifier head pools
the last real token instead of a pad, and pad on the right. Training, evaluation and serving all load through
these functions, so the three can never disagree.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneops.io import hub
from tuneops.config.errors import TransientError, UserError

log = logging.getLogger("tuneops.modeling")
# oneDNN builds and keeps kernels for every new batch shape: a server that met every length would grow by
# ~10 MB a length. Rounding lengths up to a multiple of 8 bounds the shapes (train: train.pad_to_multiple_of).
PAD_TO_MULTIPLE_OF = 8


def set_threads(num_threads: int | None) -> int:
    """Use every core unless told otherwise (torch's default can be lower inside containers); under torchrun,
    each of the machine's LOCAL_WORLD_SIZE processes its share, so they do not fight over the cores."""
    share = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    threads = num_threads or max(1, share)
    torch.set_num_threads(threads)
    return threads


@functools.cache  # the hardware does not change; serving asks on every request
def native_bf16() -> bool:
    """True where bf16 matmuls are fast: a CUDA GPU that has them, or a CPU with AMX or AVX512-BF16."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
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


def load_tokenizer(name: str, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, revision=revision, trust_remote_code=False)
    if tokenizer.pad_token is None:  # GPT-2
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def max_positions(name: str, revision: str | None = None) -> int | None:
    """How many token positions the model has (GPT-2: n_positions), or None where its config does not say."""
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, name, revision=revision)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def configure_padding(model: Any, tokenizer: Any) -> Any:
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


def load_classifier(name: str, labels: list[str], tokenizer: Any, revision: str | None = None) -> Any:
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


def is_generator(model: Any) -> bool:
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


def load_trained(model_dir: str | Path, tokenizer_dir: str | Path | None = None) -> tuple[Any, Any]:
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


def load_causal_lm(name: str, tokenizer: Any, revision: str | None = None) -> Any:
    """A causal language model to fine-tune on prompt/completion pairs (GPT2LMHeadModel for GPT-2)."""
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, name, revision=revision)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # generate() warns on every call otherwise
    return configure_padding(model, tokenizer)


def for_inference(model: Any, tokenizer: Any) -> Any:
    """A loaded model ready to predict or generate: pad token set, fused GELU, eval mode (dropout off), on the
    GPU when there is one (predict_logits and generation follow the model's device)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return fuse_gelu(configure_padding(model, tokenizer)).eval().to(device)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length, so dynamic padding pads almost nothing."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict_logits(
    model: Any, tokenizer: Any, encoded: list[list[int]], batch_size: int = 64, bf16: bool = False
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
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int = 64, bf16: bool | None = None
) -> list[dict]:
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


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None) -> tuple[Any, Any]:
    """Token ids padded on the right into one tensor, and the attention mask built from each row's length.

    The mask comes from positions, never from comparing ids with pad_id: GPT-2 pads with eos, so a mask by id
    would also hide every real eos, the one token that teaches the model to stop (transformers#23530).
    """
    longest = max(len(s) for s in seqs)
    if multiple:
        longest = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


class CompletionCollator:
    """Batches of prompt+completion+eos token ids for causal-LM fine-tuning, masked by position.

    `labels` are the completion's tokens and its eos (the prompt and the padding are -100: no loss there). With
    `prompt_loss_weight` > 0 the batch also carries `loss_weights` (the prompt's tokens weighted by it, the
    completion's by 1), which training.CompletionTrainer applies; the labels stay completion-only, so token
    accuracy always measures completions.
    """

    def __init__(self, pad_id: int, prompt_loss_weight: float = 0.0, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id, self.prompt_loss_weight, self.multiple = pad_id, prompt_loss_weight, pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        seqs = [row["input_ids"] for row in rows]
        ids, mask = pad_right(seqs, self.pad_id, self.multiple)
        labels = torch.full_like(ids, -100)
        for i, row in enumerate(rows):
            start, end = row["prompt_length"], len(row["input_ids"])
            labels[i, start:end] = ids[i, start:end]
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if self.prompt_loss_weight > 0:
            weights = mask.float()
            for i, row in enumerate(rows):
                weights[i, : row["prompt_length"]] *= self.prompt_loss_weight
            batch["loss_weights"] = weights
        return batch


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int, multiple: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts padded on the LEFT for generation: input ids, attention mask and position ids, by position.

    Generation appends each new token after the last column, so every row's last real token must sit there:
    pad on the left (training pads on the right). The mask comes from each row's length, never from comparing
    ids with pad_id (GPT-2 pads with eos, a token a prompt may hold). GPT-2 adds learned position embeddings by
    index and would count a left-padded row's positions from its first pad, so the positions are explicit: 0 at
    each row's first real token, as if it had no padding (the pads get 0 too; they are masked, never attended).
    """
    longest = max(len(s) for s in seqs)
    if multiple:
        longest = -(-longest // multiple) * multiple
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    positions = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        pad = longest - len(seq)
        ids[row, pad:] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, pad:] = 1
        positions[row, pad:] = torch.arange(len(seq))
    return ids, mask, positions
