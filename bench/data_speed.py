"""Wall time of `ingest` + `validate` on the full real tweets, process start-up included.

python bench/data_speed.py        (needs ../shared; target: under 15 s together on 2 cores)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tuneops.config.paths import PARAMS_PATH

ROOT = Path(__file__).resolve().parents[1]
TWEETS = ROOT.parent / "shared" / "data" / "tweet_sentiment_extraction"


def main() -> None:
    if not TWEETS.is_dir():
        sys.exit(f"needs the real data at {TWEETS}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = yaml.safe_load((ROOT / PARAMS_PATH).read_text())
        params["data"].update(source=str(TWEETS), label_column="sentiment")
        (work / PARAMS_PATH).write_text(yaml.safe_dump(params))
        for package in ("tasks", "tuneops"):
            shutil.copytree(ROOT / package, work / package)
        total = 0.0
        for stage in ("ingest", "validate"):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", f"tasks.{stage}"], cwd=work, check=True, capture_output=True)
            took = time.perf_counter() - start
            total += took
            print(f"{stage:<10}{took:6.2f} s")
        print(f"{'together':<10}{total:6.2f} s   (target < 15 s)")


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
