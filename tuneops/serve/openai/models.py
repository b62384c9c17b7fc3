"""GET /v1/models and GET /v1/models/{id}: the ids this server answers to (registry.catalog's cards: registered
versions, and the checkpoints of the fine-tuning jobs that registered one). DELETE /v1/models/{id}: a registered
version deleted from the registry, as OpenAI deletes a fine-tuned model."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from tuneops.registry.catalog import ModelInUse, ModelNotFound, NotDeletable
from tuneops.serve.errors import APIError
from tuneops.serve.openai.common import not_found
from tuneops.serve.openai.protocol import Model, ModelList

router = APIRouter()


class ModelDeleted(BaseModel):
    """OpenAI's answer to a deletion (openai.types.ModelDeleted)."""

    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    cards = await run_in_threadpool(request.app.state.catalog.cards)
    return ModelList(data=[Model(id=c.id, created=c.created) for c in cards])


@router.get("/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> Model:
    cards = await run_in_threadpool(request.app.state.catalog.cards)
    for card in cards:
        if card.id == model_id:
            return Model(id=card.id, created=card.created)
    raise not_found(ModelNotFound(model_id, nothing_registered=not cards))


@router.delete("/models/{model_id:path}")
async def delete_model(request: Request, model_id: str) -> ModelDeleted:
    """Delete the registered version an ft: id or `<name>:<version>` names; it stops answering at once. An alias
    id is refused (it moves: delete a version), a checkpoint too (it is no registered version), and a 409 names
    the alias that still points at the version (the champion is never left pointing nowhere)."""
    try:
        await run_in_threadpool(request.app.state.catalog.delete, model_id)
    except ModelNotFound as exc:
        raise not_found(exc) from None
    except ModelInUse as exc:
        raise APIError(409, str(exc), param="model", code="model_in_use") from None
    except NotDeletable as exc:
        raise APIError(400, str(exc), param="model", code="model_not_deletable") from None
    return ModelDeleted(id=model_id)
