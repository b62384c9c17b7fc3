"""Stage `register`: a candidate that passed the gate becomes a registered version and the champion.

    python -m tasks.register          (dvc.yaml runs it)

params: task, register, evaluate.primary_metric, evaluate.generation.primary_metric, evaluate.min_improvement
        (the champion is checked again, now), data, model, tokenize, train, generation (logged to MLflow with
        the version; generation's stop, max_new_tokens and chat template are what predict and serve use)
reads:  models/candidate (checked against its hash in dvc.lock), reports/gate.json, reports/metrics.json,
        reports/samples.jsonl, data/interim/manifest.json (and dvc.lock, for the lineage tags: DVC writes it, so
        it cannot be a dep)
writes: models/registered.json, and a new version in the MLflow registry with the alias moved to it

Gate failed, or the champion moved since evaluate and is no longer beaten: exits non-zero saying why; nothing is
registered and the champion stays.
Gate passed: logs the model (transformers flavour, safetensors), params, metrics (the base model's beside the
candidate's: `base_accuracy`, `base_macro_f1`; generation: `base_jaccard`, `base_exact_match`, `base_loss`, ...;
the base's name is the `base_model` tag), gate.json, samples.jsonl (prompt, expected, base and fine-tuned
answers), the data manifest hash, the dvc.lock hashes and the git commit to MLflow (a generation model as a
text-generation model, with its generation settings as version tags), registers a new version of
`register.model_name` and moves the alias (`champion`) to it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tuneops.config.errors import UserError
from tuneops.config.params import Params, load_params, tracking_uri
from tuneops.config.paths import (
    CANDIDATE_DIR,
    DVC_LOCK_PATH,
    GATE_PATH,
    MANIFEST_PATH,
    METRICS_PATH,
    REGISTERED_PATH,
    SAMPLES_PATH,
)
from tuneops.config.records import GateVerdict, GenerationMetrics, Metrics, Registration
from tuneops.config.runner import run_main, stage_parser
from tuneops.evaluation.gate import beats_champion
from tuneops.io.files import read_json, write_json
from tuneops.io.integrity import verify_outputs
from tuneops.registry.store import (
    champion,
    flat,
    log_model,
    metric_numbers,
    model_uri,
    registered_before,
    set_alias,
    tag_generation,
    workspace_lineage,
)

log = logging.getLogger("tuneops.register")


def register(params: Params, candidate_dir: Path = CANDIDATE_DIR) -> Registration:
    import mlflow

    verify_outputs(DVC_LOCK_PATH, candidate_dir)  # register exactly the model that was evaluated
    generator = params.task == "generation"
    verdict = read_json(GATE_PATH, GateVerdict)
    metrics = read_json(METRICS_PATH, GenerationMetrics if generator else Metrics)
    if verdict.verdict != "passed":
        listed = "; ".join(f"{c.check}: observed {c.observed}, threshold {c.threshold}" for c in verdict.failed)
        raise UserError(f"gate failed ({GATE_PATH}), nothing registered, champion unchanged: {listed}")
    reg = params.register_
    # The champion may have moved since evaluate ran (another workspace registered): check again, now.
    now = beats_champion(metrics.test, champion(reg, registered_before(REGISTERED_PATH)), params.evaluate)
    if not now.passed:
        raise UserError(f"the {reg.alias} moved since evaluate: {now.detail}; nothing registered (rerun evaluate)")
    mlflow.set_tracking_uri(tracking_uri(reg))
    mlflow.set_experiment(reg.experiment_name)
    numbers = metric_numbers(metrics)
    with mlflow.start_run(run_name=f"register-{reg.model_name}") as run:
        logged = {"task", "data", "model", "tokenize", "train"} | ({"generation"} if generator else set())
        mlflow.log_params(flat("", params.model_dump(mode="json", include=logged)))
        mlflow.log_metrics(numbers)
        mlflow.log_artifact(str(GATE_PATH))
        mlflow.log_artifact(str(SAMPLES_PATH))  # held-out prompts, expected and generated, beside the version
        mlflow.set_tags({**workspace_lineage(MANIFEST_PATH, DVC_LOCK_PATH), "base_model": metrics.base.model})
        version = str(log_model(candidate_dir, reg.model_name).registered_model_version)
    if generator:
        tag_generation(reg, version, params.generation)
    set_alias(reg, version)
    record = Registration(
        name=reg.model_name,
        version=version,
        alias=reg.alias,
        run_id=run.info.run_id,
        model_uri=model_uri(reg),
        metrics=numbers,
    )
    write_json(REGISTERED_PATH, record)
    log.info("registered %s version %s and moved %r to it", reg.model_name, version, reg.alias)
    return record


def main() -> None:
    register(load_params(stage_parser(__doc__).parse_args().params))


if __name__ == "__main__":
    run_main(main)
