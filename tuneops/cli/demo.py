"""`tuneops demo`: the whole pipeline, offline, in a scratch workspace, ending with a champion and a prediction.

For a newcomer without the Hugging Face Hub: the shipped sample (tuneops.data.sample: seeded texts, a tokenizer
trained on them, a GPT-2 built from config) goes through every stage, `dvc repro` to a registered champion,
then `tuneops predict` answers from the registry. The workspace is a copy of the project's pipeline, so the
checkout (its params.yaml, its registry) is never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
import yaml

import tuneops
from tuneops.config.errors import UserError
from tuneops.config.paths import DATA_DOCS_INDEX, DVC_YAML_PATH, MODELS_DIR, PARAMS_PATH, RAW_DIR, REPORTS_DIR

log = logging.getLogger("tuneops.demo")
PIPELINE = (DVC_YAML_PATH, PARAMS_PATH, Path("tasks"), Path("flows"), Path("tuneops"))  # `tuneops run` works there too
EXAMPLES = ["I love the concert tonight!", "my laptop is broken again", "heading out to the gym at 5pm"]


def project_root() -> Path:
    """The checkout whose pipeline the demo copies: the current directory or the one tuneops runs from."""
    for root in (Path.cwd(), Path(tuneops.__file__).resolve().parents[1]):
        if (root / DVC_YAML_PATH).is_file() and (root / "tasks").is_dir():
            return root
    raise UserError("no tuneops checkout here (dvc.yaml and tasks/ not found): run `tuneops demo` from its root")


def demo_params(params: dict, data_dir: Path, model_dir: Path) -> dict:
    """params.yaml pointed at the sample; a 2-layer model learns it in two epochs at a higher learning rate."""
    params["data"].update(
        source=data_dir.as_posix(),
        text_column="text",
        label_column="sentiment",
        max_train_samples=None,
        max_eval_samples=None,
    )
    params["model"]["name"] = model_dir.as_posix()
    params["train"]["args"].update(num_train_epochs=2, per_device_train_batch_size=16, learning_rate=1.0e-3)
    params["flow"]["push"] = False
    return params


def make_workspace(workspace: Path) -> None:
    if workspace.exists() and any(workspace.iterdir()):
        raise UserError(f"{workspace}: not empty; give `--workspace` a new folder")
    from tuneops.data.sample import build_sample  # start-up: pandas and tokenizers, 0.3 s on every `tuneops --help`

    root = project_root()
    for rel in PIPELINE:
        if (root / rel).is_dir():
            shutil.copytree(root / rel, workspace / rel, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(root / rel, workspace / rel)
    data_dir, model_dir = build_sample(workspace / RAW_DIR / "sample")
    params = yaml.safe_load((workspace / PARAMS_PATH).read_text())
    params = demo_params(params, data_dir.relative_to(workspace), model_dir.relative_to(workspace))
    (workspace / PARAMS_PATH).write_text(yaml.safe_dump(params, sort_keys=False))


def run(args: list[str], workspace: Path) -> None:
    """Run a command in the workspace with its output shown as it comes; stop with its exit code on failure."""
    bin_dir = Path(sys.executable).parent  # dvc.yaml's `python` is this interpreter, venv activated or not
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    print(f"\n$ {' '.join(args)}", file=sys.stderr, flush=True)
    code = subprocess.call(args, cwd=workspace, env=env)
    if code != 0:
        raise UserError(f"demo: `{' '.join(args)}` failed with exit code {code} (workspace: {workspace})")


def demo(workspace: Path | None = None) -> Path:
    workspace = (workspace or Path(tempfile.mkdtemp(prefix="tuneops-demo-"))).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    make_workspace(workspace)
    log.info("demo workspace: %s (the sample's data and GPT-2 are under %s)", workspace, RAW_DIR / "sample")
    for command in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro"]):
        run([sys.executable, "-m", *command] if command[0] == "dvc" else command, workspace)
    run([sys.executable, "-m", "tuneops.cli", "predict", *EXAMPLES], workspace)
    tracking = yaml.safe_load((workspace / PARAMS_PATH).read_text())["register"]["tracking_uri"]
    print(
        f"\nDone: {workspace} holds the pipeline's outputs ({REPORTS_DIR}/, {MODELS_DIR}/, the MLflow registry).\n"
        f"  cd {workspace} && dvc metrics show && tuneops predict 'so happy today'\n"
        f"  open {DATA_DOCS_INDEX}; mlflow ui --backend-store-uri {tracking}",
        file=sys.stderr,
    )
    return workspace


def command(
    workspace: Annotated[
        Path | None, typer.Option(metavar="DIR", help="a new folder for the demo (default: a fresh temporary folder)")
    ] = None,
) -> None:
    """the whole pipeline offline on the shipped sample, to a champion and a prediction (~45 s)

    Runs ingest -> validate -> tokenize -> train -> evaluate -> register with `dvc repro` on the sample tuneops makes
    (seeded texts, a tokenizer trained on them, a GPT-2 built from config), in a scratch workspace, then
    `tuneops predict` from the registered champion. Needs no Hub and leaves this checkout alone."""
    demo(workspace)
