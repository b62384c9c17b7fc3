"""GET /v1/models and GET /v1/models/{id}: the ids this server answers to (registry.catalog's cards)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from tuneops.registry.catalog import ModelNotFound
from tuneops.serve.openai.common import not_found
from tuneops.serve.openai.protocol import Model, ModelList

router = APIRouter()


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
