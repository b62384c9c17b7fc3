"""Generation training side by side with TRL's SFTTrainer: the same model, data, batch, optimizer and steps.

    python bench/train_vs_trl.py --quick    (~10-15 min on the 2-core CPU at load ~2; far longer when loaded)
    python bench/train_vs_trl.py --full     (more steps and repeats: for a GPU)
    python bench/train_speed.py --vs-trl --quick   (the same, from the training bench)

Models: GPT-2 small's architecture (GPT2LMHeadModel(GPT2Config()), random init: the same compute as the
pretrained weights) with GPT-2's tokenizer, and SmolLM2-135M-Instruct from ../shared's GGUF, loaded by tuneops'
own loader (tuneops.models.loading). Data: the tweets' span extraction as prompt/completion pairs,
"{text}\\nsentiment: {sentiment}\\n\\n###\\n\\n" -> " {selected_text}\\n", completion-only loss on both sides.
Sides, each in its own process (peak RSS is its own), interleaved round by round, medians over rounds:
  tuneops-packed     the train stage's build_trainer, params.yaml's `train` (packing: true, max_packed_length)
                     (needs ../shared's tweets and models; --models, --sides, --rounds narrow a run)
  tuneops-padded     the same with packing: false (each batch padded to its longest example)
  tuneops-one-row    the same with max_packed_length: null (the whole batch in one row, no padding at all)
  trl-bfd            trl.SFTTrainer, completion_only_loss, packing=True, packing_strategy="bfd" (padding-free
                     rows of max_length tokens); per_device_train_batch_size in rows, chosen so a step holds
                     about as many tokens as the others' batch of examples
  trl-padding-free   trl.SFTTrainer, completion_only_loss, padding_free=True: the same examples a step as
                     tuneops, flattened into one row
Both trainers get the same TrainingArguments (tuneops.training.trainer.training_arguments: params.yaml's optimizer,
learning rate, precision, activation checkpointing, threads). Supervised tokens are the completion tokens a loss
is taken on; real tokens all non-pad tokens. MFU = real tokens/s x FLOPs per token (6 x (non-embedding params +
the LM head's d x vocab) + 12 x layers x d x mean example length) over the matmul peak of the precision in use,
measured here in this run (bench/train_speed.py's matmul_flops). Loss curves go to bench/out/train_vs_trl.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
MODELS = {
    "gpt2": SHARED / "models" / "gpt2-tokenizer",
    "smollm2": SHARED / "models" / "smollm2-135m-instruct-gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf",
}
SIDES = ("tuneops-packed", "tuneops-padded", "tuneops-one-row", "trl-bfd", "trl-padding-free")
# examples a step, (warm-up, measured) optimizer steps, rounds; TRL's packed rows hold MAX_LENGTH tokens
PROFILES = {
    "smoke": {"batch": 4, "steps": (1, 1), "rounds": 1, "models": ("gpt2",)},  # does every side run at all
    "quick": {"batch": 8, "steps": (1, 3), "rounds": 2, "models": ("gpt2", "smollm2")},
    "full": {"batch": 32, "steps": (10, 50), "rounds": 3, "models": ("gpt2", "smollm2")},
}
MAX_LENGTH = 512
OUT_DIR = ROOT / "bench" / "out"


def pairs(n: int) -> Any:
    import pandas as pd

    df = pd.read_csv(TWEETS, dtype=str, keep_default_na=False)
    df = df[df["selected_text"].str.strip() != ""].sample(n=n, random_state=42).reset_index(drop=True)
    return df.assign(
        prompt=df["text"] + "\nsentiment: " + df["sentiment"] + "\n\n###\n\n",
        completion=" " + df["selected_text"] + "\n",
        source_text=df["text"],
    )[["prompt", "completion", "source_text"]]


def load(model: str) -> tuple[Any, Any]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from tuneops.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(MODELS[model]))
    if model == "gpt2":
        torch.manual_seed(0)
        return GPT2LMHeadModel(GPT2Config()), tokenizer
    return load_causal_lm(str(MODELS[model]), tokenizer), tokenizer


def mean_length(tokenizer: Any, df: Any) -> float:
    """Mean tokens of prompt + completion: the attention span of an example, packed or not."""
    return sum(len(ids) for ids in tokenizer((df["prompt"] + df["completion"]).tolist())["input_ids"]) / len(df)


class Counting:
    """Wraps a data collator: counts the supervised tokens (labels a loss is taken on; not a sequence's first
    token, which nothing predicts) and the real (non-pad) tokens of every batch it makes."""

    def __init__(self, collate: Any) -> None:
        self.collate, self.supervised, self.real = collate, 0, 0

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        keep = batch["labels"][:, 1:] != -100
        if "position_ids" in batch:
            keep &= batch["position_ids"][:, 1:] != 0
        self.supervised += int(keep.sum())
        self.real += sum(len(f["input_ids"]) for f in features)
        return batch


def train_params(batch: int, steps: int, side: str) -> Any:
    from tuneops.config.params import load_params

    train = load_params(ROOT / "params.yaml").train
    overrides = {"max_steps": steps, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
    args = train.args.model_copy(update={**overrides, "per_device_train_batch_size": batch, "logging_steps": 1})
    packing = {"packing": side != "tuneops-padded"}
    if side == "tuneops-one-row":
        packing["max_packed_length"] = None
    return train.model_copy(update={"args": args, **packing})


def trainer_for(side: str, model: Any, tokenizer: Any, df: Any, batch: int, steps: int, out: Path) -> Any:
    from datasets import Dataset

    from tuneops.data.tokenization import encode_pairs
    from tuneops.training.trainer import build_trainer, training_arguments

    train = train_params(batch, steps, side)
    if side.startswith("tuneops"):
        columns, _ = encode_pairs(df, tokenizer, 128)
        return build_trainer(model, tokenizer, {"train": Dataset.from_dict(columns)}, train, out, None, 0.0)
    from trl import SFTConfig, SFTTrainer

    settings = training_arguments(train, out, None)
    data = Dataset.from_pandas(df[["prompt", "completion"]])
    if side == "trl-bfd":
        rows = round(batch * (mean_length(tokenizer, df) + 1) / MAX_LENGTH)  # +1: the eos TRL appends
        settings["per_device_train_batch_size"] = max(1, rows)
        extra = {"packing": True, "packing_strategy": "bfd"}  # max_length: each packed row's tokens
    else:  # TRL enforces no max_length here: the examples are short tweets (tuneops drops none at 128 either)
        extra = {"padding_free": True, "max_length": None}
    config = SFTConfig(**{"max_length": MAX_LENGTH, **extra}, **settings, completion_only_loss=True)
    return SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)


def run_side(model_name: str, side: str, profile: str) -> dict:
    from transformers import TrainerCallback

    from tuneops.models.hardware import set_threads

    set_threads(None)
    spec = PROFILES[profile]
    warmup, measured = spec["steps"]
    model, tokenizer = load(model_name)
    df = pairs(spec["batch"] * (warmup + measured + 2))
    marks: dict[str, tuple[float, int, int]] = {}
    with tempfile.TemporaryDirectory() as out:
        trainer = trainer_for(side, model, tokenizer, df, spec["batch"], warmup + measured, Path(out))
        counter = trainer.data_collator = Counting(trainer.data_collator)

        class Marks(TrainerCallback):
            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                if state.global_step in (warmup, warmup + measured):
                    marks[str(state.global_step)] = (time.perf_counter(), counter.supervised, counter.real)

        trainer.add_callback(Marks())
        trainer.args.disable_tqdm = True
        trainer.train()
    (t0, s0, r0), (t1, s1, r1) = marks[str(warmup)], marks[str(warmup + measured)]
    config = model.config
    width, layers = config.hidden_size, config.num_hidden_layers
    embedding = model.get_input_embeddings().weight.numel()
    positions = config.n_positions * width if model_name == "gpt2" else 0
    head = width * config.vocab_size  # the LM head's matmul is real work, tied to the embedding or not
    non_embedding = sum(p.numel() for p in model.parameters()) - embedding - positions
    return {
        "model": model_name,
        "side": side,
        "supervised_per_s": (s1 - s0) / (t1 - t0),
        "real_per_s": (r1 - r0) / (t1 - t0),
        "seconds": t1 - t0,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
        "bf16": bool(trainer.args.bf16),
        "rows_per_step": trainer.args.per_device_train_batch_size,
        "flops_per_token": 6 * (non_embedding + head),
        "attention_per_token": 12 * layers * width,
        "mean_example": mean_length(tokenizer, df),
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "load": os.getloadavg(),
    }


def spawn(model: str, side: str, profile: str) -> dict:
    cmd = [sys.executable, __file__, "--run", model, side, f"--{profile}"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{model} {side} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mfu(r: dict, peak: float) -> float:
    per_token = r["flops_per_token"] + r["attention_per_token"] * r["mean_example"]
    return r["real_per_s"] * per_token / peak


def report(results: list[dict], peaks: dict[str, float]) -> None:
    print(f"matmul peak measured here: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    head = f"{'model':<9}{'side':<18}{'supervised tok/s':>17}{'real tok/s':>11}{'peak RSS':>10}{'MFU':>7}{'rows':>6}"
    print(head + "   (medians over rounds)")
    for model in dict.fromkeys(r["model"] for r in results):
        base = None
        for side in SIDES:
            runs = [r for r in results if r["model"] == model and r["side"] == side]
            if not runs:
                continue
            sup = statistics.median(r["supervised_per_s"] for r in runs)
            real = statistics.median(r["real_per_s"] for r in runs)
            rss = statistics.median(r["peak_rss_gib"] for r in runs)
            share = statistics.median(mfu(r, peaks["bf16" if r["bf16"] else "fp32"]) for r in runs)
            base = base or sup
            print(
                f"{model:<9}{side:<18}{sup:>17.1f}{real:>11.1f}{rss:>7.2f}GiB{share:>7.1%}{runs[0]['rows_per_step']:>6}"
                f"   x{sup / base:.2f} of the first row"
            )
    loads = [r["load"][0] for r in results]
    print(f"load average (1 min) at the end of each run: min {min(loads):.2f}, max {max(loads):.2f}")


def plot(results: list[dict]) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = list(dict.fromkeys(r["model"] for r in results))
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for side in SIDES:
            runs = [r for r in results if r["model"] == model and r["side"] == side]
            if runs:
                ax.plot(range(1, len(runs[0]["losses"]) + 1), runs[0]["losses"], label=side)
        ax.set(title=model, xlabel="optimizer step", ylabel="train loss (completion tokens)")
        ax.legend()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "train_vs_trl.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="profile", const="quick")
    group.add_argument("--full", action="store_const", dest="profile", const="full")
    group.add_argument("--smoke", action="store_const", dest="profile", const="smoke")
    parser.add_argument("--models", help="comma-separated: gpt2,smollm2 (default: both)")
    parser.add_argument("--sides", help=f"comma-separated, of {','.join(SIDES)} (default: all)")
    parser.add_argument("--rounds", type=int, help="rounds of every side (default: the profile's)")
    parser.add_argument("--run", nargs=2, metavar=("MODEL", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    profile = args.profile or "quick"
    if args.run:
        print(json.dumps(run_side(*args.run, profile)))
        return
    if not TWEETS.is_file() or not all(p.exists() for p in MODELS.values()):
        sys.exit(f"needs the tweets and the models under {SHARED}")
    from train_speed import matmul_flops

    peaks = {"fp32": matmul_flops(), "bf16": matmul_flops(dtype="bfloat16")}
    models = args.models.split(",") if args.models else PROFILES[profile]["models"]
    sides = args.sides.split(",") if args.sides else SIDES
    print(f"profile {profile}: {PROFILES[profile]}; load average {os.getloadavg()}", flush=True)
    results = []
    for _ in range(args.rounds or PROFILES[profile]["rounds"]):  # interleaved: each round runs every side once
        for model in models:
            for side in sides:
                results.append(spawn(model, side, profile))
                r = results[-1]
                print(f"  {model} {side}: {r['supervised_per_s']:.1f} supervised tok/s, load {r['load'][0]:.2f}")
    report(results, peaks)
    if path := plot(results):
        print(f"loss curves: {path}")


if __name__ == "__main__":
    main()
