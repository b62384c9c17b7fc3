"""Generation speed, side by side: `tuneops predict`'s generation (tuneops.inference.generation) vs transformers'
own `model.generate` on the same length-sorted, left-padded batches, and vs a plain transformers
pipeline("text-generation"), greedy, the same prompts and max_new_tokens, in one run.

    python bench/generate_speed.py [--n-prompts 64] [--max-new-tokens 32] [--batch-size 32] [--bf16]
    python bench/generate_speed.py --quick      (32 prompts, no pipeline: under a minute on 2 cores)

Model: GPT-2 small's architecture (transformers.GPT2Config() defaults, random init, seeded): the pretrained
weights cost the same compute. Tokenizer: the real GPT-2 tokenizer from ../shared/models/gpt2-tokenizer (else
the offline sample's). Prompts: real tweets from ../shared/data/tweet_sentiment_extraction/train.csv as the
span-extraction task formats them, "{text}\\nsentiment: {sentiment}\\n\\n###\\n\\n" (else the sample's texts).
Random weights almost never emit eos, so both sides generate max_new_tokens for (almost) every prompt.
tuneops: the model loaded as the registry's is (modeling.load_trained), batches sorted by length, left padding,
KV cache, fp32 (--bf16 adds a run of the model cast to bf16, as a server may where bf16 is native). Plain: the
pipeline's defaults (one prompt at a time), do_sample=False. transformers generate: the same model object,
`model.generate(do_sample=False)` per batch of the same length-sorted batches, so only the decode loop differs.
Throughput counts generated tokens (the eos included, as all count it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
SEPARATOR = "\n\n###\n\n"


def prompts(n: int) -> tuple[list[str], str]:
    """`n` prompts of the span-extraction task: real tweets when ../shared has them, else the sample's texts."""
    import pandas as pd

    if TWEETS.is_file():
        df = pd.read_csv(TWEETS, dtype=str, keep_default_na=False)
        source = f"real tweets ({TWEETS.name})"
    else:
        from tuneops.data.sample import sample_texts

        df, source = sample_texts(max(n, 30)), "the offline sample's texts"
    df = df[df["text"].str.strip() != ""].sample(n=n, random_state=42)
    return [
        f"{text.strip()}\nsentiment: {label}{SEPARATOR}"
        for text, label in zip(df["text"], df["sentiment"], strict=True)
    ], source


def save_model(model_dir: Path) -> str:
    """GPT-2 small's architecture, random init, with the real tokenizer (or the sample's): the bench's model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tuneops.models.loading import load_tokenizer

    if TOKENIZER.is_dir():
        tokenizer, which = load_tokenizer(str(TOKENIZER)), "the real GPT-2 tokenizer"
    else:
        from tuneops.data.sample import build_tokenizer, sample_texts

        tokenizer, which = build_tokenizer(sample_texts()["text"].tolist()), "the offline sample's tokenizer"
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return which


def run_tuneops(
    model_dir: str, texts: list[str], max_new: int, batch_size: int, bf16: bool
) -> tuple[list[str], int, float]:
    import torch

    from tuneops.inference.generation import generate
    from tuneops.models.loading import load_trained

    model, tokenizer = load_trained(model_dir)
    if bf16:  # cast once, as a server would: autocast would recast every weight at every step (no faster here)
        model = model.to(torch.bfloat16)
    generate(model, tokenizer, texts[:4], max_new_tokens=4, batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    out = generate(model, tokenizer, texts, max_new_tokens=max_new, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return [c.text for c in out], sum(c.completion_tokens for c in out), seconds


def run_hf_generate(model_dir: str, texts: list[str], max_new: int, batch_size: int) -> tuple[list[str], int, float]:
    """transformers' own generate on the batches tuneops makes (length-sorted, left-padded), greedy."""
    import torch

    from tuneops.models.batches import length_sorted_batches
    from tuneops.models.loading import load_trained

    model, tokenizer = load_trained(model_dir)
    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id

    def batch(rows: list[str], new: int) -> torch.Tensor:
        enc = tokenizer(rows, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=eos)
        return out[:, enc["input_ids"].shape[1] :]

    batch(texts[:4], 4)  # warm-up
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    out: list[str] = [""] * len(texts)
    tokens = 0
    start = time.perf_counter()
    for rows in length_sorted_batches(lengths, batch_size):
        for i, new in zip(rows, batch([texts[i] for i in rows], max_new).tolist(), strict=True):
            ended = new.index(eos) + 1 if eos in new else len(new)  # after eos, generate pads
            tokens += ended
            out[int(i)] = tokenizer.decode(new[:ended], skip_special_tokens=True)
    return out, tokens, time.perf_counter() - start


def run_hf_continuous(model_dir: str, texts: list[str], max_new: int) -> tuple[list[str], int, float]:
    """transformers' continuous batching (`model.generate_batch`: paged KV cache, a scheduler), greedy."""
    from transformers import GenerationConfig

    from tuneops.models.loading import load_trained

    model, tokenizer = load_trained(model_dir)
    eos = tokenizer.eos_token_id
    ids = tokenizer(texts)["input_ids"]

    def run(inputs: list[list[int]], new: int) -> list[list[int]]:
        config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=eos, pad_token_id=eos)
        out = model.generate_batch(inputs=inputs, generation_config=config)
        return [out[f"req_{i}"].generated_tokens for i in range(len(inputs))]

    run(ids[:4], 4)  # warm-up
    start = time.perf_counter()
    generated = run(ids, max_new)
    seconds = time.perf_counter() - start
    texts_out = [tokenizer.decode([t for t in new if t != eos], skip_special_tokens=True) for new in generated]
    return texts_out, sum(len(new) for new in generated), seconds


def run_pipeline(model_dir: str, texts: list[str], max_new: int) -> tuple[list[str], int, float]:
    from transformers import pipeline

    plain = pipeline("text-generation", model=model_dir, tokenizer=model_dir, device="cpu")
    tokenizer: Any = plain.tokenizer
    kwargs = {"max_new_tokens": max_new, "do_sample": False, "pad_token_id": tokenizer.eos_token_id}
    plain(texts[:2], **{**kwargs, "max_new_tokens": 4})  # warm-up
    start = time.perf_counter()
    # return_tensors: the token ids, to count them; the text is then decoded exactly as the pipeline decodes it
    out = plain(texts, return_tensors=True, **kwargs)
    seconds = time.perf_counter() - start
    texts_out, tokens = [], 0
    for prompt, [record] in zip(texts, out, strict=True):
        new = record["generated_token_ids"][len(tokenizer(prompt)["input_ids"]) :]
        texts_out.append(tokenizer.decode(new, skip_special_tokens=True))
        tokens += len(new)
    return texts_out, tokens, seconds


def main(
    n_prompts: int,
    max_new: int,
    batch_size: int,
    bf16: bool,
    pipeline: bool = True,
    repeats: int = 1,
    continuous: bool = False,
) -> None:
    from tuneops.models.hardware import native_bf16, set_threads

    threads = set_threads(None)
    load_before = os.getloadavg()[0]
    texts, source = prompts(n_prompts)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_name = save_model(Path(tmp))
        # alternated, best of `repeats`: other load on a shared machine comes and goes within a run
        ours, our_tokens, our_s = run_tuneops(tmp, texts, max_new, batch_size, bf16=False)
        hf, hf_tokens, hf_s = run_hf_generate(tmp, texts, max_new, batch_size)
        for _ in range(repeats - 1):
            our_s = min(our_s, run_tuneops(tmp, texts, max_new, batch_size, bf16=False)[2])
            hf_s = min(hf_s, run_hf_generate(tmp, texts, max_new, batch_size)[2])
        if continuous:
            cb, cb_tokens, cb_s = run_hf_continuous(tmp, texts, max_new)
        if bf16:
            ours_bf16, bf16_tokens, bf16_s = run_tuneops(tmp, texts, max_new, batch_size, bf16=True)
        if pipeline:
            theirs, their_tokens, their_s = run_pipeline(tmp, texts, max_new)
        else:
            theirs, their_tokens, their_s = hf, hf_tokens, hf_s

    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    same_hf = sum(a == b for a, b in zip(ours, hf, strict=True))
    print(f"model                           GPT-2 small architecture (random init), {tokenizer_name}")
    print(f"prompts                         {len(texts)} {source}; max_new_tokens {max_new}; {threads} threads")
    print(f"machine load (1-min average)    {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(
        f"tuneops generate (fp32)         {our_tokens / our_s:8.1f} tokens/s  ({our_tokens} tokens, {our_s:.1f} s, "
        f"batch_size {batch_size})"
    )
    if bf16:
        agree = sum(a == b for a, b in zip(ours_bf16, theirs, strict=True))
        print(
            f"tuneops generate (bf16 weights) {bf16_tokens / bf16_s:8.1f} tokens/s  ({bf16_s:.1f} s, native bf16: "
            f"{native_bf16()}; same text as plain: {agree}/{len(texts)})"
        )
    print(
        f"transformers generate (batched) {hf_tokens / hf_s:8.1f} tokens/s  ({hf_tokens} tokens, {hf_s:.1f} s, "
        f"the same batches; same text as tuneops: {same_hf}/{len(texts)})"
    )
    print(f"ratio tuneops / generate        {(our_tokens / our_s) / (hf_tokens / hf_s):8.2f}x")
    if continuous:
        agree = sum(a == b for a, b in zip(ours, cb, strict=True))
        print(
            f"transformers generate_batch     {cb_tokens / cb_s:8.1f} tokens/s  ({cb_tokens} tokens, {cb_s:.1f} s, "
            f"continuous batching; same text as tuneops: {agree}/{len(texts)})"
        )
    if not pipeline:
        return
    print(
        f"transformers pipeline (plain)   {their_tokens / their_s:8.1f} tokens/s  "
        f"({their_tokens} tokens, {their_s:.1f} s)"
    )
    ratio = (our_tokens / our_s) / (their_tokens / their_s)
    print(f"ratio tuneops / plain           {ratio:8.1f}x   (target >= 3x)")
    print(
        f"greedy outputs identical        {same == len(texts)}  ({same}/{len(texts)} prompts; "
        f"tokens {our_tokens} vs {their_tokens})"
    )
    if same != len(texts):
        first = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
        print(f"first difference, prompt {first}: tuneops {ours[first]!r}\n{'':32}plain   {theirs[first]!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--bf16", action="store_true", help="also time the model cast to bf16 (a server's option where native)"
    )
    parser.add_argument("--quick", action="store_true", help="32 prompts, tuneops vs generate only (no pipeline)")
    parser.add_argument("--continuous", action="store_true", help="also transformers' continuous batching")
    parser.add_argument("--repeats", type=int, default=1, help="tuneops and generate alternated, best time of each")
    args = parser.parse_args()
    n_prompts = 32 if args.quick else args.n_prompts
    main(
        n_prompts,
        args.max_new_tokens,
        args.batch_size,
        args.bf16,
        pipeline=not args.quick,
        repeats=args.repeats,
        continuous=args.continuous,
    )
