"""The quality bar on real data: GPT-2 (4 layers, width 256, from config) on the full real train split.

    python bench/quality.py [--epochs 3] [--workdir DIR]

Runs the real pipeline (`dvc repro`) in a scratch copy of the project, with the real GPT-2 tokenizer, and
prints test accuracy against the majority-class rate (40.5%) and the wall time of each stage.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def make_model(model_dir: Path) -> None:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=256)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer").save_pretrained(model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tuneops-quality-"))
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    for rel in files.stdout.split():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes((ROOT / rel).read_bytes())
    make_model(work / "gpt2-4x256")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(
        source=str(SHARED / "data" / "tweet_sentiment_extraction"),
        label_column="sentiment",
        max_train_samples=None,
        max_eval_samples=None,
    )
    params["model"]["name"] = str(work / "gpt2-4x256")
    # a randomly initialised model needs a larger step than fine-tuning a pretrained one
    params["train"]["args"].update(num_train_epochs=args.epochs, learning_rate=5.0e-4, logging_steps=50)
    params["evaluate"].update(min_accuracy=0.45)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "evaluate"], cwd=work, capture_output=True, text=True
    )
    total = time.perf_counter() - start
    (work / "repro.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"dvc repro failed, see {work / 'repro.log'}")
    metrics = json.loads((work / "reports" / "metrics.json").read_text())
    runtime = re.findall(r"'train_runtime': '([\d.]+)'", result.stdout + result.stderr)
    print(f"workdir             {work}")
    tokenization = json.loads((work / "reports" / "tokenization.json").read_text())
    print(f"train rows          {tokenization['splits']['train']['rows']}")
    print(f"train runtime       {float(runtime[-1]) if runtime else float('nan'):.0f} s")
    print(f"pipeline wall time  {total:.0f} s")
    print(f"test accuracy       {metrics['test']['accuracy']:.4f}   (majority class: 0.4046)")
    print(f"test macro-F1       {metrics['test']['macro_f1']:.4f}")
    print(f"train-test gap      {metrics['gap']['accuracy']:+.4f}")


if __name__ == "__main__":
    main()
