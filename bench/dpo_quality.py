"""DPO on a real pretrained model and real data, through the pipeline itself: held-out preference accuracy of
SmolLM2-135M-Instruct before (its base) and after DPO with LoRA.

    python bench/dpo_quality.py            (needs ../shared; the CPU profile: 30 steps, ~15-20 minutes on 2 cores)
    python bench/dpo_quality.py --full     (a GPU's: 10x the pairs, a whole epoch)

The preferences come from Kaggle's Tweet Sentiment Extraction (train.csv): the user asks for the words of the
tweet that carry its (given) sentiment; the preferred reply is the annotated `selected_text`, the non-preferred a
wrong span: the whole tweet, or the span of another tweet with the same sentiment (alternately). Tweets whose span
is the whole tweet (most neutral ones) are left out: nothing to tell apart. The file is OpenAI's preference JSONL;
a scratch workspace (a copy of this project's pipeline) runs `dvc repro evaluate` on it with model.name the GGUF
(transformers dequantises it) and train.objective dpo, method lora. Prints the base's and the candidate's held-out
preference accuracy (test pairs whose preferred reply gets the higher summed log-probability), the generated
spans' Jaccard for both, the steps, the train stage's wall time, and the load average around it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from generation_quality import repro  # bench/ is on the path of `python bench/dpo_quality.py`

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction" / "train.csv"
SMOLLM2 = SHARED / "models" / "smollm2-135m-instruct-gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PIPELINE = ("dvc.yaml", "params.yaml", "tasks", "tuneops")
# pairs written; optimizer steps (None: one epoch); pairs a step; learning rate; held-out prompts generated for.
# cpu: ~15 s a step on 2 cores (each step runs the policy on both replies of 8 pairs, and the reference too)
PROFILES = {
    "cpu": {"pairs": 400, "max_steps": 30, "batch": 8, "learning_rate": 1.0e-3, "generated": 24},
    "full": {"pairs": 4000, "max_steps": None, "batch": 32, "learning_rate": 5.0e-4, "generated": None},
}


def preference_lines(n: int, seed: int = 0) -> list[dict]:
    import pandas as pd

    tweets = pd.read_csv(TWEETS, keep_default_na=False)
    tweets = tweets[
        (tweets["selected_text"].str.strip() != "")
        & (tweets["text"].str.strip() != tweets["selected_text"].str.strip())
    ]
    tweets = tweets.sample(n=min(n, len(tweets)), random_state=seed).reset_index(drop=True)
    rng = random.Random(seed)
    by_sentiment = {s: list(g["selected_text"].str.strip()) for s, g in tweets.groupby("sentiment")}
    lines = []
    for i, row in enumerate(tweets.to_dict("records")):
        span, text = row["selected_text"].strip(), row["text"].strip()
        wrong = text if i % 2 == 0 else rng.choice([s for s in by_sentiment[row["sentiment"]] if s != span] or [text])
        ask = f"Quote the words of this tweet that carry its {row['sentiment']} sentiment, and nothing else.\n\n{text}"
        lines.append(
            {
                "input": {"messages": [{"role": "user", "content": ask}]},
                "preferred_output": [{"role": "assistant", "content": span}],
                "non_preferred_output": [{"role": "assistant", "content": wrong}],
            }
        )
    return lines


def workspace(dest: Path, profile: dict) -> Path:
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    for rel in PIPELINE:
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / rel)
    source = dest / "data" / "raw" / "preferences.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in preference_lines(profile["pairs"])))
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["task"] = "generation"
    params["data"].update(source=str(source), max_train_samples=None, max_eval_samples=None, test_fraction=0.2)
    params["model"]["name"] = str(SMOLLM2)
    params["tokenize"]["max_length"] = 256
    params["train"].update(objective="dpo", method="lora")
    args = params["train"]["args"]
    steps = profile["max_steps"] or -1
    args.update(
        max_steps=steps,
        num_train_epochs=1,
        learning_rate=profile["learning_rate"],
        per_device_train_batch_size=profile["batch"],
    )
    args.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False, activation_checkpointing=False)
    args.update(logging_steps=5, warmup_steps=0.1)
    params["generation"]["max_new_tokens"] = 32
    params["evaluate"]["generation"]["sample_size"] = profile["generated"]
    params["evaluate"]["batch_size"] = 16
    params["flow"]["push"] = False
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the GPU profile: 4,000 pairs, one epoch")
    parser.add_argument("--pairs", type=int, help="preference pairs written (before the carve)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps")
    parser.add_argument("--keep", type=Path, help="keep the workspace here (default: a temporary folder)")
    args = parser.parse_args()
    if not (TWEETS.is_file() and SMOLLM2.is_file()):
        raise SystemExit(f"{TWEETS} or {SMOLLM2}: not found (this benchmark needs ../shared)")
    profile = dict(PROFILES["full" if args.full else "cpu"])
    profile.update({k: v for k, v in (("pairs", args.pairs), ("max_steps", args.max_steps)) if v is not None})
    ws = workspace(args.keep or Path(tempfile.mkdtemp(prefix="tuneops-dpo-")), profile)
    start = time.perf_counter()
    repro(ws, "tokenize")
    load_before = os.getloadavg()
    train_s = repro(ws, "train")
    load_after = os.getloadavg()
    repro(ws, "evaluate")
    total_s = time.perf_counter() - start
    m = json.loads((ws / "reports" / "metrics.json").read_text())
    gate = json.loads((ws / "reports" / "gate.json").read_text())
    check = next(c for c in gate["checks"] if c["check"] == "preference_beats_base")
    steps = [json.loads(line) for line in (ws / "models" / "checkpoints" / "steps.jsonl").read_text().splitlines()]
    done = max(s["step"] for s in steps)
    tokens = json.loads((ws / "reports" / "tokenization.json").read_text())["splits"]
    print(
        f"\nSmolLM2-135M-Instruct (Q4_1 GGUF, dequantised), DPO + LoRA, beta "
        f"{yaml.safe_load((ws / 'params.yaml').read_text())['train']['dpo']['beta']}; "
        f"{tokens['train']['rows']} train / {tokens['test']['rows']} test pairs; {done} steps of "
        f"{profile['batch']} pairs"
    )
    print(f"{'model':10} {'pref. acc':>9} {'jaccard':>8} {'generated':>9}")
    for who, s in (("base", m["base"]), ("candidate", m["test"])):
        print(f"{who:10} {s['preference_accuracy']:9.4f} {s['jaccard']:8.4f} {s['generated']:9d}")
    print(f"gate preference_beats_base: {'passed' if check['passed'] else 'FAILED'}")
    print(
        f"train stage {train_s:.0f} s ({train_s / done:.1f} s a step), everything {total_s:.0f} s; load average "
        f"{load_before[0]:.2f} before training, {load_after[0]:.2f} after ({os.cpu_count()} CPUs); workspace {ws}"
    )


if __name__ == "__main__":
    main()
