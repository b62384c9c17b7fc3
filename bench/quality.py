"""The quality bar on real data: GPT-2 (4 layers, width 256, from config) on the full real train split.

    python bench/quality.py [--epochs 3] [--workdir DIR]

Runs the real pipeline (`dvc repro`) in a scratch copy of the project, with the real GPT-2 tokenizer, and
prints test accuracy against the majority-class rate (40.5%) and the wall time of each stage.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from tuneops.config.paths import METRICS_PATH, PARAMS_PATH, TOKENIZATION_PATH  # noqa: E402
from tuneops.config.records import Metrics, TokenizationReport  # noqa: E402
from tuneops.io.files import read_json  # noqa: E402 (after the path insert, as the other benches)


def make_model(model_dir: Path) -> None:
    """GPT-2's architecture at 4 layers x 256 with the real GPT-2 tokenizer (no pretrained weights exist here)."""
    from transformers import AutoTokenizer

    from tuneops.data.sample import build_gpt2

    tokenizer = AutoTokenizer.from_pretrained(SHARED / "models" / "gpt2-tokenizer")
    build_gpt2(model_dir, tokenizer, n_layer=4, n_embd=256, n_head=4)


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
    params = yaml.safe_load((work / PARAMS_PATH).read_text())
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
    (work / PARAMS_PATH).write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "evaluate"], cwd=work, capture_output=True, text=True
    )
    total = time.perf_counter() - start
    (work / "repro.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"dvc repro failed, see {work / 'repro.log'}")
    metrics = read_json(work / METRICS_PATH, Metrics)
    runtime = re.findall(r"'train_runtime': '([\d.]+)'", result.stdout + result.stderr)
    print(f"workdir             {work}")
    tokenization = read_json(work / TOKENIZATION_PATH, TokenizationReport)
    print(f"train rows          {tokenization.splits['train'].rows}")
    print(f"train runtime       {float(runtime[-1]) if runtime else float('nan'):.0f} s")
    print(f"pipeline wall time  {total:.0f} s")
    print(f"test accuracy       {metrics.test.accuracy:.4f}   (majority class: 0.4046)")
    print(f"test macro-F1       {metrics.test.macro_f1:.4f}")
    print(f"train-test gap      {metrics.gap.accuracy:+.4f}")


if __name__ == "__main__":
    main()
