"""Generation on the real tweets, through the pipeline itself: span extraction, classification as completion,
and the classification head on the same split.

    python bench/generation_quality.py [--epochs 1] [--layers 4] [--width 256]   (needs ../shared; long on a CPU)

Each task runs `dvc repro evaluate` in a scratch workspace (a copy of this project's pipeline) on Kaggle's
train.csv (27,481 rows; test and validation carved from it by the stage's own carve), with a GPT-2 built from
config (no pretrained weights can be had here) and the real GPT-2 tokenizer:
  span   task: generation, prompt "{text}\\nsentiment: {sentiment}\\n\\n###\\n\\n", completion " {selected_text}\\n";
         gate metric word-level Jaccard (Kaggle's); copying the whole tweet scores 0.589 on this file.
  label  task: generation, prompt "{text}\\n\\n###\\n\\n", completion " {sentiment}\\n"; exact match = accuracy.
  head   task: classification, GPT2ForSequenceClassification on the same rows (the carve stratifies label-like
         completions as it does labels, so `label` and `head` test on the same tweets).
Prints one row per task: the gate metric and its trivial baselines, exact match, perplexity, the loss gap, and
the wall time of the train stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
PIPELINE = ("dvc.yaml", "params.yaml", "tasks", "tuneops")
TASKS = {
    "span": {
        "task": "generation",
        "generation": {
            "prompt_template": "{text}\nsentiment: {sentiment}\n\n###\n\n",
            "completion_template": " {selected_text}\n",
        },
        "metric": "jaccard",
    },
    "label": {
        "task": "generation",
        "generation": {"prompt_template": "{text}\n\n###\n\n", "completion_template": " {sentiment}\n"},
        "metric": "exact_match",
    },
    "head": {"task": "classification", "generation": {}, "metric": "accuracy"},
}


def build_model(dest: Path, layers: int, width: int) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=max(width // 64, 1), n_positions=256)
    GPT2LMHeadModel(config).save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest


def workspace(dest: Path, name: str, model_dir: Path, epochs: float, max_train: int | None) -> Path:
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)  # ingest's dep: the data DVC tracks
    for rel in PIPELINE:
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / rel)
    spec = TASKS[name]
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["task"] = spec["task"]
    params["data"].update(source=str(TWEETS), label_column="sentiment", max_train_samples=None, max_eval_samples=None)
    params["model"]["name"] = str(model_dir)
    params["generation"].update(spec["generation"], max_new_tokens=40)
    params["tokenize"]["max_length"] = 160
    args = params["train"]["args"]
    args.update(num_train_epochs=epochs, learning_rate=1.0e-3, eval_strategy="no", save_strategy="no")
    args.update(load_best_model_at_end=False, activation_checkpointing=False, per_device_train_batch_size=32)
    params["evaluate"]["generation"].update(
        primary_metric=spec["metric"] if spec["metric"] != "accuracy" else "jaccard"
    )
    params["evaluate"]["generation"]["sample_size"] = None
    params["validate"]["max_empty_text_rate"]["severity"] = "warning"
    params["flow"]["push"] = False
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def repro(ws: Path, stage: str) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", stage], cwd=ws, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"{ws}: dvc repro {stage} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def row(name: str, ws: Path, train_s: float) -> dict:
    m = json.loads((ws / "reports" / "metrics.json").read_text())
    spec = TASKS[name]
    if spec["task"] == "classification":
        return {
            "task": name,
            "metric": "accuracy",
            "test": m["test"]["accuracy"],
            "baselines": "",
            "exact_match": m["test"]["accuracy"],
            "perplexity": "",
            "loss_gap": m["gap"]["loss"],
            "rows": sum(m["test"]["per_class"][c]["support"] for c in m["test"]["per_class"]),
            "train_s": train_s,
        }
    metric = spec["metric"]
    base = ", ".join(f"{k} {v[metric]:.3f}" for k, v in m["baselines"].items())
    return {
        "task": name,
        "metric": metric,
        "test": m["test"][metric],
        "baselines": base,
        "exact_match": m["test"]["exact_match"],
        "perplexity": m["test"]["perplexity"],
        "loss_gap": m["gap"]["loss"],
        "rows": m["test"]["generated"],
        "train_s": train_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--tasks", default="span,label,head", help="comma-separated: span, label, head")
    parser.add_argument("--max-train", type=int, help="train on this many rows (seeded; default: all ~22k)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces here (default: a temporary folder)")
    args = parser.parse_args()
    if not TWEETS.is_file():
        raise SystemExit(f"{TWEETS}: not found (this benchmark needs ../shared)")
    root = args.keep or Path(tempfile.mkdtemp(prefix="tuneops-genq-"))
    model_dir = build_model(root / "model", args.layers, args.width)
    rows = []
    for name in args.tasks.split(","):
        ws = workspace(root / name, name, model_dir, args.epochs, args.max_train)
        repro(ws, "tokenize")
        train_s = repro(ws, "train")
        repro(ws, "evaluate")
        rows.append(row(name, ws, train_s))
        print(json.dumps(rows[-1]), flush=True)
    rows_used = args.max_train or "all"
    print(
        f"\nGPT-2 {args.layers}x{args.width} from config, real tokenizer, {args.epochs:g} epoch(s) on {rows_used} rows"
    )
    head = f"{'task':6} {'metric':12} {'test':>7} {'exact':>7} {'ppl':>8} {'loss gap':>9} {'rows':>6}"
    print(f"{head} {'train s':>8}  baselines")
    for r in rows:
        ppl = f"{r['perplexity']:.2f}" if r["perplexity"] != "" else ""
        print(
            f"{r['task']:6} {r['metric']:12} {r['test']:7.4f} {r['exact_match']:7.4f} {ppl:>8} "
            f"{r['loss_gap']:9.4f} {r['rows']:6} {r['train_s']:8.0f}  {r['baselines']}"
        )


if __name__ == "__main__":
    main()
