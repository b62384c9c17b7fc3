"""Stage `ingest`: any source -> the canonical splits.

    python -m tasks.ingest            (dvc.yaml runs it)

params: data.source, data.revision, data.text_column, data.label_column, data.labels,
        data.validation_fraction, data.test_fraction, data.seed
reads:  data.source (a Hub dataset id, a file, or a folder of split files; data/raw is where DVC tracks them)
writes: data/interim ({train,validation,test}.parquet and manifest.json)

Maps the source onto `text: str, label: int, label_text: str`, keeps the source's own splits and carves a
stratified validation (and, for a single file, test) split from train. The source is only read; subsets for
training are taken later, at tokenize.
"""

from __future__ import annotations

from pathlib import Path

from tuneops.params import DataParams, load_params
from tuneops.paths import INTERIM_DIR
from tuneops.records import Manifest
from tuneops.runner import run_main, stage_parser
from tuneops.sources import load_source
from tuneops.splits import make_splits, to_canonical, write_splits


def ingest(data: DataParams, interim_dir: Path = INTERIM_DIR) -> Manifest:
    raw = load_source(data.source, data.revision)
    frames = {split: to_canonical(df, origin, data) for split, (df, origin) in raw.items()}
    return write_splits(make_splits(frames, data), data, interim_dir)


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out-dir", type=Path, default=INTERIM_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    ingest(load_params(args.params).data, args.out_dir)


if __name__ == "__main__":
    run_main(main)
