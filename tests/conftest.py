"""Shared fixtures: the offline sample the project makes (texts, tokenizer, GPT-2 from config), throwaway
copies of the project to run DVC in, and the extra layer of real data in ../shared when it is there."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweet_sentiment_extraction"
TINY_GPT2 = SHARED / "models" / "tiny-gpt2"
GPT2_TOKENIZER = SHARED / "models" / "gpt2-tokenizer"
STORIES = SHARED / "models" / "stories260k"  # a tiny real pretrained Llama: stories260K.gguf, and hub/ (Hub format)
# the same model shipped with the tests (bfloat16, MIT; its README says whence): no test of a real model needs ../shared
STORIES_FIXTURE = ROOT / "tests" / "fixtures" / "stories260k"
SMOLLM2_GGUF = SHARED / "models" / "smollm2-135m-instruct-gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "tuneops-tweet-sentiment"  # register.model_name in params.yaml
LABELS = ["negative", "neutral", "positive"]

# Offline and quiet, exactly as CI runs; the Hub is unreachable here.
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    GX_ANALYTICS_ENABLED="false",
    DO_NOT_TRACK="1",
    TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
    TOKENIZERS_PARALLELISM="false",
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    GIT_AUTHOR_NAME="tuneops tests",
    GIT_AUTHOR_EMAIL="tests@tuneops.local",
    GIT_COMMITTER_NAME="tuneops tests",
    GIT_COMMITTER_EMAIL="tests@tuneops.local",
)
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    # `pytest -n N` (pytest-xdist): each worker's torch, and the stages, servers and torchrun ranks it starts, get
    # its share of the cores. At every core each, N workers' OpenMP threads wait on each other (a server beside one
    # busy process on 2 cores answered 8x fewer requests/s: issue 22's measurement).
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
# dvc.yaml runs `python -m tasks.<stage>`: make `python` this interpreter even when the venv is not activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


OPT_IN = {"vllm": "`make test-vllm` (pytest -m vllm)"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """tests/shared/ is the real-data layer: it runs whenever ../shared is there (CI has it) and skips otherwise."""
    have_shared = all(p.exists() for p in (TWEETS, GPT2_TOKENIZER, TINY_GPT2, STORIES, SMOLLM2_GGUF))
    for item in items:
        if "tests/shared/" in item.nodeid.replace(os.sep, "/"):
            item.add_marker(pytest.mark.shared)
        if item.get_closest_marker("shared") and not have_shared:
            item.add_marker(pytest.mark.skip(reason=f"real data not found at {SHARED} (see shared/README.md)"))
        # Asked for by name only (`-m vllm`): each starts vLLM (80-110 s, ~5 GB), over the full suite's CI budget.
        for marker, how in OPT_IN.items():
            if item.get_closest_marker(marker) and marker not in (config.getoption("-m") or ""):
                item.add_marker(pytest.mark.skip(reason=f"{marker}: run with {how}"))


@pytest.fixture(autouse=True)
def no_leaked_tracking_uri() -> Iterator[None]:
    """mlflow.set_tracking_uri (the registry loader calls it) also sets MLFLOW_TRACKING_URI, which every later
    test and subprocess would then use instead of its own store: drop it after each test (a pipeline test that
    served its project's registry in-process once made a later test's fresh registry have a champion)."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Sample:
    """The offline sample (tuneops.sample): a folder of train.csv + test.csv and a GPT-2 built from config."""

    data_dir: Path
    model_dir: Path


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    from tuneops.data.sample import build_sample

    return Sample(*build_sample(tmp_path_factory.mktemp("sample")))


@pytest.fixture(scope="session")
def tokenizer(sample: Sample) -> Any:
    """The sample's byte-level BPE tokenizer as the pipeline loads it: no pad token of its own, pad = eos."""
    from tuneops.models.loading import load_tokenizer

    return load_tokenizer(str(sample.model_dir))


# SmolLM2-135M-Instruct's own chat template (HuggingFaceTB, Apache-2.0): ChatML with a default system message.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="session")
def chatml_tokenizer(tokenizer: Any) -> Any:
    """The sample's tokenizer made a chat model's, as SmolLM2's is: ChatML's special tokens, eos = <|im_end|>
    (which is also its pad, as SmolLM2 has it), and SmolLM2's own chat template."""
    import copy

    chatml = copy.deepcopy(tokenizer)
    chatml.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    chatml.eos_token = chatml.pad_token = "<|im_end|>"
    chatml.chat_template = CHATML
    return chatml


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if (root / line).is_file()]


class Project:
    """A fresh copy of this repository (git + DVC) in a temp dir, with helpers to edit params and run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def params(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "params.yaml").read_text())

    def set_params(self, edit: Callable[[dict[str, Any]], Any]) -> None:
        params = self.params()
        edit(params)
        (self.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), cwd=self.path, capture_output=True, text=True, env={**os.environ, **(env or {})}
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{args} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def registry(self) -> Any:
        """The project's own MLflow registry (params.yaml's default SQLite store)."""
        from mlflow import MlflowClient

        return MlflowClient(f"sqlite:///{self.path / 'mlflow.db'}")

    def champion_version(self) -> str:
        return str(self.registry().get_model_version_by_alias(MODEL, "champion").version)

    def versions(self) -> list[str]:
        return sorted(str(v.version) for v in self.registry().search_model_versions(f"name='{MODEL}'"))

    def ran(self, result: subprocess.CompletedProcess) -> list[str]:
        """Stages a `dvc repro` actually ran (DVC says "Running stage 'x'")."""
        return [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage '")]


def short_run_train_params(steps: int, **arg_updates: Any) -> Any:
    """params.yaml's `train` section for a run of `steps` optimizer steps, no evaluation and no checkpoints."""
    from tuneops.config.params import load_params

    train = load_params(ROOT / "params.yaml").train
    updates = {"max_steps": steps, "eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False}
    args = train.args.model_copy(update={**updates, **arg_updates})
    return train.model_copy(update={"args": args})


def use_sample(params: dict[str, Any], sample: Sample) -> None:
    """The demo's params (the sample and its GPT-2, two short epochs), with gates any candidate passes."""
    from tuneops.cli.demo import demo_params

    demo_params(params, sample.data_dir, sample.model_dir)
    params["train"]["args"]["logging_steps"] = 5
    params["flow"]["push"] = True  # the flow tests check the push to the DVC remote
    # min_improvement -1 promotes every candidate, so retraining tests are deterministic (the gate and the
    # champion check have tests of their own; the demo's test runs the params.yaml gates)
    gates = {"min_accuracy": 0.0, "min_macro_f1": 0.0, "max_overfit_gap": 1.0, "max_loss_gap": 1.0}
    params["evaluate"].update(gates, min_improvement=-1.0)


# The sample as the seed's classification-as-completion (the label is the completion, as OpenAI's classification
# fine-tunes had it); the span-extraction prompt of Kaggle's tweets is the other generation task, in tests/shared.
COMPLETION_TEMPLATES = {"prompt_template": "{text}\n\n###\n\n", "completion_template": " {sentiment}\n"}


def use_generation_sample(params: dict[str, Any], sample: Sample) -> None:
    """use_sample as task: generation, with gates any candidate passes (min_improvement and baseline_margin
    -1): the gate has unit tests of its own."""
    use_sample(params, sample)
    params["task"] = "generation"
    params["generation"].update(COMPLETION_TEMPLATES, max_new_tokens=8)
    params["evaluate"]["generation"].update(
        primary_metric="exact_match", min_score=0.0, baseline_margin=-1.0, sample_size=60
    )


def make_project(dest: Path) -> Project:
    for rel in tracked_files(ROOT):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    proj = Project(dest)
    proj.run("git", "init", "-q")
    proj.run("git", "add", "-A")
    proj.run("git", "commit", "-qm", "copy of tuneops for a test")
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


@pytest.fixture
def sample_project(tmp_path: Path, sample: Sample) -> Project:
    """A project copy set up for the offline sample and its GPT-2 built from config."""
    proj = make_project(tmp_path / "project")
    proj.set_params(lambda p: use_sample(p, sample))
    return proj


def data_params(source: Path | str, **overrides: Any) -> Any:
    """params.yaml's `data` section for a local source with text/label columns (DataParams)."""
    from tuneops.config.params import DataParams

    base = {
        "source": str(source),
        "revision": None,
        "text_column": "text",
        "label_column": "label",
        "labels": LABELS,
        "validation_fraction": 0.2,
        "test_fraction": 0.2,
        "seed": 42,
        "max_train_samples": None,
        "max_eval_samples": None,
    }
    return DataParams(**{**base, **overrides})


def scores(accuracy: float, macro_f1: float, loss: float) -> Any:
    """A split's scores with these headline numbers (SplitScores)."""
    import numpy as np

    from tuneops.evaluation.metrics import score

    base = score(np.eye(3), np.arange(3), LABELS)
    return base.model_copy(update={"accuracy": accuracy, "macro_f1": macro_f1, "loss": loss})


def metrics(test_acc=0.7, train_acc=0.75, test_loss=0.6, train_loss=0.5, macro_f1=0.65, base_acc=0.4) -> Any:
    """reports/metrics.json's record (Metrics) with these numbers, for the gate's and registry's unit tests."""
    from tuneops.config.records import BaseLabelScores, Metrics
    from tuneops.evaluation.metrics import gap

    test, train = scores(test_acc, macro_f1, test_loss), scores(train_acc, macro_f1, train_loss)
    base = BaseLabelScores(model="gpt2", accuracy=base_acc, macro_f1=base_acc, answered=0.9)
    return Metrics(test=test, train=train, gap=gap(train, test), base=base)


class Clock:
    """The store's now, moved by the test: expiry without waiting an hour."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now
