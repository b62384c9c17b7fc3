"""Every file and folder the pipeline reads or writes, named once.

Relative to the project root, where `dvc repro` runs. dvc.yaml names the same paths for DVC (it cannot import
Python); tests/unit/test_dvc_yaml.py fails when the two disagree.
"""

from __future__ import annotations

from pathlib import Path

PARAMS_PATH = Path("params.yaml")
DVC_YAML_PATH = Path("dvc.yaml")
DVC_LOCK_PATH = Path("dvc.lock")
DVC_PROCESS_LOCK_PATH = Path(".dvc/tmp/lock")  # DVC's own: holds the PID of the DVC process that has it
WORKSPACE_LOCK_PATH = Path(".dvc/tmp/tuneops-retrain.lock")  # a retrain run's, for its whole run (git-ignored)

RAW_DIR = Path("data/raw")  # the user's own files (`dvc add`), never modified
INTERIM_DIR = Path("data/interim")  # canonical splits: {split}.parquet + manifest.json
MANIFEST_PATH = INTERIM_DIR / "manifest.json"
PROCESSED_DIR = Path("data/processed")  # token ids (datasets `save_to_disk`)

REPORTS_DIR = Path("reports")
DATA_DOCS_DIR = REPORTS_DIR / "data_quality"  # Great Expectations Data Docs
DATA_DOCS_INDEX = DATA_DOCS_DIR / "index.html"  # GX's own pages (styles and icons from a CDN)
REVIEW_PAGE_PATH = REPORTS_DIR / "data_review.html"  # the self-contained page a person reviews, offline too
DATA_QUALITY_PATH = REPORTS_DIR / "data_quality.json"
DATA_VERDICT_PATH = REPORTS_DIR / "data_quality_verdict.json"
DATA_REVIEW_PATH = REPORTS_DIR / "data_review.json"
TOKENIZATION_PATH = REPORTS_DIR / "tokenization.json"
TRAIN_HISTORY_PATH = REPORTS_DIR / "train_history.json"
METRICS_PATH = REPORTS_DIR / "metrics.json"
GATE_PATH = REPORTS_DIR / "gate.json"
CONFUSION_JSON_PATH = REPORTS_DIR / "confusion_matrix.json"
EVALUATION_PNG_PATH = REPORTS_DIR / "evaluation.png"  # the confusion matrix, or generation's Jaccard spread
SAMPLES_PATH = REPORTS_DIR / "samples.jsonl"  # held-out inputs: expected and what the candidate answered

MODELS_DIR = Path("models")
CANDIDATE_DIR = MODELS_DIR / "candidate"
CHECKPOINT_DIR = MODELS_DIR / "checkpoints"
REGISTERED_PATH = MODELS_DIR / "registered.json"
# Not DVC outputs: a pause asked for (training checkpoints and stops; outside the checkpoints, which a fresh start
# empties), and each logged step with the time it was logged (a job's metrics events; gone with a fresh start).
PAUSE_REQUEST_PATH = MODELS_DIR / "pause-requested"
STEP_LOG_PATH = CHECKPOINT_DIR / "steps.jsonl"

FILES_DIR = Path("data/files")  # OpenAI file objects (uploads, result files), content-addressed, `dvc add`-ed
FILES_LOCK_PATH = Path(".dvc/tmp/tuneops-files.lock")  # one writer of data/files at a time
JOBS_DIR = Path("jobs")  # a workspace per fine-tuning job (git-ignored): jobs/<job id>/

SPLITS = ("train", "validation", "test")


def split_path(interim_dir: Path, split: str) -> Path:
    return interim_dir / f"{split}.parquet"


def job_workspace(root: Path, job: str) -> Path:
    """A fine-tuning job's workspace under the project `root`: where its pipeline runs and its checkpoints stay."""
    return root / JOBS_DIR / job
