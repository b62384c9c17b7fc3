"""The catalog's decisions without MLflow: checkpoint ids, the LRU of versions, a deleted version that no id answers
with again, and the versions serving may still answer with."""

from __future__ import annotations

import pytest

from tuneops.registry.catalog import LRU, Card, Catalog, ModelNotFound, NotDeletable
from tuneops.registry.checkpoints import CheckpointRef, checkpoint_id, parse_checkpoint_id
from tuneops.registry.served import ModelInfo, Served

JOB = "ftjob-0123456789abcdef0123456789abcdef"
FT = "ft:gpt2:tuneops:spans:2"


def test_a_checkpoint_id_is_its_jobs_ft_id_with_the_job_and_step_in_the_versions_place():
    ckpt = checkpoint_id(FT, JOB, 12)
    assert ckpt == f"ft:gpt2:tuneops:spans:{JOB}:ckpt-step-12"
    assert parse_checkpoint_id(ckpt) == CheckpointRef("ft:gpt2:tuneops:spans", JOB, 12)
    assert parse_checkpoint_id(ckpt).label == f"{JOB}:ckpt-step-12"
    # a Hub id with its organisation, no suffix: OpenAI's ft: ids keep the empty field
    no_suffix = f"ft:HuggingFaceTB/SmolLM2-135M:tuneops::{JOB}:ckpt-step-3"
    assert parse_checkpoint_id(no_suffix) == CheckpointRef("ft:HuggingFaceTB/SmolLM2-135M:tuneops:", JOB, 3)


@pytest.mark.parametrize(
    "model_id",
    [FT, "tuneops-tweet-spans:2", f"ft:gpt2:tuneops:spans:{JOB}:ckpt-step-", "ft:gpt2:tuneops:x:../..:ckpt-step-1"],
)
def test_what_is_not_a_checkpoint_id(model_id):
    assert parse_checkpoint_id(model_id) is None  # a job id that is no plain folder name never names a path


def served(name: str, version: str) -> Served:
    info = ModelInfo(name=name, version=version, alias=None, model_uri=f"models:/{name}/{version}")
    return Served(object(), object(), info)


def test_the_lru_keeps_the_latest_drops_one_version_on_demand_and_keeps_no_miss():
    cache = LRU(2)
    loads: list[tuple] = []

    def load(key: tuple) -> Served | None:
        loads.append(key)
        return None if key[1] == "9" else served(key[0], key[1])

    for version in ("1", "2", "1", "3", "9", "9"):
        cache.get(("m", version, None), load)
    # 1 was used again, so 3 evicted 2; 9 named nothing, so it was asked for again
    assert [k[1] for k in loads] == ["1", "2", "3", "9", "9"]
    cache.get(("m", "3", "a checkpoint of the job that registered 3"), load)  # evicts 1
    assert cache.evict("m", "3") == 2  # the version and its job's checkpoint
    assert cache.info().currsize == 0 and cache.get(("m", "1", None), load) is not None and len(loads) == 7


class Registry:
    """A registry of one model, `m`: version 1 the champion, version 2 a fine-tuning job's (ft: id, job alias)."""

    def __init__(self) -> None:
        self.versions = {"1": ["champion"], "2": [JOB]}
        self.loaded: list[str] = []

    def cards(self) -> list[Card]:
        cards = [Card(f"m@{a}", 0, "m", v) for v, aliases in self.versions.items() for a in aliases]
        cards += [Card(f"m:{v}", 0, "m", v) for v in self.versions]
        return cards + ([Card(FT, 0, "m", "2", JOB)] if "2" in self.versions else [])

    def alias_version(self, name: str, alias: str) -> str | None:
        return next((v for v, aliases in self.versions.items() if alias in aliases), None)

    def load(self, name: str, version: str) -> Served | None:
        self.loaded.append(version)
        return served(name, version) if version in self.versions else None

    def tags(self, name: str, version: str) -> dict[str, str] | None:
        return {} if version in self.versions else None

    def delete(self, model_id: str, name: str, version: str) -> bool:
        return self.versions.pop(version, None) is not None


def test_a_deleted_version_answers_to_none_of_its_ids_though_it_was_loaded():
    registry = Registry()
    catalog = Catalog(registry, cache_size=4)
    for model_id in (FT, "m:2", f"m@{JOB}"):
        assert catalog.get(model_id).info.version == "2"
    assert registry.loaded == ["2"]  # one load: every id names the same version
    assert catalog.delete(FT) == ("m", "2")
    for model_id in (FT, "m:2", f"m@{JOB}"):
        with pytest.raises(ModelNotFound):
            catalog.get(model_id)
    assert catalog.get("m@champion").info.version == "1"  # the others stay


def test_an_alias_or_a_checkpoint_is_not_deleted_and_an_unknown_id_is_not_found(tmp_path):
    catalog = Catalog(Registry(), cache_size=4, root=tmp_path)
    with pytest.raises(NotDeletable, match="points at version 1 now: delete m:1"):
        catalog.delete("m@champion")
    with pytest.raises(NotDeletable, match="is a checkpoint"):
        catalog.delete(checkpoint_id(FT, JOB, 4))
    with pytest.raises(ModelNotFound):
        catalog.delete("m:7")
    with pytest.raises(ModelNotFound):
        catalog.get(checkpoint_id(FT, JOB, 4))  # the job saved no such checkpoint
    assert catalog.cards() == Registry().cards()  # nor does it list one


def test_live_versions_are_the_caches_and_the_followed_aliases():
    class Registry:
        def cards(self):
            return [Card("m:1", 0, "m", "1")]

        def alias_version(self, name, alias):
            return "3"

        def load(self, name, version):
            return Served(
                None, None, ModelInfo(name=name, version=version, alias=None, model_uri=f"models:/m/{version}")
            )

    catalog = Catalog(Registry(), cache_size=1)
    catalog.get("m:1")
    catalog.get("m@champion")  # loads version 3, which pushes version 1 out of the one-entry cache
    assert catalog.live() == {("m", "3")}
    catalog.get("m:2")
    assert catalog.live() == {("m", "2"), ("m", "3")}  # 3 stays: its alias holds it
