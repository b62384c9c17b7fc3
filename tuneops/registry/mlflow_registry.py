"""The registry serving reads: MLflow's Model Registry, every model in it, as the Catalog's Registry (its cards, an
alias's version, a version loaded with its generation settings, a version deleted unless an alias holds it).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tuneops.config.params import tracking_uri
from tuneops.registry.catalog import Card, ModelInUse
from tuneops.registry.served import ModelInfo, Served, generation_settings, served, settings_of
from tuneops.registry.store import alias_version, load_registered, model_uri, no_such_model_or_alias

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from tuneops.config.params import GenerationParams, RegisterParams

log = logging.getLogger("tuneops.serve")

FINE_TUNED_TAG = "tuneops.fine_tuned_model"  # the ft: id a fine-tuning job gave the version it registered
JOB_TAG = "tuneops.fine_tuning_job"  # the job that registered the version (flows/job.py)


def model_cards(name: str, versions: list[ModelVersion], aliases: dict[str, str]) -> list[Card]:
    """The ids of one registered model: each alias, each version, and each fine-tuned id (MLflow ModelVersions)."""
    created = {str(v.version): int(v.creation_timestamp // 1000) for v in versions}
    cards = [Card(f"{name}@{alias}", created.get(str(v), 0), name, str(v)) for alias, v in sorted(aliases.items())]
    for v in sorted(versions, key=lambda v: int(v.version)):
        version = str(v.version)
        cards.append(Card(f"{name}:{version}", created[version], name, version))
        if ft := (v.tags or {}).get(FINE_TUNED_TAG):
            cards.append(Card(ft, created[version], name, version, (v.tags or {}).get(JOB_TAG)))
    return cards


def blocking_aliases(aliases: list[str], tags: dict[str, str]) -> list[str]:
    """The aliases that keep a version from being deleted: all but its fine-tuning job's own. flows/job.py
    registers a job's version under an alias named after the job (so the job never moves the champion); that one
    goes with the version."""
    return sorted(a for a in aliases if a != tags.get(JOB_TAG))


class MlflowRegistry:
    """The MLflow Model Registry of `register.tracking_uri` (or MLFLOW_TRACKING_URI), every model in it.

    A generation version's settings come from its tags (registry.tag_generation); `generation` (params.yaml's
    GenerationParams) stands in for a version registered without them."""

    def __init__(self, register: RegisterParams, generation: GenerationParams | None = None) -> None:
        from mlflow import MlflowClient  # start-up: mlflow takes seconds to import; only a real registry needs it

        self.register = register
        self.generation = None if generation is None else settings_of(generation)
        self.client = MlflowClient(tracking_uri(register))

    def cards(self) -> list[Card]:
        cards: list[Card] = []
        for model in self.client.search_registered_models():
            versions = self.client.search_model_versions(f"name='{model.name}'")
            cards += model_cards(model.name, versions, dict(model.aliases or {}))
        return cards

    def alias_version(self, name: str, alias: str) -> str | None:
        found = alias_version(self.register.model_copy(update={"model_name": name, "alias": alias}), self.client)
        return None if found is None else str(found.version)

    def load(self, name: str, version: str) -> Served | None:
        found = self._version(name, version)
        if found is None:
            return None
        register = self.register.model_copy(update={"model_name": name})
        model, tokenizer = load_registered(register, int(version))
        info = ModelInfo(name=name, version=version, alias=None, model_uri=model_uri(register, int(version)))
        log.info("loaded %s", info.model_uri)
        return served(model, tokenizer, info, generation_settings(found.tags or {}, self.generation))

    def tags(self, name: str, version: str) -> dict[str, str] | None:
        """The version's tags, or None when the registry has no such version."""
        found = self._version(name, version)
        return None if found is None else dict(found.tags or {})

    def delete(self, model_id: str, name: str, version: str) -> bool:
        """Delete the version from the registry (MLflow drops the aliases pointing at it; its run and artifacts
        stay); False when there is no such version, ModelInUse when an alias other than its job's points at it."""
        found = self._version(name, version)
        if found is None:
            return False
        # checked, then deleted: an alias moved onto the version in between is dropped with it (MLflow has no
        # conditional delete); `register` only moves the champion to a version it has just registered
        blocking = blocking_aliases(list(found.aliases or []), dict(found.tags or {}))
        if blocking:
            raise ModelInUse(model_id, name, version, blocking)
        self.client.delete_model_version(name, version)
        return True

    def _version(self, name: str, version: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, version)
        except MlflowException as exc:
            if no_such_model_or_alias(exc.error_code, exc.message):
                return None
            raise
