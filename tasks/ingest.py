"""Stage `ingest`: any source -> the canonical splits.

    python -m tasks.ingest            (dvc.yaml runs it)

params: task, data.source, data.revision, data.text_column, data.label_column, data.labels,
        data.validation_fraction, data.test_fraction, data.seed, generation.prompt_template,
        generation.completion_template, generation.chat_template, model.name, model.revision (chat data is
        rendered with the model's chat template)
reads:  data.source (a Hub dataset id, a file, or a folder of split files; data/raw is where DVC tracks them)
writes: data/interim ({train,validation,test}.parquet and manifest.json)

Classification: maps the source onto `text: str, label: int, label_text: str`. Generation: onto `prompt,
completion, source_text, prompt_spans, completion_weight` (chat JSONL rendered with the model's own chat template,
or generation.chat_template where its tokenizer has none, every assistant reply without `weight: 0` trained; any
other source through generation.prompt_template / completion_template over its columns). OpenAI's preference
JSONL (train.objective: dpo) likewise: input.messages is the prompt, preferred_output the completion, and
non_preferred_output `rejected`, each reply through the template's end of turn. Keeps the source's own
splits and carves a validation (and, for a single file, test) split from train, stratified by label where there
are labels, equal inputs always on one side. The source is only read; subsets for training are taken later, at tokenize.
"""

from __future__ import annotations

from pathlib import Path

from tuneops.config.params import DataParams, GenerationParams, ModelParams, load_params
from tuneops.config.paths import INTERIM_DIR
from tuneops.config.records import Manifest
from tuneops.config.runner import run_main, stage_parser
from tuneops.data.preference import has_preferences
from tuneops.data.sources import load_source
from tuneops.data.splits import make_splits, to_canonical, to_pairs, write_splits
from tuneops.models.loading import load_chat_tokenizer


def ingest(
    data: DataParams,
    interim_dir: Path = INTERIM_DIR,
    generation: GenerationParams | None = None,
    model: ModelParams | None = None,
) -> Manifest:
    """Classification by default; given `generation` (task: generation), prompt/completion pairs; chat data is
    rendered with the chat template of `model`'s tokenizer (generation.chat_template where it has none)."""
    raw = load_source(data.source, data.revision)
    if generation is not None:
        chat = any("messages" in df.columns or has_preferences(df) for df, _ in raw.values())
        tokenizer = None
        if chat and model is not None:
            tokenizer = load_chat_tokenizer(model.name, model.revision, generation.chat_template)
        frames = {split: to_pairs(df, origin, generation, tokenizer) for split, (df, origin) in raw.items()}
    else:
        frames = {split: to_canonical(df, origin, data) for split, (df, origin) in raw.items()}
    return write_splits(make_splits(frames, data), data, interim_dir)


def main() -> None:
    parser = stage_parser(__doc__)
    parser.add_argument("--out-dir", type=Path, default=INTERIM_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    params = load_params(args.params)
    generation = params.generation if params.task == "generation" else None
    ingest(params.data, args.out_dir, generation, params.model)


if __name__ == "__main__":
    run_main(main)
