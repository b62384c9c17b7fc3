"""HTTP serving of the champion: POST /predict (a JSON list of texts), GET /health.

    tuneops serve --port 8000

Binds 127.0.0.1 by default. Requests over the limits (too many texts, a text too long) get a 413 with a
message saying which limit and by how much.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field

from tuneops.modeling import predict_texts

log = logging.getLogger("tuneops.serve")


class PredictRequest(BaseModel):
    texts: list[str] = Field(description="texts to classify", min_length=1)


def create_app(model: Any, tokenizer: Any, about: dict[str, Any], max_texts: int, max_chars: int) -> Any:
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="tuneops", description="Sentiment of texts, from the registered champion.")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", **about}

    @app.post("/predict")
    def predict(request: PredictRequest | list[str]) -> dict[str, Any]:
        """A JSON list of texts, or {"texts": [...]}: a label and class probabilities for each."""
        texts = request.texts if isinstance(request, PredictRequest) else request
        if not texts:
            raise HTTPException(422, "no texts: send a non-empty JSON list of strings")
        if len(texts) > max_texts:
            raise HTTPException(413, f"too many texts: {len(texts)} > {max_texts}; send smaller batches")
        longest = max(range(len(texts)), key=lambda i: len(texts[i]))
        if len(texts[longest]) > max_chars:
            raise HTTPException(413, f"text {longest} is too long: {len(texts[longest])} characters > {max_chars}")
        results = predict_texts(model, tokenizer, texts, tokenizer.model_max_length)
        return {"model": about, "predictions": results}

    return app


def serve(
    model: Any, tokenizer: Any, about: dict[str, Any], host: str, port: int, max_texts: int, max_chars: int
) -> None:
    import uvicorn

    log.info("serving %s on http://%s:%d (POST /predict, GET /health)", about.get("model_uri"), host, port)
    uvicorn.run(create_app(model, tokenizer, about, max_texts, max_chars), host=host, port=port, log_level="info")
