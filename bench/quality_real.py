"""Real-data quality, measured: SmolLM2-135M-Instruct fine-tuned on ../shared's tweets through `dvc repro`.

    python bench/quality_real.py            # the CPU default: ~30-45 min on the 2-core CPU here
    python bench/quality_real.py --smoke    # stories260K, tiny rows: proves the machinery in ~4 min
    python bench/quality_real.py --full     # a GPU: every row, 3 epochs, a tenth of the file as test

Three arms, each its own scratch copy of the pipeline (dvc.yaml, params.yaml, tasks/, tuneops/: git init, dvc
init, the registry on SQLite inside it) running `dvc repro` stage by stage, ingest to register:
  head   task: classification, the sequence-classification head (the seed's task), CSV with text,sentiment;
  label  task: generation, classification as completion, chat JSONL: user "Classify the sentiment of this tweet
         as one of: negative, neutral, positive. Answer with the label only.\\n\\nTweet: {text}", assistant the
         sentiment;
  span   task: generation, span extraction, chat JSONL: user "Copy the words of this tweet that express its
         {sentiment} sentiment.\\n\\nTweet: {text}", assistant selected_text.
Chat data is rendered by the model's own chat template (SmolLM2's ChatML), so its base is asked as it was
instruction-tuned. evaluate scores the fine-tune and the base model (model.name, zero-shot) on the same test rows;
`evaluate.samples_kept: null` keeps every scored row in reports/samples.jsonl, which this bench reads.

One held-out split for all arms: Kaggle's train.csv (test.csv has no selected_text), empty texts and spans
dropped, one row per text (lower-cased, whitespace removed: a retweet cannot sit on both sides), then test,
validation and train drawn from it in turn, stratified by sentiment, seeded (--seed). All three arms get the same
train / validation / test rows as files of one folder (train.csv/.jsonl, validation..., test...), so no arm carves
its own. Rows are matched across arms by the tweet's text inside each sample's prompt.

Reported, on the rows each pair of arms both scored (a paired bootstrap, --resamples 2,000 draws of test rows,
seeded, 2.5th-97.5th percentiles of the difference; macro-F1 recomputed on every draw):
  sentiment  accuracy and macro-F1 of the head, the completion, and the base zero-shot as each arm's evaluate
             asked it (the head arm: tuneops.evaluation.zero_shot's instruction; the label arm: the instruction
             above); an answer is read as a label by zero_shot.read_label (case and trailing punctuation aside;
             anything else is no label and counts wrong). Differences: head - its base, completion - its base,
             head - completion;
  span       word-level Jaccard (Kaggle's) and exact match of the fine-tune, the base zero-shot, and copying the
             whole tweet (0.589 on the whole file). Differences: fine-tune - base, fine-tune - copy;
  training   tokens/s (the train stage's own report where it writes one; else the tokens of data/processed's
             train split, every token read (prompts included, padding not), x epochs / the Trainer's
             train_runtime), the wall time of each stage and of each arm, and peak RSS of each stage: ru_maxrss
             of the `dvc repro STAGE` process tree, from os.wait4 on it (the largest process in the tree: the
             stage's Python).
The goals (reported as they come out, not asserted): each fine-tune beats its base with an interval that excludes
zero; span Jaccard >= 0.65; sentiment accuracy >= 0.75.

Profiles (--train-rows, --test-rows, --epochs, --model override them):
  cpu (default)  SmolLM2 GGUF (../shared, dequantised to fp32), 1,200 train / 100 validation / 400 test rows,
         1 epoch, learning rate 1e-4, no evaluation or checkpoint during training, the rest params.yaml's (batch
         32, bf16 autocast, activation checkpointing). Why: 45 minutes for three fine-tunes and their evaluations
         on 2 cores. Training costs tokens: a tweet is ~19 SmolLM2 tokens for the head, ~80 as a ChatML chat (its
         default system turn, the instruction, the answer), and the causal LM computes its 49k-word output layer
         on each; at ~2 s a step for the head (../shared's README, a quiet machine) that is ~1.5 min for the head
         and ~6-7 min for each chat arm. evaluate then scores fine-tune and base on the same 400 rows (teacher-
         forced, and generating: 8 new tokens for a label, 48 for a span): ~2, ~4 and ~5 min; each stage that
         loads the model reads the GGUF again (~20 s). ~30 min in all on a quiet machine, the rest a margin for a
         shared one (a busy machine runs several times slower: then say so beside the numbers). A second epoch
         (--epochs 2) would cost ~15 min more. 400 test rows give an accuracy near 0.75 a 95% interval of about
         +-4 points, narrower for a paired difference: enough to tell a fine-tune from its base.
  full   (a GPU) every remaining row for train (~23,700), 1,000 validation, 2,750 test (a tenth of the file),
         3 epochs, learning rate 5e-5 (not run here: no GPU).
  smoke  ../shared's stories260K (Hub format; no chat template, so chat is rendered with params'
         generation.chat_template), 120 / 30 / 40 rows, 1 epoch: every stage and every number of the report,
         none of them meaningful.

Prints the machine (CPU, cores, torch, load average before and after), a progress line per stage, then markdown
tables ready for the README; writes the results as JSON (--out; default bench/results/quality_real.json, for
--smoke bench/out/quality_real_smoke.json). The workspaces are deleted after a successful run unless --keep DIR;
a failed stage leaves them, and its log, in place.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.generation_quality import PIPELINE, SHARED, TWEETS  # noqa: E402 (after the path insert, as the others)
from tuneops.config.paths import METRICS_PATH, PARAMS_PATH, PROCESSED_DIR, REPORTS_DIR, SAMPLES_PATH  # noqa: E402
from tuneops.config.records import GenerationSample  # noqa: E402
from tuneops.evaluation.lm_scoring import exact, jaccard  # noqa: E402
from tuneops.evaluation.zero_shot import read_label  # noqa: E402

SMOLLM2 = SHARED / "models" / "smollm2-135m-instruct-gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STORIES = SHARED / "models" / "stories260k" / "hub"
LABELS = ["negative", "neutral", "positive"]
LABEL_PROMPT = (
    "Classify the sentiment of this tweet as one of: negative, neutral, positive. Answer with the label only.\n\n"
    "Tweet: {text}"
)
SPAN_PROMPT = "Copy the words of this tweet that express its {sentiment} sentiment.\n\nTweet: {text}"
ARMS = ("head", "label", "span")
STAGES = ("ingest", "validate", "tokenize", "train", "evaluate", "register")
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
GOAL_SPAN_JACCARD, GOAL_ACCURACY = 0.65, 0.75


@dataclass(frozen=True)
class Profile:
    name: str
    model: Path | str
    train_rows: int | None  # None: every row left after test and validation
    validation_rows: int
    test_rows: int
    epochs: float
    learning_rate: float
    max_length: dict[str, int]  # tokenize.max_length per arm
    new_tokens: dict[str, int]  # generation.max_new_tokens per generation arm
    expected: str


MAX_LENGTHS = {"head": 128, "label": 256, "span": 256}  # tokenize.max_length: no tweet comes near them
PROFILES = {
    "cpu": Profile(
        name="cpu",
        model=SMOLLM2,
        train_rows=1200,
        validation_rows=100,
        test_rows=400,
        epochs=1.0,
        learning_rate=1.0e-4,
        max_length=MAX_LENGTHS,
        new_tokens={"label": 8, "span": 48},
        expected="~30-45 min on 2 cores",
    ),
    "full": Profile(
        name="full",
        model=SMOLLM2,
        train_rows=None,
        validation_rows=1000,
        test_rows=2750,
        epochs=3.0,
        learning_rate=5.0e-5,
        max_length=MAX_LENGTHS,
        new_tokens={"label": 8, "span": 48},
        expected="one GPU, not measured here",
    ),
    # stories260K's 512-token vocabulary spends a token on every few characters: longer limits, at 512 positions
    "smoke": Profile(
        name="smoke",
        model=STORIES,
        train_rows=120,
        validation_rows=30,
        test_rows=40,
        epochs=1.0,
        learning_rate=1.0e-3,
        max_length={"head": 128, "label": 384, "span": 384},
        new_tokens={"label": 8, "span": 24},
        expected="~4 min",
    ),
}


# --- the data: one held-out split, written for every arm -----------------------------------------------------


def key(text: str) -> str:
    """A text as rows are matched by: lower-cased, whitespace removed (a decoded prompt may move spaces)."""
    return "".join(str(text).lower().split())


def draw_rows(profile: Profile, seed: int) -> dict[str, pd.DataFrame]:
    """test, validation and train from Kaggle's train.csv: one row per text, stratified by sentiment, seeded."""
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(TWEETS, dtype=str, keep_default_na=False)
    df["text"], df["selected_text"] = df["text"].str.strip(), df["selected_text"].str.strip()
    df = df[(df["text"] != "") & (df["selected_text"] != "")]
    df = df.assign(key=df["text"].map(key)).drop_duplicates("key").reset_index(drop=True)
    splits, rest = {}, df
    for name, rows in (("test", profile.test_rows), ("validation", profile.validation_rows)):
        rest, splits[name] = train_test_split(rest, test_size=rows, random_state=seed, stratify=rest["sentiment"])
    if profile.train_rows is not None and profile.train_rows < len(rest):
        _, rest = train_test_split(rest, test_size=profile.train_rows, random_state=seed, stratify=rest["sentiment"])
    splits["train"] = rest
    return {name: frame.reset_index(drop=True) for name, frame in splits.items()}


def chat_line(user: str, assistant: str) -> str:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return json.dumps({"messages": messages}, ensure_ascii=False)


def write_data(arm: str, splits: dict[str, pd.DataFrame], dest: Path) -> None:
    """The arm's folder of split files (data.source): CSV for the head, chat JSONL for the generation arms."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, df in splits.items():
        if arm == "head":
            df[["textID", "text", "sentiment"]].to_csv(dest / f"{name}.csv", index=False)
            continue
        if arm == "label":
            lines = [
                chat_line(LABEL_PROMPT.format(text=t), s) for t, s in zip(df["text"], df["sentiment"], strict=True)
            ]
        else:
            users = [SPAN_PROMPT.format(text=t, sentiment=s) for t, s in zip(df["text"], df["sentiment"], strict=True)]
            lines = [chat_line(u, a) for u, a in zip(users, df["selected_text"], strict=True)]
        (dest / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- the workspaces and their stages -------------------------------------------------------------------------


def workspace(dest: Path, arm: str, profile: Profile, splits: dict[str, pd.DataFrame]) -> Path:
    """A scratch copy of the pipeline (as bench/generation_quality.py makes them) with this arm's data and params."""
    dest.mkdir(parents=True)
    for rel in PIPELINE:
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / rel)
    write_data(arm, splits, dest / "data" / "raw" / "tweets")  # in data/raw: ingest's DVC-tracked dependency
    params = yaml.safe_load((dest / PARAMS_PATH).read_text())
    params["task"] = "classification" if arm == "head" else "generation"
    params["data"].update(
        source="data/raw/tweets",
        text_column="text",
        label_column="sentiment",
        max_train_samples=None,
        max_eval_samples=None,
    )
    params["model"].update(name=str(profile.model), revision=None)
    params["tokenize"]["max_length"] = profile.max_length[arm]
    args = params["train"]["args"]
    args.update(num_train_epochs=profile.epochs, max_steps=-1, learning_rate=profile.learning_rate)
    # no evaluation or checkpoint while training: the budget goes to training steps and to test
    args.update(eval_strategy="no", save_strategy="no", load_best_model_at_end=False, logging_steps=10)
    evaluate = params["evaluate"]
    evaluate.update(train_sample_size=None)
    if "samples_kept" in evaluate:
        evaluate["samples_kept"] = None  # every scored row: the bootstrap resamples them
    evaluate["generation"].update(primary_metric="exact_match" if arm == "label" else "jaccard", sample_size=None)
    if arm != "head":
        params["generation"]["max_new_tokens"] = profile.new_tokens[arm]
    params["validate"]["max_empty_text_rate"]["severity"] = "warning"
    params["register"]["tracking_uri"] = "sqlite:///mlflow.db"  # inside the workspace
    params["flow"]["push"] = False
    (dest / PARAMS_PATH).write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


@dataclass
class StageRun:
    stage: str
    wall_s: float
    peak_rss_mb: float  # ru_maxrss of the `dvc repro STAGE` tree: its largest process
    cpu_s: float
    ok: bool
    note: str = ""


def child_env() -> dict[str, str]:
    env = {**os.environ, **CHILD_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the registry is the workspace's own SQLite file
    return env


def failure(lines: list[str]) -> str:
    """Why a stage failed, in one line: the stage's own `error:` line, else the exception a traceback ends with,
    else DVC's last word."""
    for pattern in (r"^error: ", r"^\w+(Error|Exception|Interrupt)\b", r"^ERROR"):
        if found := [line.strip() for line in lines if re.match(pattern, line)]:
            return found[-1]
    return lines[-1].strip() if lines else "(no output)"


def run_stage(ws: Path, stage: str) -> StageRun:
    """`dvc repro STAGE` in the workspace, its output in logs/STAGE.log, timed and measured (os.wait4)."""
    log = ws / "logs" / f"{stage}.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro", stage], cwd=ws, env=child_env(), stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    note = "" if proc.returncode == 0 else failure(lines)
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    return StageRun(stage, wall, rss, usage.ru_utime + usage.ru_stime, proc.returncode == 0, note)


# --- what the pipeline wrote ---------------------------------------------------------------------------------


def base_fields() -> tuple[str, str, str] | str:
    """The names of the base model's answer, exact match and Jaccard in reports/samples.jsonl (GenerationSample),
    or why there are none."""
    names = list(GenerationSample.model_fields)
    answer = next((n for n in ("base", "base_generated", "base_answer") if n in names), None)
    em = next((n for n in names if n.startswith("base") and "exact" in n), None)
    jac = next((n for n in names if n.startswith("base") and "jaccard" in n), None)
    if answer and em and jac:
        return answer, em, jac
    return f"GenerationSample has no base answer, exact match and Jaccard fields (it has {', '.join(names)})"


@dataclass
class ArmResult:
    arm: str
    stages: list[StageRun]
    rows: dict[int, dict]  # test row index -> its line of reports/samples.jsonl
    metrics: dict
    base_missing: str | None
    expected_mismatches: int
    unmatched_samples: int
    training: dict = field(default_factory=dict)


def match_rows(samples: list[dict], test: pd.DataFrame, arm: str) -> tuple[dict[int, dict], int]:
    """Each sample's test row: the one whose tweet its prompt contains (the longest such, should a tweet hold
    another), and how many samples matched none."""
    prefix = "" if arm == "head" else "tweet:"
    needles = sorted(((prefix + k, i) for i, k in enumerate(test["key"])), key=lambda n: -len(n[0]))
    rows, unmatched = {}, 0
    for sample in samples:
        prompt = key(sample["prompt"])
        hit = next((i for needle, i in needles if needle in prompt), None)
        if hit is None:
            unmatched += 1
        else:
            rows[hit] = sample
    return rows, unmatched


def read_arm(ws: Path, arm: str, stages: list[StageRun], test: pd.DataFrame, epochs: float) -> ArmResult:
    metrics = json.loads((ws / METRICS_PATH).read_text())
    samples = [json.loads(line) for line in (ws / SAMPLES_PATH).read_text().splitlines() if line.strip()]
    fields = base_fields()
    missing = fields if isinstance(fields, str) else None
    if missing is None and "base" not in metrics:
        missing = f"{METRICS_PATH} has no 'base' beside 'test' (it has {', '.join(metrics)})"
    if missing is None and samples and not set(fields) <= set(samples[0]):
        missing = f"{SAMPLES_PATH} lines lack {', '.join(sorted(set(fields) - set(samples[0])))}"
    if missing:
        print(f"{arm}: evaluate did not score the base model: {missing}", flush=True)
    rows, unmatched = match_rows(samples, test, arm)
    if not rows:
        raise SystemExit(f"{ws}: none of the {len(samples)} lines of {SAMPLES_PATH} holds a test row's tweet")
    truth = test["sentiment"] if arm != "span" else test["selected_text"]
    mismatches = sum(key(s["expected"]) != key(truth[i]) for i, s in rows.items())
    if unmatched or mismatches:
        print(f"{arm}: {unmatched} sample(s) matched no test row, {mismatches} expected a different answer", flush=True)
    if len(rows) < len(test):
        print(f"{arm}: {len(rows)} of {len(test)} test rows in {SAMPLES_PATH} (evaluate.samples_kept?)", flush=True)
    result = ArmResult(arm, stages, rows, metrics, missing, mismatches, unmatched)
    result.training = training_stats(ws, stages, epochs)
    return result


def train_report(ws: Path) -> tuple[float, str] | None:
    """Tokens/s as the train stage reports it itself, if some report under reports/ has it."""

    def find(node: object) -> float | None:
        if isinstance(node, dict):
            for k, v in node.items():
                if re.search(r"tokens?_per_s", str(k)) and isinstance(v, (int, float)):
                    return float(v)
                if (found := find(v)) is not None:
                    return found
        return None

    for path in sorted((ws / REPORTS_DIR).glob("*.json")):
        try:
            found = find(json.loads(path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if found is not None:
            return found, str(path.relative_to(ws))
    return None


def training_stats(ws: Path, stages: list[StageRun], epochs: float) -> dict:
    from tuneops.data.tokenization import load_processed

    train = next(s for s in stages if s.stage == "train")
    evaluate = next(s for s in stages if s.stage == "evaluate")
    ids = load_processed(ws / PROCESSED_DIR)["train"]["input_ids"]
    tokens = int(sum(len(x) for x in ids))
    log = (ws / "logs" / "train.log").read_text(errors="replace")
    runtime = [float(x) for x in re.findall(r"'train_runtime': '?([\d.]+)", log)]
    seconds = runtime[-1] if runtime else train.wall_s
    reported = train_report(ws)
    rate, source = reported or (tokens * epochs / seconds, "data/processed train tokens x epochs / train_runtime")
    return {
        "train_rows": len(ids),
        "train_tokens_per_epoch": tokens,
        "epochs": epochs,
        "train_runtime_s": round(seconds, 1),
        "runtime_source": "Trainer's train_runtime" if runtime else "train stage wall time",
        "tokens_per_s": round(rate, 1),
        "tokens_per_s_source": source,
        "train_stage_wall_s": round(train.wall_s, 1),
        "evaluate_stage_wall_s": round(evaluate.wall_s, 1),
        "arm_wall_s": round(sum(s.wall_s for s in stages), 1),
        "train_peak_rss_mb": round(train.peak_rss_mb),
        "evaluate_peak_rss_mb": round(evaluate.peak_rss_mb),
    }


# --- scores and paired bootstrap intervals -------------------------------------------------------------------


def macro_f1(true: np.ndarray, pred: np.ndarray, classes: int = len(LABELS)) -> float:
    """F1 averaged over the label ids (sklearn's average="macro", labels=range(classes), zero_division=0): a
    prediction outside them (-1, no label) costs recall and never earns precision."""
    scores = []
    for c in range(classes):
        tp = np.sum((pred == c) & (true == c))
        wrong = np.sum((pred == c) != (true == c))  # false positives + false negatives
        scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    return float(np.mean(scores))


def accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(true == pred))


Stat = Callable[[np.ndarray], float]


def on_rows(metric: Callable[[np.ndarray, np.ndarray], float], true: np.ndarray, pred: np.ndarray) -> Stat:
    """The metric on the rows a bootstrap draw picks (indices into true and pred)."""
    return lambda rows: metric(true[rows], pred[rows])


def bootstrap(a: Stat, b: Stat, n: int, resamples: int, seed: int) -> dict:
    """a - b on all n rows and its paired bootstrap 95% interval: both recomputed on the same resampled rows."""
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        draws[r] = a(idx) - b(idx)
    everything = np.arange(n)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"diff": a(everything) - b(everything), "low": float(low), "high": float(high), "n": n}


def label_id(answer: str) -> int:
    found = read_label(answer, LABELS)
    return -1 if found is None else found


def sentiment(arms: dict[str, ArmResult], test: pd.DataFrame, resamples: int, seed: int) -> dict:
    """Accuracy and macro-F1 of each sentiment answerer, and the paired differences asked for."""
    true_all = test["sentiment"].map(LABELS.index).to_numpy()
    answerers: dict[str, dict[int, int]] = {}
    names = {"head": "head", "label": "completion"}
    for arm, name in names.items():
        if arm not in arms:
            continue
        res = arms[arm]
        answerers[name] = {i: label_id(s["generated"]) for i, s in res.rows.items()}
        if res.base_missing is None:
            answer = base_fields()[0]
            answerers[f"base ({name} arm)"] = {i: label_id(s[answer]) for i, s in res.rows.items()}
    table = {}
    for name, preds in answerers.items():
        idx = np.array(sorted(preds))
        true, pred = true_all[idx], np.array([preds[i] for i in idx])
        table[name] = {"accuracy": accuracy(true, pred), "macro_f1": macro_f1(true, pred), "n": len(idx)}
    pairs = [("head", "base (head arm)"), ("completion", "base (completion arm)"), ("head", "completion")]
    comparisons = []
    for a, b in pairs:
        if a not in answerers or b not in answerers:
            continue
        idx = np.array(sorted(set(answerers[a]) & set(answerers[b])))
        true = true_all[idx]
        pa, pb = (np.array([answerers[x][i] for i in idx]) for x in (a, b))
        for metric, fn in (("accuracy", accuracy), ("macro_f1", macro_f1)):
            ci = bootstrap(on_rows(fn, true, pa), on_rows(fn, true, pb), len(idx), resamples, seed)
            comparisons.append({"task": "sentiment", "a": a, "b": b, "metric": metric, **ci})
    return {"scores": table, "comparisons": comparisons}


def span(res: ArmResult, test: pd.DataFrame, resamples: int, seed: int) -> dict:
    """Jaccard and exact match of the fine-tune, the base and copying the tweet, and the paired differences."""
    idx = np.array(sorted(res.rows))
    rows = [res.rows[i] for i in idx]
    expected, tweets = test["selected_text"].to_numpy()[idx], test["text"].to_numpy()[idx]
    per_row = {
        "fine-tune": {"jaccard": [s["jaccard"] for s in rows], "exact_match": [s["exact_match"] for s in rows]},
        "copy the tweet": {
            "jaccard": [jaccard(e, t) for e, t in zip(expected, tweets, strict=True)],
            "exact_match": [exact(e, t) for e, t in zip(expected, tweets, strict=True)],
        },
    }
    if res.base_missing is None:
        _, em, jac = base_fields()
        per_row["base"] = {"jaccard": [s[jac] for s in rows], "exact_match": [s[em] for s in rows]}
    values = {name: {m: np.asarray(v, dtype=float) for m, v in ms.items()} for name, ms in per_row.items()}
    table = {name: {m: float(v.mean()) for m, v in ms.items()} | {"n": len(idx)} for name, ms in values.items()}
    comparisons = []
    for b in ("base", "copy the tweet"):
        if b not in values:
            continue
        for metric in ("jaccard", "exact_match"):
            va, vb = values["fine-tune"][metric], values[b][metric]
            ci = bootstrap(
                lambda s, v=va: float(v[s].mean()), lambda s, v=vb: float(v[s].mean()), len(idx), resamples, seed
            )
            comparisons.append({"task": "span", "a": "fine-tune", "b": b, "metric": metric, **ci})
    return {"scores": table, "comparisons": comparisons}


def goals(sent: dict, spans: dict) -> list[dict]:
    """The issue's goals, each met, not met, or None where it could not be measured (no base numbers)."""
    out = []
    comparisons = sent.get("comparisons", []) + spans.get("comparisons", [])
    targets = (
        ("sentiment", "head", "accuracy"),
        ("sentiment", "completion", "accuracy"),
        ("span", "fine-tune", "jaccard"),
    )
    for task, a, metric in targets:
        scores = (sent if task == "sentiment" else spans).get("scores", {})
        if a not in scores:
            continue  # the arm did not run
        mine = [c for c in comparisons if (c["task"], c["a"], c["metric"]) == (task, a, metric)]
        c = next((c for c in mine if c["b"].startswith("base")), None)
        goal = f"{task}: the {a} beats its base on {metric}, its 95% interval above 0"
        if c is not None:
            goal += f" ({c['diff']:+.3f}, [{c['low']:+.3f}, {c['high']:+.3f}])"
        out.append({"goal": goal, "met": None if c is None else c["low"] > 0})
    if "fine-tune" in spans.get("scores", {}):
        j = spans["scores"]["fine-tune"]["jaccard"]
        out.append({"goal": f"span Jaccard >= {GOAL_SPAN_JACCARD} (is {j:.3f})", "met": j >= GOAL_SPAN_JACCARD})
    for name in ("head", "completion"):
        if name in sent.get("scores", {}):
            a = sent["scores"][name]["accuracy"]
            goal = f"sentiment accuracy of the {name} >= {GOAL_ACCURACY} (is {a:.3f})"
            out.append({"goal": goal, "met": a >= GOAL_ACCURACY})
    return out


# --- report --------------------------------------------------------------------------------------------------


def model_label(model: Path | str) -> str:
    """The model as the report names it: a path under ../shared from there, anything else as given."""
    path = Path(model)
    return str(path.relative_to(SHARED.parent)) if path.is_relative_to(SHARED.parent) else str(model)


def machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if "model name" in ln), cpu)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": gpu,
        "python": platform.python_version(),
    }


def markdown(result: dict) -> str:
    def f(x: float | None, spec: str = ".3f") -> str:
        return "n/a" if x is None else format(x, spec)

    out = ["| sentiment (test rows) | accuracy | macro-F1 | n |", "|---|---:|---:|---:|"]
    for name, s in result["sentiment"]["scores"].items():
        out.append(f"| {name} | {f(s['accuracy'])} | {f(s['macro_f1'])} | {s['n']} |")
    out += ["", "| span extraction | Jaccard | exact match | n |", "|---|---:|---:|---:|"]
    for name, s in result["span"]["scores"].items():
        out.append(f"| {name} | {f(s['jaccard'])} | {f(s['exact_match'])} | {s['n']} |")
    out += ["", "| difference (paired bootstrap, 95%) | metric | a - b | interval | n |", "|---|---|---:|---|---:|"]
    for c in result["sentiment"]["comparisons"] + result["span"]["comparisons"]:
        interval = f"[{c['low']:+.3f}, {c['high']:+.3f}]"
        out.append(f"| {c['task']}: {c['a']} - {c['b']} | {c['metric']} | {c['diff']:+.3f} | {interval} | {c['n']} |")
    out += [
        "",
        "| arm | train rows | epochs | tokens/s | train runtime | train stage | arm wall | peak RSS: train "
        "| evaluate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, a in result["arms"].items():
        t = a["training"]
        out.append(
            f"| {arm} | {t['train_rows']:,} | {t['epochs']:g} | {t['tokens_per_s']:,.0f} "
            f"| {t['train_runtime_s']:.0f} s "
            f"| {t['train_stage_wall_s']:.0f} s | {t['arm_wall_s']:.0f} s | {t['train_peak_rss_mb'] / 1024:.2f} GB "
            f"| {t['evaluate_peak_rss_mb'] / 1024:.2f} GB |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--smoke", action="store_true", help="stories260K, tiny rows: the machinery (~4 min)")
    which.add_argument("--full", action="store_true", help="the GPU profile: every row, 3 epochs")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated: head, label, span")
    parser.add_argument("--model", help="model.name instead of the profile's (a Hub id, a Hub folder, a .gguf)")
    parser.add_argument("--train-rows", type=int)
    parser.add_argument("--test-rows", type=int)
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--seed", type=int, default=42, help="the carve of test/validation/train and the bootstrap")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws")
    parser.add_argument("--keep", type=Path, help="make the workspaces here and keep them")
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/quality_real.json)")
    args = parser.parse_args()
    profile = PROFILES["smoke" if args.smoke else "full" if args.full else "cpu"]
    overrides = {"model": args.model, "train_rows": args.train_rows, "test_rows": args.test_rows, "epochs": args.epochs}
    profile = replace(profile, **{k: v for k, v in overrides.items() if v is not None})
    arms = [a for a in args.arms.split(",") if a]
    if unknown := set(arms) - set(ARMS):
        raise SystemExit(f"--arms: unknown {', '.join(sorted(unknown))} (know {', '.join(ARMS)})")
    if not TWEETS.is_file():
        raise SystemExit(f"{TWEETS}: not found (this benchmark needs ../shared)")
    if str(profile.model).startswith(("/", ".")) and not Path(profile.model).exists():
        raise SystemExit(f"{profile.model}: not found (this profile's model is in ../shared)")
    default_out = ROOT / ("bench/out/quality_real_smoke.json" if args.smoke else "bench/results/quality_real.json")
    out_path = args.out or default_out
    os.environ.update({k: os.environ.get(k, v) for k, v in CHILD_ENV.items()})

    info = machine() | {"load_before": os.getloadavg()}
    print(f"machine  {info['cpu']}, {info['cores']} cores, torch {info['torch']}, GPU {info['gpu'] or 'none'}")
    print(f"load     {' '.join(f'{x:.2f}' for x in info['load_before'])} (1, 5, 15 min) at the start")
    root = args.keep or Path(tempfile.mkdtemp(prefix="tuneops-quality-real-"))
    root.mkdir(parents=True, exist_ok=True)
    splits = draw_rows(profile, args.seed)
    test = splits["test"]
    sizes = ", ".join(f"{name} {len(df):,}" for name, df in splits.items())
    print(
        f"profile  {profile.name} ({profile.expected}): {model_label(profile.model)}, {sizes} rows, "
        f"{profile.epochs:g} epoch(s), learning rate {profile.learning_rate:g}; workspaces in {root}",
        flush=True,
    )
    started = time.perf_counter()
    results: dict[str, ArmResult] = {}
    for arm in arms:
        ws = workspace(root / arm, arm, profile, splits)
        stages = []
        for stage in STAGES:
            run = run_stage(ws, stage)
            stages.append(run)
            state = "ok" if run.ok else f"not registered: {run.note}" if stage == "register" else f"FAILED: {run.note}"
            print(
                f"[{time.perf_counter() - started:6.0f} s] {arm:5} {stage:8} {run.wall_s:6.0f} s, "
                f"peak {run.peak_rss_mb / 1024:.2f} GB  {state}",
                flush=True,
            )
            if not run.ok and stage != "register":  # register refuses a failed gate: the numbers are still there
                raise SystemExit(f"{ws}: dvc repro {stage} failed: {run.note} (log: {ws / 'logs' / f'{stage}.log'})")
        results[arm] = read_arm(ws, arm, stages, test, profile.epochs)

    sent = sentiment(results, test, args.resamples, args.seed)
    spans = (
        span(results["span"], test, args.resamples, args.seed)
        if "span" in results
        else {"scores": {}, "comparisons": []}
    )
    info["load_after"] = os.getloadavg()
    result = {
        "profile": asdict(profile) | {"model": str(profile.model)},
        "machine": info,
        "seed": args.seed,
        "resamples": args.resamples,
        "rows": {name: len(df) for name, df in splits.items()},
        "wall_s": round(time.perf_counter() - started, 1),
        "arms": {
            arm: {
                "stages": [asdict(s) for s in r.stages],
                "training": r.training,
                "base_missing": r.base_missing,
                "test_rows_scored": len(r.rows),
                "unmatched_samples": r.unmatched_samples,
                "expected_mismatches": r.expected_mismatches,
                "evaluate_metrics": {k: r.metrics.get(k) for k in ("test", "base", "baselines") if k in r.metrics},
            }
            for arm, r in results.items()
        },
        "sentiment": sent,
        "span": spans,
    }
    result["goals"] = goals(sent, spans)
    for arm in result["arms"].values():  # the confusion matrix and per-class scores are metrics.json's to keep
        test_scores = arm["evaluate_metrics"].get("test") or {}
        for bulky in ("per_class", "confusion_matrix"):
            test_scores.pop(bulky, None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=2, default=float) + "\n")

    print(
        f"\nload     {' '.join(f'{x:.2f}' for x in info['load_after'])} (1, 5, 15 min) at the end; "
        f"wall time {result['wall_s'] / 60:.1f} min\n"
    )
    print(
        f"{model_label(profile.model)} on real tweets ({profile.name} profile: {sizes} rows, "
        f"{profile.epochs:g} epoch(s); {info['cpu']}, {info['cores']} cores, torch {info['torch']})\n"
    )
    print(markdown(result))
    print("\ngoals (reported, not asserted):")
    for g in result["goals"]:
        print(f"  {({True: 'met', False: 'not met', None: 'n/a'})[g['met']]:7}  {g['goal']}")
    print(f"\nresults: {out_path}")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
