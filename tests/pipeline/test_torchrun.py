"""`train.launcher: torchrun`: `dvc repro` runs the train stage as always, and it trains data-parallel.

Two processes with per-device batch B/2 and one with batch B train the same thing: the same rows make each
optimizer step (the Trainer hands the ranks consecutive half batches of the one sampler order, same seed) and DDP
averages the two half-batch gradients into the whole batch's. A GPT-2 with dropout off (each rank would draw its
own masks), in fp32, so the only difference left is the order of floating-point sums (half-batch means, then the
all-reduce; matmuls of other shapes): the losses agree to ~1e-7 (measured), and TOLERANCE allows 1e-5. A real
difference (another effective batch, another data order, a rank training alone) moves them by 1e-2 or more.
The validation batch is halved too: the Trainer fills a rank's short last batch with repeated rows, which the
accuracy drops but a batch's mean loss cannot (~1e-3 off otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Project, make_project, use_sample

pytestmark = pytest.mark.slow
TOLERANCE = 1e-5
BATCH = 16


def no_dropout_copy(model_dir: Path, dest: Path) -> Path:
    """The sample's GPT-2 with dropout off, so one process and two draw the same (no) random masks."""
    import shutil

    shutil.copytree(model_dir, dest)
    config = json.loads((dest / "config.json").read_text())
    config.update(attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0, summary_first_dropout=0.0)
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def losses(project: Project, run_id: str, metric: str) -> list[float]:
    history = project.registry().get_metric_history(run_id, metric)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def training_runs(project: Project) -> list[str]:
    client = project.registry()
    experiment = client.get_experiment_by_name("tuneops")
    runs = client.search_runs(experiment.experiment_id, order_by=["attributes.start_time ASC"])
    return [run.info.run_id for run in runs]


def launch(launcher: str, batch: int, eval_batch: int, **args: object):
    def edit(p: dict) -> None:
        p["train"].update(launcher=launcher, nproc_per_node=2, nnodes=1, rdzv_endpoint=None)
        p["train"]["args"].update(per_device_train_batch_size=batch, per_device_eval_batch_size=eval_batch, **args)

    return edit


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, sample) -> tuple[Project, dict]:
    """One training in one process, then the same in two under torchrun, both through `dvc repro train`."""
    root = tmp_path_factory.mktemp("ddp")
    project = make_project(root / "project")
    model = no_dropout_copy(sample.model_dir, root / "gpt2-no-dropout")

    def tiny(p: dict) -> None:
        use_sample(p, sample)
        p["model"]["name"] = model.as_posix()
        p["data"]["max_train_samples"] = 8 * BATCH  # 8 steps an epoch, 2 epochs
        p["train"]["args"].update(logging_steps=1, bf16=False, num_train_epochs=2)

    project.set_params(tiny)
    project.dvc("repro", "tokenize")
    from datasets import load_from_disk

    validation = load_from_disk(str(project.path / "data" / "processed"))["validation"].num_rows
    assert validation % 2 == 0
    project.set_params(launch("single", BATCH, validation))
    single = project.dvc("repro", "train")
    project.set_params(launch("torchrun", BATCH // 2, validation // 2))
    started = time.monotonic()
    two = project.dvc("repro", "train")
    return project, {"single": single, "torchrun": two, "torchrun_seconds": time.monotonic() - started}


def test_two_processes_with_half_the_batch_learn_what_one_process_does(ddp):
    project, runs = ddp
    assert "launching: torchrun --nproc_per_node=2 --standalone -m tasks.train" in runs["torchrun"].stderr
    assert project.ran(runs["torchrun"]) == ["train"]  # only the launcher and the batch changed
    single, two = training_runs(project)  # one MLflow run per training: rank 1 logged nothing
    for metric, logged in (("loss", 16), ("eval_loss", 2), ("eval_accuracy", 2)):  # every step; every epoch
        ones, twos = losses(project, single, metric), losses(project, two, metric)
        assert len(ones) == len(twos) == logged, metric
        assert twos == pytest.approx(ones, abs=TOLERANCE), metric
    assert losses(project, single, "loss")[-1] < losses(project, single, "loss")[0] - 0.1  # it learned


def test_rank_zero_writes_complete_outputs_once(ddp):
    project, runs = ddp
    models = project.path / "models"
    written = sorted(p.name for p in models.iterdir() if p.name != ".gitignore")  # DVC's own
    assert written == ["candidate", "checkpoints"]  # no half-written leftovers
    candidate = models / "candidate"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in candidate.iterdir()}
    history = json.loads((project.path / "reports" / "train_history.json").read_text())
    assert [row["epoch"] for row in history] == [1.0, 2.0]
    marker = json.loads((models / "checkpoints" / "fingerprint.json").read_text())
    assert marker["completed"] is True
    assert runs["torchrun"].stderr.count("INFO tuneops.train: best accuracy") == 1
    from tuneops.models.loading import load_trained

    model, _ = load_trained(candidate)
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_a_rank_with_bad_input_fails_the_stage_with_its_error(ddp, tmp_path):
    project, _ = ddp
    bad = project.params()
    bad["model"]["name"] = (tmp_path / "no-such-model").as_posix()
    (project.path / "bad.yaml").write_text(json.dumps(bad))  # JSON is YAML; --params reaches every rank
    result = project.run(sys.executable, "-m", "tasks.train", "--params", "bad.yaml", check=False)
    assert result.returncode == 2, result.stderr[-2000:]  # a user error's exit code, as in one process
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank ") and " of 2 failed (exit code 2): model " in last
    assert "no-such-model" in last


def whole_since(checkpoint: Path, started: float) -> bool:
    """Complete and written since `started`, with both ranks' random states (the Trainer writes them last)."""
    from tuneops.training.checkpoints import checkpoint_problem

    state = checkpoint / "trainer_state.json"
    fresh = state.is_file() and state.stat().st_mtime > started
    return fresh and checkpoint_problem(checkpoint) is None and (checkpoint / "rng_state_1.pth").is_file()


def worker_pid(project: Path, rank: int) -> int | None:
    """The pid of the torchrun worker of this rank running in this project, from /proc (Linux)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if (
            cwd == project
            and f"RANK={rank}".encode() in env
            and any(e.startswith(b"TORCHELASTIC_RUN_ID=") for e in env)
        ):
            return int(pid)
    return None


def test_a_killed_rank_fails_the_stage_and_training_resumes_under_torchrun(ddp):
    project, _ = ddp

    def longer(p: dict) -> None:
        p["train"]["args"]["num_train_epochs"] = 3
        p["train"]["early_stopping_patience"] = 100

    project.set_params(longer)
    checkpoints = project.path / "models" / "checkpoints"
    repro = [sys.executable, "-m", "dvc", "repro", "train"]
    started = time.time()
    proc = subprocess.Popen(repro, cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(whole_since(c, started) for c in checkpoints.glob("checkpoint-*")):  # one to resume from
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        pid = worker_pid(project.path, rank=1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # what the OOM killer does
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode != 0
    assert "error: rank 1 of 2 failed (killed by SIGKILL)" in err and "exited with 137" in err

    resumed = project.dvc("repro", "train")
    assert "resuming from models/checkpoints/checkpoint-" in resumed.stderr
    assert json.loads((checkpoints / "fingerprint.json").read_text())["completed"] is True
    history = json.loads((project.path / "reports" / "train_history.json").read_text())
    assert [row["epoch"] for row in history] == [1.0, 2.0, 3.0]
