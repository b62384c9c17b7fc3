"""A project as a finished fine-tuning job leaves it, the cheap way: a real MLflow registry (SQLite) holding the
champion and the job's registered version (tagged as flows/job.py and the register stage tag it, under the job's
own alias), and the job's workspace jobs/<job id>/ with its params.yaml, its candidate's tokenizer (with the chat
template), a full checkpoint and a LoRA one (PEFT adapters), each as complete as checkpoint_problem asks."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.api.conftest import CHAT, register_generator
from tests.conftest import ROOT, Sample

NAME = "tuneops-tweet-spans"
JOB = "ftjob-0123456789abcdef0123456789abcdef"
FT = "ft:tiny-gpt2:tuneops:spans:2"  # the job's registered version: 2 (1 is the champion)
FULL_STEP, LORA_STEP = 4, 8
MAX_NEW_TOKENS = 8  # the version's tag; the workspace's params.yaml says otherwise, and loses


def checkpoint(fine_tuned: str, step: int) -> str:
    return f"{fine_tuned.rpartition(':')[0]}:{JOB}:ckpt-step-{step}"


@dataclass(frozen=True)
class Project:
    root: Path
    uri: str

    def register(self) -> Any:
        from tuneops.config.params import RegisterParams

        return RegisterParams(model_name=NAME, tracking_uri=self.uri, experiment_name="models", alias="champion")

    def workspace(self) -> Path:
        return self.root / "jobs" / JOB

    def checkpoint_dir(self, step: int) -> Path:
        return self.workspace() / "models" / "checkpoints" / f"checkpoint-{step}"


def register_job_version(project: Project, sample: Sample, tokenizer: Any, job: str, fine_tuned: str) -> str:
    """A version registered by a job: its generation tags, its ft: id and job, and the job's own alias."""
    from mlflow import MlflowClient

    version = register_generator(sample, tokenizer, project.root / "generator", NAME)
    client = MlflowClient(project.uri)
    tags = {
        "tuneops.task": "generation",
        "tuneops.stop": json.dumps(["\n"]),
        "tuneops.max_new_tokens": str(MAX_NEW_TOKENS),
        "tuneops.chat_template": json.dumps(CHAT),
        "tuneops.fine_tuned_model": fine_tuned,
        "tuneops.fine_tuning_job": job,
    }
    for key, value in tags.items():
        client.set_model_version_tag(NAME, version, key, value)
    client.set_registered_model_alias(NAME, job, version)
    return version


def make_project(root: Path, sample: Sample, tokenizer: Any) -> Project:
    import mlflow
    from mlflow import MlflowClient

    project = Project(root, f"sqlite:///{root / 'mlflow.db'}")
    mlflow.set_tracking_uri(project.uri)
    mlflow.set_experiment(experiment_id=mlflow.create_experiment("models", (root / "mlruns").as_uri()))
    champion = register_generator(sample, tokenizer, root / "generator", NAME)
    MlflowClient(project.uri).set_registered_model_alias(NAME, "champion", champion)
    assert (champion, register_job_version(project, sample, tokenizer, JOB, FT)) == ("1", "2")
    make_workspace(project, sample, tokenizer)
    return project


def make_workspace(project: Project, sample: Sample, tokenizer: Any) -> None:
    from tuneops.config.params import ChatTemplate
    from tuneops.data.chat import with_chat_template

    workspace = project.workspace()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["name"] = str(sample.model_dir)  # the base a LoRA checkpoint's adapters go on
    params["generation"]["max_new_tokens"] = 3
    (workspace / "models" / "candidate").mkdir(parents=True)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    chat = with_chat_template(copy.deepcopy(tokenizer), ChatTemplate(**CHAT))
    chat.save_pretrained(workspace / "models" / "candidate")  # the tokenizer a checkpoint is served with
    save_full_checkpoint(project.checkpoint_dir(FULL_STEP), sample)
    save_lora_checkpoint(project.checkpoint_dir(LORA_STEP), sample)
    incomplete = project.checkpoint_dir(12)  # a save cut short: no optimizer.pt
    shutil.copytree(project.checkpoint_dir(FULL_STEP), incomplete)
    (incomplete / "optimizer.pt").unlink()
    trainer_state(incomplete, 12)


def trainer_state(folder: Path, step: int) -> None:
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))


def training_files(folder: Path, step: int) -> None:
    """What the Trainer saves beside the weights, as checkpoint_problem checks them."""
    import torch

    for name in ("optimizer.pt", "scheduler.pt"):
        torch.save({}, folder / name)
    trainer_state(folder, step)


def save_full_checkpoint(folder: Path, sample: Sample) -> None:
    """The base's weights, moved: a checkpoint's answers are not the registered version's."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(sample.model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for weight in model.parameters():
            weight.add_(torch.randn_like(weight) * 0.5)
    model.save_pretrained(folder)
    training_files(folder, FULL_STEP)


def save_lora_checkpoint(folder: Path, sample: Sample) -> None:
    """Adapters that change the base's answers (random, not PEFT's zero start), without the tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(sample.model_dir)
    config = LoraConfig(
        task_type="CAUSAL_LM", r=2, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False
    )
    get_peft_model(base, config).save_pretrained(folder)
    training_files(folder, LORA_STEP)
