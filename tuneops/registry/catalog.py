"""What `tuneops serve` can answer with: every registered version of every model in the tracking store, by id.

Model ids, as `GET /v1/models` lists them:
    <name>@<alias>     the version an alias points at, followed when it moves (`tuneops-tweet-sentiment@champion`)
    <name>:<version>   one version, pinned (`tuneops-tweet-sentiment:3`)
    ft:<base>:tuneops:<suffix>:<version>   a version a fine-tuning job made (its `tuneops.fine_tuned_model` tag)
    ft:<base>:tuneops:<suffix>:<job id>:ckpt-step-<step>   a checkpoint of that job (registry/checkpoints.py),
                       served from `<root>/jobs/<job id>/` when the Catalog is given the project root
A bare `<name>` means `<name>@<the register.alias of params.yaml>`.

A checkpoint is servable while the version its job registered is (the job succeeded: flows/job.py tags that
version with the job's id at the very end); deleting that version retires its checkpoints from serving too. It
answers with the version's generation settings (its tags; else the workspace's params.yaml), and names itself as
`<job id>:ckpt-step-<step>` where a version has its number (ModelInfo.version, the X-Model-Version header), its
folder relative to the root as model_uri.

A version is loaded on first use and kept in a bounded least-recently-used cache (`serve.model_cache_size`); a
followed alias keeps its current version besides, in its ModelHolder (registry/holder.py), which checks the alias
at most every `refresh_seconds` and swaps in a moved alias's version once loaded, while other requests keep
answering with the old one. Deleting a version (Catalog.delete) drops it from the cache, the holders and the ft: map.
The registry itself is a Registry: MLflow's is registry/mlflow_registry.py; a loaded version, registry/served.py.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from tuneops.config.paths import job_workspace
from tuneops.registry.checkpoints import (
    CheckpointRef,
    checkpoint_id,
    checkpoint_path,
    fine_tuned_prefix,
    is_servable,
    parse_checkpoint_id,
    servable_steps,
)
from tuneops.registry.holder import EngineReady, ModelHolder
from tuneops.registry.served import ModelInfo, Served, checkpoint_served

log = logging.getLogger("tuneops.serve")


@dataclass(frozen=True)
class Card:
    """One id of `GET /v1/models` and the version it names (a checkpoint's: the version its job registered);
    `job`: the fine-tuning job that registered the version, on its ft: id's card and its checkpoints'."""

    id: str
    created: int
    name: str
    version: str
    job: str | None = None


class ModelNotFound(LookupError):
    """No registered version answers to the id; `nothing_registered` when the store holds no model at all."""

    def __init__(self, model_id: str, nothing_registered: bool) -> None:
        self.model_id, self.nothing_registered = model_id, nothing_registered
        super().__init__(model_id)


class ModelInUse(Exception):
    """A version an alias points at: deleting it would leave the alias (`champion`) pointing nowhere."""

    def __init__(self, model_id: str, name: str, version: str, aliases: list[str]) -> None:
        self.model_id, self.name, self.version, self.aliases = model_id, name, version, aliases
        which = f"alias {aliases[0]} points" if len(aliases) == 1 else f"aliases {', '.join(aliases)} point"
        super().__init__(
            f"{model_id} is version {version} of {name}, which {which} at: move it to another version first "
            f"(MlflowClient().set_registered_model_alias({name!r}, {aliases[0]!r}, <version>)), then delete this one"
        )


class NotDeletable(Exception):
    """An id that names no one version for good (an alias) or no registered version (a checkpoint)."""


class Registry(Protocol):
    """The registry as serving needs it (registry/mlflow_registry.py's MlflowRegistry is the real one)."""

    def cards(self) -> list[Card]: ...

    def alias_version(self, name: str, alias: str) -> str | None: ...

    def load(self, name: str, version: str) -> Served | None: ...

    def tags(self, name: str, version: str) -> dict[str, str] | None: ...

    def delete(self, model_id: str, name: str, version: str) -> bool: ...


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


# (name, version, checkpoint id): a registered version, or a checkpoint of the job that registered it
Key = tuple[str, str, str | None]


class LRU:
    """The most recently used versions, at most `maxsize` of them. functools.lru_cache cannot drop one entry, and a
    deleted version must stop answering without every other version being loaded again. An id that names nothing is
    not kept: a version registered after a first miss answers at once. The Catalog calls it under its load lock."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize, self.hits, self.misses = maxsize, 0, 0
        self._entries: OrderedDict[Key, Served] = OrderedDict()

    def get(self, key: Key, load: Callable[[Key], Served | None]) -> Served | None:
        if key in self._entries:
            self.hits += 1
            self._entries.move_to_end(key)
            return self._entries[key]
        self.misses += 1
        served = load(key)
        if served is not None and self.maxsize > 0:
            self._entries[key] = served
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return served

    def evict(self, name: str, version: str) -> int:
        """Drop the version and its job's checkpoints; how many entries went."""
        gone = [key for key in self._entries if key[:2] == (name, version)]
        for key in gone:
            del self._entries[key]
        return len(gone)

    def info(self) -> functools._CacheInfo:
        return functools._CacheInfo(self.hits, self.misses, self.maxsize, len(self._entries))

    def versions(self) -> set[tuple[str, str]]:
        return {(s.info.name, s.info.version) for s in self._entries.values()}


class Catalog:
    """Model ids to loaded versions: the LRU cache of versions and a ModelHolder per followed alias. `root`: the
    project root whose jobs/ holds fine-tuning jobs' workspaces; without it, checkpoint ids name nothing."""

    def __init__(
        self,
        registry: Registry,
        cache_size: int,
        default_alias: str = "champion",
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        root: Path | None = None,
        ready: EngineReady | None = None,
    ) -> None:
        self.registry, self.default_alias, self.root, self.ready = registry, default_alias, root, ready
        self._refresh_seconds, self._clock = refresh_seconds, clock
        self._cache = LRU(cache_size)
        self._load_lock = threading.Lock()  # one load at a time: two requests for a new version load it once
        self._holders: dict[tuple[str, str], ModelHolder] = {}
        self._holders_lock = threading.Lock()
        self._fine_tuned: dict[str, tuple[str, str]] = {}  # an ft: id (or a checkpoint id) names one version for good

    def cards(self) -> list[Card]:
        """Every id: the registry's, each ft: id followed by its job's servable checkpoints, newest first."""
        cards = []
        for card in self.registry.cards():
            cards.append(card)
            if self.root is not None and card.job is not None:
                cards += checkpoint_cards(self.root, card)
        return cards

    def get(self, model_id: str) -> Served:
        """The loaded version `model_id` names; ModelNotFound when none does."""
        if (checkpoint := parse_checkpoint_id(model_id)) is not None:
            name, version = self._checkpoint_owner(model_id, checkpoint)
            return self._load(model_id, (name, version, model_id))
        ref = parse_model_id(model_id, self.default_alias)
        if ref.alias is not None:
            return self._holder(model_id, ref.name, ref.alias).current()
        name, version = (ref.name, ref.version) if ref.fine_tuned is None else self._fine_tuned_version(model_id)
        return self.load(model_id, name, version, None)

    def load(self, model_id: str, name: str, version: str, alias: str | None) -> Served:
        served = self._load(model_id, (name, version, None))
        return served if alias is None else replace(served, info=served.info.model_copy(update={"alias": alias}))

    def delete(self, model_id: str) -> tuple[str, str]:
        """Delete the registered version an ft: id or `<name>:<version>` names, and forget it here: (name, version).

        ModelNotFound for an unknown id, NotDeletable for an alias or a checkpoint, ModelInUse for a version an
        alias points at (the registry's check)."""
        name, version = self._deletable(model_id)
        with self._load_lock:  # no load of it in between: a request either got it before, or gets a 404
            if not self.registry.delete(model_id, name, version):
                raise self._not_found(model_id)
            self._cache.evict(name, version)
        self._forget(name, version)
        log.info("deleted %s (version %s of %s)", model_id, version, name)
        return name, version

    def cache_info(self) -> functools._CacheInfo:
        return self._cache.info()

    def live(self) -> set[tuple[str, str]]:
        """The versions serving may still answer with, (name, version): the cache's and every followed alias's
        (an engine keeps a process per version only while it is here)."""
        with self._holders_lock:
            held = {(h.served.info.name, h.served.info.version) for h in self._holders.values()}
        with self._load_lock:
            return held | self._cache.versions()

    def _load(self, model_id: str, key: Key) -> Served:
        with self._load_lock:
            served = self._cache.get(key, self._load_key)
        if served is None:
            raise self._not_found(model_id)
        return served

    def _load_key(self, key: Key) -> Served | None:
        name, version, checkpoint = key
        if checkpoint is None:
            return self.registry.load(name, version)
        return self._load_checkpoint(name, version, checkpoint)

    def _load_checkpoint(self, name: str, version: str, model_id: str) -> Served | None:
        ref = parse_checkpoint_id(model_id)
        if ref is None or self.root is None or not is_servable(path := checkpoint_path(self.root, ref.job, ref.step)):
            return None
        tags = self.registry.tags(name, version)
        if tags is None:  # the job's version was deleted meanwhile: its checkpoints went with it
            return None
        served = checkpoint_served(path, job_workspace(self.root, ref.job), ref, name, tags)
        log.info("loaded %s (checkpoint of %s version %s)", model_id, name, version)
        return served

    def _checkpoint_owner(self, model_id: str, ref: CheckpointRef) -> tuple[str, str]:
        """The version the checkpoint's job registered, its ft: id matching the checkpoint id's."""
        if self.root is None:
            raise self._not_found(model_id)
        if model_id not in self._fine_tuned:
            found = [
                (c.name, c.version)
                for c in self.registry.cards()
                if c.job == ref.job and c.id.startswith("ft:") and fine_tuned_prefix(c.id) == ref.model
            ]
            if not found:
                raise self._not_found(model_id)
            self._fine_tuned[model_id] = found[0]
        return self._fine_tuned[model_id]

    def _deletable(self, model_id: str) -> tuple[str, str]:
        if parse_checkpoint_id(model_id) is not None:
            raise NotDeletable(
                f"{model_id} is a checkpoint, not a registered version: it goes with its job's workspace "
                "(jobs/<job id>/), or with the fine-tuned model its job registered"
            )
        ref = parse_model_id(model_id, self.default_alias)
        if ref.alias is not None:
            now = self.registry.alias_version(ref.name, ref.alias)
            where = f"; it points at version {now} now: delete {ref.name}:{now}" if now else ""
            raise NotDeletable(f"{model_id} names an alias, which moves: delete one version by its id{where}")
        return (ref.name, ref.version) if ref.fine_tuned is None else self._fine_tuned_version(model_id)

    def _forget(self, name: str, version: str) -> None:
        """No id resolves to a deleted version from memory again: its ft: id, its job's checkpoints' ids, and the
        holder of an alias that pointed at it (the job's own, which the deletion removed) look it up afresh.
        Not under the load lock: _holder takes the holders' lock first, then the load lock."""
        for model_id in [k for k, v in self._fine_tuned.items() if v == (name, version)]:
            del self._fine_tuned[model_id]
        with self._holders_lock:
            held = [k for k, h in self._holders.items() if _names(h.served.info, name, version)]
            for key in held:
                del self._holders[key]

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
                    ready=self.ready,
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


def _names(info: ModelInfo, name: str, version: str) -> bool:
    return (info.name, info.version) == (name, version)


def checkpoint_cards(root: Path, card: Card) -> list[Card]:
    """The servable checkpoints of the job that registered the version of `card` (its ft: id's), newest first."""
    saved = servable_steps(job_workspace(root, card.job))
    return [
        Card(checkpoint_id(card.id, card.job, step), at, card.name, card.version, card.job)
        for step, at in saved.items()
    ]
