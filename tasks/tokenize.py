"""Stage `tokenize`: validated splits -> token ids.

    python -m tasks.tokenize          (dvc.yaml runs it)

params: task, data.max_train_samples, data.max_eval_samples, data.seed, model, tokenize, train.objective
reads:  data/interim, reports/data_quality_verdict.json (no passing verdict, no tokens)
writes: data/processed (datasets `save_to_disk`), reports/tokenization.json (token lengths per split: mean,
        p50, p95, max, and the share over tokenize.max_length)

Pads nothing. Takes the seeded subsets (`data.max_train_samples`, `data.max_eval_samples`) as the seed tutorial
does, and drops empty texts (empty completions, for generation). Classification truncates texts to
`tokenize.max_length`; generation makes prompt + completion + eos with `prompt_length` (where the loss starts)
and drops the pairs longer than `tokenize.max_length`. train.objective: dpo adds prompt + rejected
(`rejected_input_ids`) and the `rejected` text, dropping a pair when either side is too long: TRL's DPOTrainer
takes no pre-tokenized data (1.16), so train gives it the texts and it tokenizes them again the same way; the ids
here are what evaluate scores with.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuneops.config.errors import UserError
from tuneops.config.params import Params, load_params
from tuneops.config.paths import DATA_VERDICT_PATH, INTERIM_DIR, PROCESSED_DIR, SPLITS, TOKENIZATION_PATH
from tuneops.config.records import DataVerdict, TokenizationReport
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.splits import read_splits
from tuneops.data.tokenization import encode, encode_pairs, encode_preferences, subset, usable
from tuneops.io.files import read_json, staged_dir, write_json
from tuneops.models.loading import load_tokenizer, max_positions

log = logging.getLogger("tuneops.tokenize")


def tokenize(
    params: Params,
    interim_dir: Path = INTERIM_DIR,
    verdict_path: Path = DATA_VERDICT_PATH,
    processed_dir: Path = PROCESSED_DIR,
    report_path: Path = TOKENIZATION_PATH,
) -> TokenizationReport:
    from datasets import Dataset, DatasetDict

    if not verdict_path.is_file() or not read_json(verdict_path, DataVerdict).passed:
        raise UserError(f"{verdict_path}: no passing data-quality verdict (run `dvc repro validate`, fix its errors)")
    data, max_length = params.data, params.tokenize.max_length
    tokenizer = load_tokenizer(params.model.name, params.model.revision)
    positions = max_positions(params.model.name, params.model.revision)
    if positions is not None and max_length > positions:
        raise UserError(f"tokenize.max_length {max_length} > the {positions} positions of model {params.model.name!r}")
    limits = {"train": data.max_train_samples, "validation": data.max_eval_samples, "test": data.max_eval_samples}
    report, splits = TokenizationReport(max_length=max_length, splits={}), {}
    encoder = encode_pairs if params.task == "generation" else encode
    preferences = params.train.objective == "dpo"
    encoder = encode_preferences if preferences else encoder
    for split, df in read_splits(interim_dir).items():
        if preferences and "rejected" not in df.columns:
            raise UserError(
                f"train.objective: dpo needs preference data (OpenAI's JSONL with input, preferred_output, "
                f"non_preferred_output); {interim_dir}'s {split} split has no rejected replies"
            )
        keep = usable(df)
        if (~keep).any():
            log.info("%s: dropping %d empty row(s)", split, int((~keep).sum()))
        columns, report.splits[split] = encoder(subset(df[keep], limits[split], data.seed), tokenizer, max_length)
        if not columns["input_ids"]:
            raise UserError(f"{split}: no rows left to train or test on (all empty or over tokenize.max_length)")
        splits[split] = Dataset.from_dict(columns)
        log.info("%-10s %s", split, report.splits[split])
    with staged_dir(processed_dir) as staging:
        DatasetDict({split: splits[split] for split in SPLITS}).save_to_disk(str(staging))
    write_json(report_path, report)
    return report


def main() -> None:
    tokenize(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
