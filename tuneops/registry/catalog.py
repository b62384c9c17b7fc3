"""What `tuneops serve` can answer with: every registered version of every model in the tracking store, by id.

Model ids, as `GET /v1/models` lists them:
    <name>@<alias>     the version an alias points at, followed when it moves (`tuneops-tweet-sentiment@champion`)
    <name>:<version>   one version, pinned (`tuneops-tweet-sentiment:3`)
    ft:<base>:tuneops:<suffix>:<version>   a version a fine-tuning job made (its `tuneops.fine_tuned_model` tag)
A bare `<name>` means `<name>@<the register.alias of params.yaml>`.

A version is loaded from the registry on first use and kept in a bounded least-recently-used cache
(functools.lru_cache, `serve.model_cache_size`); a followed alias keeps its current version besides, in its
ModelHolder, which checks the alias at most every `refresh_seconds` and swaps in a moved alias's version once
loaded, while other requests keep answering with the old one.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, Field

from tuneops.config.params import tracking_uri
from tuneops.config.runner import redact
from tuneops.data.chat import with_chat_template
from tuneops.models.loading import is_generator
from tuneops.registry.store import alias_version, load_registered, model_uri, no_such_model_or_alias, tagged_generation

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneops.config.params import ChatTemplate, GenerationParams, RegisterParams

log = logging.getLogger("tuneops.serve")

FINE_TUNED_TAG = "tuneops.fine_tuned_model"  # the ft: id a fine-tuning job gave the version it registered


class ModelInfo(BaseModel):
    """The registered version that answered a request."""

    name: str
    version: str
    alias: str | None = Field(description="the alias followed, or null for a pinned version")
    model_uri: str = Field(description="the exact version, models:/<name>/<version>")


@dataclass(frozen=True)
class Served:
    """A loaded version: what predicts and what it is. Requests take one and use it throughout, so a swap
    mid-request never mixes one version's model with another's name. `generation`: the version's generation
    settings (stop, max_new_tokens, chat_template; params.GenerationParams) for a generation model."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    info: ModelInfo
    generation: GenerationSettings | None = None

    @property
    def generates(self) -> bool:
        return is_generator(self.model)

    @property
    def labels(self) -> list[str]:
        if self.generates:
            return []
        return [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]


@dataclass(frozen=True)
class Card:
    """One id of `GET /v1/models` and the version it names."""

    id: str
    created: int
    name: str
    version: str


class ModelNotFound(LookupError):
    """No registered version answers to the id; `nothing_registered` when the store holds no model at all."""

    def __init__(self, model_id: str, nothing_registered: bool) -> None:
        self.model_id, self.nothing_registered = model_id, nothing_registered
        super().__init__(model_id)


class Registry(Protocol):
    """The registry as serving needs it (MlflowRegistry is the real one)."""

    def cards(self) -> list[Card]: ...

    def alias_version(self, name: str, alias: str) -> str | None: ...

    def load(self, name: str, version: str) -> Served | None: ...


VersionLookup = Callable[[], str | None]  # the version the alias points at now, None when it points nowhere
VersionLoader = Callable[[str], Served]


class ModelHolder:
    """The version an alias points at. One request at a time checks the alias (at most every `refresh_seconds`)
    and loads a moved alias's version; the others keep answering with the current one meanwhile, and a failed
    lookup or load keeps it too."""

    def __init__(
        self,
        served: Served,
        lookup: VersionLookup | None = None,
        load: VersionLoader | None = None,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (lookup is None) != (load is None):
            raise ValueError("following an alias needs both a version lookup and a loader")
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be >= 0, not {refresh_seconds}")
        self._served, self._lookup, self._load = served, lookup, load
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._lock = threading.Lock()
        self._checking = False
        self._checked_at = clock()

    @property
    def served(self) -> Served:
        """The version answering now, without checking the alias."""
        return self._served

    def current(self) -> Served:
        """The version to answer this request with, after the alias check when one is due."""
        if self._lookup is None or not self._claim_check():
            return self._served
        try:
            self._check()
        finally:
            with self._lock:
                self._checking = False
        return self._served

    def _claim_check(self) -> bool:
        """True for the one request that does a due check; a lookup per request would hammer the registry."""
        with self._lock:
            now = self._clock()
            if self._checking or now - self._checked_at < self._refresh_seconds:
                return False
            self._checking, self._checked_at = True, now
            return True

    def _check(self) -> None:
        old = self._served.info
        try:
            version = self._lookup()
        except Exception as exc:  # the registry being down must not take serving down with it
            log.warning("keeping version %s: looking up alias %s failed: %s", old.version, old.alias, _why(exc))
            return
        if version is None:
            log.warning("keeping version %s: alias %s points at no version", old.version, old.alias)
            return
        if version == old.version:
            return
        log.info("alias %s moved from version %s to %s: loading it", old.alias, old.version, version)
        try:
            new = self._load(version)  # no lock held: other requests keep answering with the old version
        except Exception as exc:
            log.warning("keeping version %s: loading version %s failed: %s", old.version, version, _why(exc))
            return
        self._served = new  # one reference swap: a request sees the old version or the new one, never a mix
        log.info("now serving %s", new.info.model_uri)


def _why(exc: BaseException) -> str:
    """An exception as one log line, with any credentials in a tracking URI masked."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return redact(f"{type(exc).__name__}: {first}")


@dataclass(frozen=True)
class Ref:
    """A parsed model id: an alias to follow, a version, or a fine-tuned id to look up."""

    name: str = ""
    alias: str | None = None
    version: str | None = None
    fine_tuned: str | None = None


def parse_model_id(model_id: str, default_alias: str) -> Ref:
    if model_id.startswith("ft:"):
        return Ref(fine_tuned=model_id)
    if "@" in model_id:
        name, alias = model_id.rsplit("@", 1)
        return Ref(name=name, alias=alias)
    name, _, version = model_id.rpartition(":")
    if name and version.isdigit():
        return Ref(name=name, version=str(int(version)))
    return Ref(name=model_id, alias=default_alias)


class Catalog:
    """Model ids to loaded versions: the LRU cache of versions and a ModelHolder per followed alias."""

    def __init__(
        self,
        registry: Registry,
        cache_size: int,
        default_alias: str = "champion",
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry, self.default_alias = registry, default_alias
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._cached = functools.lru_cache(maxsize=cache_size)(self._load_version)
        self._load_lock = threading.Lock()  # one load at a time: two requests for a new version load it once
        self._holders: dict[tuple[str, str], ModelHolder] = {}
        self._holders_lock = threading.Lock()
        self._fine_tuned: dict[str, tuple[str, str]] = {}  # an ft: id names one version for good

    def cards(self) -> list[Card]:
        return self.registry.cards()

    def get(self, model_id: str) -> Served:
        """The loaded version `model_id` names; ModelNotFound when none does."""
        ref = parse_model_id(model_id, self.default_alias)
        if ref.alias is not None:
            return self._holder(model_id, ref.name, ref.alias).current()
        name, version = (ref.name, ref.version) if ref.fine_tuned is None else self._fine_tuned_version(model_id)
        return self.load(model_id, name, version, None)

    def load(self, model_id: str, name: str, version: str, alias: str | None) -> Served:
        with self._load_lock:
            served = self._cached(name, version)
        if served is None:
            raise self._not_found(model_id)
        return served if alias is None else replace(served, info=served.info.model_copy(update={"alias": alias}))

    def cache_info(self) -> functools._CacheInfo:
        return self._cached.cache_info()

    def _load_version(self, name: str, version: str) -> Served | None:
        return self.registry.load(name, version)

    def _holder(self, model_id: str, name: str, alias: str) -> ModelHolder:
        if (holder := self._holders.get((name, alias))) is not None:
            return holder  # the usual case, without waiting for a first load of another alias
        with self._holders_lock:
            holder = self._holders.get((name, alias))
            if holder is None:
                version = self.registry.alias_version(name, alias)
                if version is None:
                    raise self._not_found(model_id)
                holder = ModelHolder(
                    self.load(model_id, name, version, alias),
                    lookup=functools.partial(self.registry.alias_version, name, alias),
                    load=lambda v: self.load(model_id, name, v, alias),
                    refresh_seconds=self._refresh_seconds,
                    clock=self._clock,
                )
                self._holders[(name, alias)] = holder
                return holder
        return holder

    def _fine_tuned_version(self, model_id: str) -> tuple[str, str]:
        if model_id not in self._fine_tuned:
            found = [(c.name, c.version) for c in self.registry.cards() if c.id == model_id]
            if not found:
                raise self._not_found(model_id)
            self._fine_tuned[model_id] = found[0]
        return self._fine_tuned[model_id]

    def _not_found(self, model_id: str) -> ModelNotFound:
        return ModelNotFound(model_id, nothing_registered=not self.registry.cards())


def model_cards(name: str, versions: list[ModelVersion], aliases: dict[str, str]) -> list[Card]:
    """The ids of one registered model: each alias, each version, and each fine-tuned id (MLflow ModelVersions)."""
    created = {str(v.version): int(v.creation_timestamp // 1000) for v in versions}
    cards = [Card(f"{name}@{alias}", created.get(str(v), 0), name, str(v)) for alias, v in sorted(aliases.items())]
    for v in sorted(versions, key=lambda v: int(v.version)):
        version = str(v.version)
        cards.append(Card(f"{name}:{version}", created[version], name, version))
        if ft := (v.tags or {}).get(FINE_TUNED_TAG):
            cards.append(Card(ft, created[version], name, version))
    return cards


@dataclass(frozen=True)
class GenerationSettings:
    """How a generation version is asked: what ends a completion, its default length, its chat template."""

    stop: list[str]
    max_new_tokens: int
    chat_template: ChatTemplate | None


class MlflowRegistry:
    """The MLflow Model Registry of `register.tracking_uri` (or MLFLOW_TRACKING_URI), every model in it.

    A generation version's settings come from its tags (registry.tag_generation); `generation` (params.yaml's
    GenerationParams) stands in for a version registered without them."""

    def __init__(self, register: RegisterParams, generation: GenerationParams | None = None) -> None:
        from mlflow import MlflowClient  # start-up: mlflow takes seconds to import; only a real registry needs it

        self.register = register
        self.generation = (
            None
            if generation is None
            else GenerationSettings(list(generation.stop), generation.max_new_tokens, generation.chat_template)
        )
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
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.get_model_version(name, version)
        except MlflowException as exc:
            if no_such_model_or_alias(exc.error_code, exc.message):
                return None
            raise
        register = self.register.model_copy(update={"model_name": name})
        model, tokenizer = load_registered(register, int(version))
        info = ModelInfo(name=name, version=version, alias=None, model_uri=model_uri(register, int(version)))
        log.info("loaded %s", info.model_uri)
        generation = self._generation(found.tags or {})
        if generation is not None and generation.chat_template is not None and is_generator(model):
            # a version saved before tokenizers carried their template: the one its tags say it was trained with
            tokenizer = with_chat_template(tokenizer, generation.chat_template)
        return Served(model, tokenizer, info, generation)

    def _generation(self, tags: dict[str, str]) -> GenerationSettings | None:
        found = tagged_generation(tags)
        if found is None:  # registered before tuneops tagged versions: params.yaml's settings
            return self.generation
        stop, max_new_tokens, chat_template = found
        fallback = self.generation.chat_template if self.generation is not None else None
        return GenerationSettings(stop=stop, max_new_tokens=max_new_tokens, chat_template=chat_template or fallback)
