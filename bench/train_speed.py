"""Training speed, side by side: (a) the seed recipe vs (b) the project's `train` stage, on this CPU.

    python bench/train_speed.py [--also fp32,no-checkpointing,compile]   (needs ../shared; minutes on 2 cores)
    python bench/train_speed.py --vs-trl [--quick | --full]   generation training beside TRL's SFTTrainer, packed
                                                             and not (bench/train_vs_trl.py)

Model: GPT2ForSequenceClassification(GPT2Config(num_labels=3)), random init (the pretrained weights cost the
same compute). Data: 1,000 real tweets, the real GPT-2 tokenizer.
(a) the seed tutorial: padding="max_length" (1,024 tokens), per_device_train_batch_size=1,
    gradient_accumulation_steps=4, through the transformers Trainer.
(b) tuneops.training.build_trainer with params.yaml's `train` section and tuneops.tokenization.encode: the stage's code.
Each side runs in its own process (so peak RSS is its own), warms up, then is timed over a fixed number of
optimizer steps. Throughput counts real (non-pad) tokens. MFU of (b) = 6 x non-embedding params x real
tokens/s over a dense fp32 matmul FLOP/s measured here, in this run.
On a CUDA GPU: the same two sides on the GPU (the stage's own device settings: bf16, or fp16 with loss scaling
where the GPU has no bf16; pinned loading), with samples/s, tokens/s, peak GPU memory
(torch.cuda.max_memory_allocated) and MFU against the GPU's dense bf16 peak (GPU_BF16_PEAK_TFLOPS, by name;
--peak-tflops for another GPU), counting 6 x params + attention FLOPs per token (flops_per_token).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
# (warm-up, measured) optimizer steps: the seed takes ~25 s a step here, the stage ~1-2 s.
STEPS = {"a": (1, 3), "b": (3, 20)}
# Levers measured beside (b): each is (b) with these `train` params or training arguments changed.
PRESETS = {
    "fp32": {"bf16": False},
    "no-checkpointing": {"activation_checkpointing": False},
    "no-pad-multiple": {"pad_to_multiple_of": None},
    "no-release": {"release_freed_memory": False},
    "checkpoint-every-2": {"activation_checkpointing_kwargs": {"every_n_layers": 2}},
    "compile": {"torch_compile": True},
    "batch64": {"per_device_train_batch_size": 64},
    "batch16x2": {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 2},
}


# Dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, TFLOP/s, matched in order against
# torch.cuda.get_device_name() ("NVIDIA H100 80GB HBM3" is the SXM part; the PCIe one is slower).
GPU_BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def gpu_bf16_peak(device_name: str) -> float | None:
    """The GPU's dense bf16 FLOP/s by its name, or None for one the table does not know."""
    return next((tflops * 1e12 for key, tflops in GPU_BF16_PEAK_TFLOPS if key in device_name), None)


def flops_per_token(non_embedding_params: int, n_layer: int, d_model: int, seq_len: float) -> float:
    """Training FLOPs per token (PaLM's accounting): 6N for the weights' matmuls (forward 2N, backward 4N) plus
    12 x layers x width x sequence length for attention's scores and weighted sum. Activation checkpointing's
    recomputed forward is not counted: that is MFU (useful work), not hardware utilisation."""
    return 6 * non_embedding_params + 12 * n_layer * d_model * seq_len


def mfu(tokens_per_s: float, per_token: float, peak_flops: float) -> float:
    return tokens_per_s * per_token / peak_flops


def tweets(n: int = 1000) -> pd.DataFrame:
    import pandas as pd

    df = pd.read_csv(TWEETS, dtype=str, keep_default_na=False)
    df = df[df["text"].str.strip() != ""].sample(n=n, random_state=42)
    labels = ["negative", "neutral", "positive"]
    return df.assign(label=df["sentiment"].map(labels.index))[["text", "label"]].reset_index(drop=True)


def matmul_flops(n: int = 3072, reps: int = 8, dtype: str = "float32") -> float:
    """Dense matmul FLOP/s on this machine, with the threads training uses (best of 3)."""
    import torch

    from tuneops.models.hardware import set_threads

    set_threads(None)
    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


class Timer:
    """A TrainerCallback that notes the clock and tokens seen after the warm-up and at the end."""

    def __init__(self, warmup: int) -> None:
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step == warmup:
                    timer.start, timer.tokens0 = time.perf_counter(), state.num_input_tokens_seen
                timer.end, timer.tokens1 = time.perf_counter(), state.num_input_tokens_seen

        self.callback = _CB()


def gpt2_small(tokenizer: Any) -> Any:
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(num_labels=3, pad_token_id=tokenizer.pad_token_id))


def seed_trainer(model: Any, tokenizer: Any, df: pd.DataFrame, out: Path, steps: int, **hyper: Any) -> Any:
    """The seed tutorial's recipe, as it wrote it (`hyper`: the learning-equivalence test aligns these)."""
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    enc = tokenizer(df["text"].tolist(), padding="max_length", max_length=1024, truncation=True)
    data = Dataset.from_dict({**enc, "labels": df["label"].tolist()})
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=4,
        max_steps=steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),  # the seed ran where it was: on a GPU, there
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        **hyper,
    )
    return Trainer(model=model, args=args, train_dataset=data)


def stage_trainer(
    model: Any, tokenizer: Any, df: pd.DataFrame, out: Path, steps: int, overrides: dict | None = None
) -> Any:
    """The train stage's own code path and params.yaml configuration; only the run length is the bench's."""
    from datasets import Dataset

    from tuneops.config.params import TrainingArgs, load_params
    from tuneops.config.paths import PARAMS_PATH
    from tuneops.data.tokenization import encode
    from tuneops.training.trainer import build_trainer

    params = load_params(ROOT / PARAMS_PATH)
    columns, _ = encode(df, tokenizer, params.tokenize.max_length)
    overrides = overrides or {}
    args = params.train.args.model_copy(
        update={
            "max_steps": steps,
            "eval_strategy": "no",
            "save_strategy": "no",
            "load_best_model_at_end": False,
            **{k: v for k, v in overrides.items() if k in TrainingArgs.model_fields},
        }
    )
    train = params.train.model_copy(update={k: v for k, v in overrides.items() if k not in TrainingArgs.model_fields})
    trainer = build_trainer(
        model, tokenizer, {"train": Dataset.from_dict(columns)}, train.model_copy(update={"args": args}), out
    )
    trainer.args.include_num_input_tokens_seen = "non_padding"
    trainer.args.disable_tqdm = True
    return trainer


def run_side(side: str, overrides: dict | None = None) -> dict:
    """One side in this process: returns throughput and this process's peak RSS."""
    from tuneops.models.hardware import set_threads
    from tuneops.models.loading import load_tokenizer

    set_threads(None)
    tokenizer = load_tokenizer(str(TOKENIZER))
    df = tweets()
    warmup, measured = STEPS[side]
    with tempfile.TemporaryDirectory() as out:
        model = gpt2_small(tokenizer)
        if side == "a":
            trainer = seed_trainer(model, tokenizer, df, Path(out), warmup + measured)
        else:
            trainer = stage_trainer(model, tokenizer, df, Path(out), warmup + measured, overrides)
        timer = Timer(warmup)
        trainer.add_callback(timer.callback)
        trainer.train()
    args = trainer.args
    samples = measured * args.per_device_train_batch_size * args.gradient_accumulation_steps
    seconds = timer.end - timer.start
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    non_embedding = sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith(("transformer.wte", "transformer.wpe"))
    )
    return {
        "side": side,
        "samples_per_s": samples / seconds,
        "tokens_per_s": (timer.tokens1 - timer.tokens0) / seconds,
        "seconds": seconds,
        "samples": samples,
        "batch": f"{args.per_device_train_batch_size}x{args.gradient_accumulation_steps}",
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,  # ru_maxrss is in KiB
        "non_embedding_params": non_embedding,
        "bf16": bool(args.bf16),
        "last_loss": losses[-1] if losses else None,
        "n_layer": model.config.n_layer,
        "d_model": model.config.n_embd,
        **gpu_numbers(args),
    }


def gpu_numbers(args: Any) -> dict:
    """Where it ran on a GPU: which, its peak memory, and the precision the stage chose for it."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "device": torch.cuda.get_device_name(),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 1024**3,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }


def gpu_report(a: dict, b: dict, extra: dict[str, dict], peak_tflops: float | None) -> None:
    """The GPU table: samples/s, tokens/s, peak GPU memory and MFU against the GPU's bf16 peak."""
    peak = peak_tflops * 1e12 if peak_tflops else gpu_bf16_peak(b["device"])
    said = f"{peak / 1e12:.0f} TFLOP/s dense bf16" if peak else "unknown peak (pass --peak-tflops)"
    print(f"GPU: {b['device']} ({said})")
    print(f"{'side':<34}{'batch':>7}{'prec':>6}{'samples/s':>11}{'tokens/s':>10}{'peak GPU':>11}{'MFU':>7}")
    rows = [("(a) seed: pad 1024, bs 1 x acc 4", a), ("(b) train stage (params.yaml)", b)]
    rows += [(f"(b) with {name}", r) for name, r in extra.items()]
    for name, r in rows:
        per_token = flops_per_token(
            r["non_embedding_params"], r["n_layer"], r["d_model"], r["tokens_per_s"] / r["samples_per_s"]
        )
        share = f"{mfu(r['tokens_per_s'], per_token, peak):>7.1%}" if peak else f"{'?':>7}"
        print(
            f"{name:<34}{r['batch']:>7}{r['precision']:>6}{r['samples_per_s']:>11.1f}{r['tokens_per_s']:>10.0f}"
            f"{r['peak_gpu_gib']:>8.2f}GiB{share}"
        )
    print(f"ratio b/a (samples/s): {b['samples_per_s'] / a['samples_per_s']:.1f}x")


def spawn(side: str, overrides: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, "--side", side] + [
        f"--set={k}={json.dumps(v)}" for k, v in (overrides or {}).items()
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"side {side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(a: dict, b: dict, peak: float, peak_bf16: float, extra: dict[str, dict]) -> None:
    def mfu(r: dict) -> float:
        return 6 * r["non_embedding_params"] * r["tokens_per_s"] / peak

    print(f"dense fp32 matmul on this machine: {peak / 1e9:.0f} GFLOP/s")
    print(f"{'side':<34}{'batch':>7}{'samples/s':>11}{'tokens/s':>10}{'peak RSS':>11}{'MFU':>7}")
    rows = [("(a) seed: pad 1024, bs 1 x acc 4", a), ("(b) train stage (params.yaml)", b)]
    rows += [(f"(b) with {name}", r) for name, r in extra.items()]
    for name, r in rows:
        print(
            f"{name:<34}{r['batch']:>7}{r['samples_per_s']:>11.2f}{r['tokens_per_s']:>10.0f}"
            f"{r['peak_rss_gib']:>8.2f}GiB{mfu(r):>7.0%}"
        )
    print(f"ratio b/a (samples/s): {b['samples_per_s'] / a['samples_per_s']:.1f}x   (target >= 60x)")
    print(f"MFU of (b): {mfu(b):.1%} of the measured fp32 matmul rate   (target >= 55%)")
    if b["bf16"]:
        print(
            f"  (b) runs bf16 matmuls; against this CPU's bf16 matmul rate ({peak_bf16 / 1e9:.0f} GFLOP/s, AMX) "
            f"its MFU is {mfu(b) * peak / peak_bf16:.1%}"
        )
    gib = b["peak_rss_gib"]
    print(f"peak RSS of (b): {gib:.2f} GiB = {gib * 1.073741824:.2f} GB   (target <= 3 GB)")


def main() -> None:
    if "--vs-trl" in sys.argv:  # task: generation, side by side with TRL: its own bench, with its own options
        from train_vs_trl import main as vs_trl

        vs_trl([a for a in sys.argv[1:] if a != "--vs-trl"])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--also", default="", help=f"extra (b) runs, comma-separated: {', '.join(PRESETS)}")
    parser.add_argument("--side", choices=["a", "b"], help=argparse.SUPPRESS)
    parser.add_argument("--peak-tflops", type=float, help="on a GPU the table does not know: its dense bf16 TFLOP/s")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ARG=VALUE",
        help="with --side b: try a `train` param or training argument (e.g. per_device_train_batch_size=64)",
    )
    args = parser.parse_args()
    if args.side:
        overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
        print(json.dumps(run_side(args.side, overrides)))
        return
    if not (TWEETS.is_file() and TOKENIZER.is_dir()):
        sys.exit(f"needs the real data and tokenizer under {SHARED}")
    import torch

    if torch.cuda.is_available():
        a, b = spawn("a"), spawn("b")
        extra = {name: spawn("b", PRESETS[name]) for name in args.also.split(",") if name}
        gpu_report(a, b, extra, args.peak_tflops)
        return
    peak, peak_bf16 = matmul_flops(), matmul_flops(dtype="bfloat16")
    a, b = spawn("a"), spawn("b")
    extra = {name: spawn("b", PRESETS[name]) for name in args.also.split(",") if name}
    report(a, b, peak, peak_bf16, extra)


if __name__ == "__main__":
    main()
