"""Inference speed, side by side: `tuneops predict --file`'s code path vs a plain transformers pipeline.

    python bench/predict_speed.py          (needs ../shared; a few minutes on 2 cores)

Same model (GPT-2 small architecture, random init, 3 labels), same 3,534 real test tweets, same machine, same
run. tuneops: length-sorted batches, dynamic padding, torch.inference_mode (tuneops.predict.predict, which
`tuneops predict` calls once it has the model from the registry). Plain: pipeline("text-classification").
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
TEST = SHARED / "data" / "tweet_sentiment_extraction" / "test.csv"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
LABELS = ["negative", "neutral", "positive"]


def save_model(model_dir: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from tuneops.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(TOKENIZER))
    tokenizer.model_max_length = 128
    torch.manual_seed(0)
    config = GPT2Config(
        num_labels=3,
        id2label=dict(enumerate(LABELS)),
        label2id={k: i for i, k in enumerate(LABELS)},
        pad_token_id=tokenizer.pad_token_id,
    )
    GPT2ForSequenceClassification(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)


def main() -> None:
    if not (TEST.is_file() and TOKENIZER.is_dir()):
        sys.exit(f"needs the real data and tokenizer under {SHARED}")
    from transformers import pipeline

    from tuneops.inference.predict import predict, read_texts
    from tuneops.models.hardware import native_bf16, set_threads
    from tuneops.models.loading import load_trained, predict_texts

    set_threads(None)
    texts = read_texts(TEST)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp))
        model, tokenizer = load_trained(tmp)
        predict(model, tokenizer, texts[:64])  # warm-up
        start = time.perf_counter()
        ours = predict(model, tokenizer, texts)  # bf16 matmuls where the CPU has them (AMX here)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        ours_fp32 = predict_texts(model, tokenizer, texts, tokenizer.model_max_length, bf16=False)
        fp32_s = time.perf_counter() - start

        plain = pipeline("text-classification", model=tmp, device="cpu")
        plain(texts[:8])
        start = time.perf_counter()
        theirs = plain(texts)
        plain_s = time.perf_counter() - start

    def agree(a: list[dict]) -> float:
        return sum(o["label"] == t["label"] for o, t in zip(a, theirs, strict=True)) / len(texts)

    print(f"texts                           {len(texts)}")
    print(
        f"tuneops predict                 {len(texts) / ours_s:8.1f} predictions/s  ({ours_s:.1f} s, "
        f"bf16 {'on' if native_bf16() else 'off: no native bf16'}; same label as plain: {agree(ours):.2%})"
    )
    print(
        f"tuneops batching, fp32          {len(texts) / fp32_s:8.1f} predictions/s  ({fp32_s:.1f} s, "
        f"same label as plain: {agree(ours_fp32):.2%})"
    )
    print(f"transformers pipeline (plain)   {len(texts) / plain_s:8.1f} predictions/s  ({plain_s:.1f} s)")
    print(
        f"ratio tuneops / plain           {plain_s / ours_s:8.1f}x   (target >= 3x; fp32 alone {plain_s / fp32_s:.1f}x)"
    )


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
