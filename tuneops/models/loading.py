"""Loading models and tokenizers (a Hub id, a local folder or a .gguf file), and batched classification. Every
loader applies the architecture quirks of tuneops.models.quirks, so training, evaluation and serving load alike.

A GGUF (llama.cpp's one-file format, often 4-bit) is dequantised on load into an ordinary float32 model: no
quantization_config is left on it, so it trains, saves (safetensors, Hub format) and registers like any other."""

from __future__ import annotations

import functools
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tuneops.config.errors import TransientError, UserError
from tuneops.data.chat import with_chat_template
from tuneops.io import hub
from tuneops.models.batches import PAD_TO_MULTIPLE_OF, length_sorted_batches
from tuneops.models.hardware import native_bf16
from tuneops.models.quirks import configure_padding, fuse_gelu, gguf_pad_id, set_pad_token

if TYPE_CHECKING:
    from gguf import GGUFReader
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneops.config.params import ChatTemplate


log = logging.getLogger("tuneops.modeling")


def _from_pretrained(loader: type, name: str, **kwargs: object) -> Any:  # an Auto class's model/tokenizer/config
    if is_gguf(name):
        return _from_gguf(loader, Path(name).expanduser(), **kwargs)
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


def is_gguf(name: str) -> bool:
    """model.name is a local .gguf file (a Hub id or a folder otherwise)."""
    return name.lower().endswith(".gguf")


@dataclass(frozen=True)
class GgufFile:
    """What tuneops reads from a GGUF's header before transformers loads it."""

    name: str
    architecture: str  # llama.cpp's name: "llama" for Llama, SmolLM2, stories260K
    tensor_types: dict[str, tuple[int, int]]  # ggml type (Q4_1, Q8_0, F32, ...) -> (tensors, weights), most first
    pad_id: int | None
    vocab_size: int

    def quantisation(self) -> str:
        """The file's tensor types, most weights first: `Q4_1 (210 tensors, 106,168,320 weights), ...`."""
        parts = (f"{kind} ({n} tensor{'s' * (n != 1)}, {w:,} weights)" for kind, (n, w) in self.tensor_types.items())
        return ", ".join(parts)


def _field(reader: GGUFReader, key: str) -> str | int | None:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.parts[field.data[0]]
    return bytes(value).decode("utf-8") if field.types[0].name == "STRING" else int(value[0])


@functools.cache  # tokenize and train load a tokenizer, a config and a model from one file: its header is read once
def read_gguf(path: Path) -> GgufFile:
    """The header of a .gguf file, or a one-line UserError saying why transformers could not load it."""
    from transformers import __version__
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if not path.is_file():
        raise UserError(f"model {str(path)!r}: no such file (model.name: a Hub id, a Hub-format folder or a .gguf)")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError(f"model {path.name}: reading a GGUF needs the gguf package: pip install 'gguf>=0.10'") from None
    try:
        reader = GGUFReader(path)
        arch = str(_field(reader, "general.architecture"))
    except (ValueError, IndexError, KeyError, OSError) as exc:  # what numpy's memmap and views raise on junk
        raise UserError(
            f"model {path.name}: not a GGUF file ({_one_line(exc)}); give model.name a .gguf that llama.cpp's "
            "tools wrote, a Hub id or a Hub-format folder"
        ) from None
    known = sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"})  # metadata sections, not models
    if arch not in known:
        raise UserError(
            f"model {path.name}: transformers {__version__} reads no GGUF of architecture {arch!r} (only "
            f"{', '.join(known)}); give model.name its Hub id or a Hub-format folder instead"
        )
    tensors = Counter(t.tensor_type.name for t in reader.tensors)
    weights: Counter[str] = Counter()
    for t in reader.tensors:
        weights[t.tensor_type.name] += int(t.n_elements)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    pad = _field(reader, "tokenizer.ggml.padding_token_id")
    return GgufFile(
        name=path.name,
        architecture=arch,
        tensor_types={kind: (tensors[kind], w) for kind, w in weights.most_common()},
        pad_id=int(pad) if pad is not None else None,
        vocab_size=len(tokens.data) if tokens is not None else 0,
    )


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:240]}"


# What transformers raises on a GGUF it cannot turn into a model or tokenizer: an unsupported quantisation
# (ValueError), a tokenizer special token outside the vocabulary (IndexError), a missing gguf package (ImportError).
UNREADABLE_GGUF = (ValueError, IndexError, KeyError, NotImplementedError, ImportError, OSError)


def _from_gguf(loader: type, path: Path, revision: str | None = None, **kwargs: object) -> Any:
    """A tokenizer, config or model from a local .gguf (a file has no revision), or one line saying why not."""
    from transformers import __version__

    if revision is not None:  # once a process would do; it is a line per load, where a user pinned one by mistake
        log.warning("model.revision %r is ignored: %s is a local file, which has no revisions", revision, path.name)
    header = read_gguf(path)
    try:
        return loader.from_pretrained(str(path.parent), gguf_file=path.name, **kwargs)
    except UNREADABLE_GGUF as exc:
        why = _one_line(exc)
        # transformers' GGUF tokenizer loader looks the pad id up in the vocabulary: stories260K's -1 is not there
        if isinstance(exc, IndexError) and gguf_pad_id(header.pad_id, header.vocab_size):
            why = f"its pad token id {header.pad_id} lies outside its {header.vocab_size}-token vocabulary"
        raise UserError(
            f"model {path.name}: transformers {__version__} cannot load {loader.__name__} from this "
            f"{header.architecture} GGUF ({why}); give model.name this model's Hub id or a Hub-format folder of it "
            "instead (README: SmolLM2 and other GGUF models)"
        ) from None


def _load_model(loader: type, name: str, **kwargs: object) -> PreTrainedModel:
    """A causal LM or classifier. From a GGUF: dequantised into an ordinary float32 model, whatever the file's
    types (an F16 file would otherwise load in float16), with no quantization_config left for save_pretrained
    to refuse; a log line names the file's quantisation."""
    if not is_gguf(name):
        return _from_pretrained(loader, name, **kwargs)
    from transformers import GgufConfig

    header = read_gguf(Path(name).expanduser())
    kwargs.update(gguf_pad_id(header.pad_id, header.vocab_size))
    plain = GgufConfig(dequantize=True)  # transformers then drops the quantizer and its config after loading
    model = _from_pretrained(loader, name, dtype=torch.float32, quantization_config=plain, **kwargs)
    quant = header.quantisation()
    log.info("%s: %s GGUF in %s; dequantised to %s", header.name, header.architecture, quant, model.dtype)
    return model


def load_tokenizer(name: str, revision: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, name, revision=revision, trust_remote_code=False)
    return set_pad_token(tokenizer)


def load_chat_tokenizer(name: str, revision: str | None, declared: ChatTemplate) -> PreTrainedTokenizerBase:
    """The tokenizer with a chat template: the model's own, else the one params declare (tuneops.data.chat)."""
    return with_chat_template(load_tokenizer(name, revision), declared)


def max_positions(name: str, revision: str | None = None) -> int | None:
    """How many token positions the model has (GPT-2: n_positions), or None where its config does not say."""
    from transformers import AutoConfig

    config = _from_pretrained(AutoConfig, name, revision=revision)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def load_classifier(
    name: str, labels: list[str], tokenizer: PreTrainedTokenizerBase, revision: str | None = None
) -> PreTrainedModel:
    """A sequence classifier with our label names, from a Hub id, a local directory or a .gguf file."""
    from transformers import AutoModelForSequenceClassification

    model = _load_model(
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

    model = _load_model(AutoModelForCausalLM, name, revision=revision)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # generate() warns on every call otherwise
    return configure_padding(model, tokenizer)


def load_base(name: str, revision: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model a fine-tune starts from (model.name: a Hub id, a folder or a .gguf) as a causal LM ready to
    generate, with its tokenizer: loaded as training loads it (the same quirks), then as inference does. evaluate
    scores it zero-shot beside the candidate."""
    tokenizer = load_tokenizer(name, revision)
    return for_inference(load_causal_lm(name, tokenizer, revision), tokenizer), tokenizer


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
