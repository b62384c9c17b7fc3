"""A loaded version and what it is: the model and tokenizer that answer, the registered version that gave them
(ModelInfo, the X-Model-Version header), and a generation version's settings (its tags, else params.yaml's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from tuneops.data.chat import with_chat_template
from tuneops.models.loading import is_generator
from tuneops.registry.checkpoints import CheckpointRef, job_params, load_checkpoint
from tuneops.registry.store import tagged_generation

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from tuneops.config.params import ChatTemplate, GenerationParams


@dataclass(frozen=True)
class GenerationSettings:
    """How a generation version is asked: what ends a completion, its default length, its chat template."""

    stop: list[str]
    max_new_tokens: int
    chat_template: ChatTemplate | None


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


def generation_settings(tags: dict[str, str], fallback: GenerationSettings | None) -> GenerationSettings | None:
    """A version's generation settings from its tags (registry.tag_generation); `fallback` for a version
    registered before tuneops tagged versions, or for the chat template where its tags have none."""
    found = tagged_generation(tags)
    if found is None:
        return fallback
    stop, max_new_tokens, chat_template = found
    template = chat_template or (fallback.chat_template if fallback is not None else None)
    return GenerationSettings(stop=stop, max_new_tokens=max_new_tokens, chat_template=template)


def settings_of(generation: GenerationParams) -> GenerationSettings:
    return GenerationSettings(list(generation.stop), generation.max_new_tokens, generation.chat_template)


def served(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, info: ModelInfo, generation: GenerationSettings | None
) -> Served:
    """A loaded version; a generation model's tokenizer given the chat template its settings name where it has
    none of its own (a version saved before tokenizers carried their template)."""
    if generation is not None and generation.chat_template is not None and is_generator(model):
        tokenizer = with_chat_template(tokenizer, generation.chat_template)
    return Served(model, tokenizer, info, generation)


def checkpoint_served(path: Path, workspace: Path, ref: CheckpointRef, name: str, tags: dict[str, str]) -> Served:
    """A job's checkpoint, loaded, with the generation settings of the version the job registered (its tags, else
    the workspace's params.yaml). It names itself `<job id>:ckpt-step-<step>` where a version has its number, and
    its folder relative to the project root as its model_uri (no absolute path reaches a client)."""
    model, tokenizer = load_checkpoint(path, workspace)
    generation = generation_settings(tags, settings_of(job_params(workspace).generation))
    where = (Path(workspace.parent.name) / workspace.name / path.relative_to(workspace)).as_posix()
    info = ModelInfo(name=name, version=ref.label, alias=None, model_uri=where)
    return served(model, tokenizer, info, generation)
