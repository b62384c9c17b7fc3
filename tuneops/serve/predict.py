"""POST /predict's objects: texts in, each one's label and class probabilities out, from the default model."""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from tuneops.inference.batching import Classified
from tuneops.registry.served import ModelInfo


class PredictRequest(BaseModel):
    texts: list[str] = Field(description="texts to classify", min_length=1)


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model: ModelInfo
    predictions: list[Prediction]


def prediction(row: Classified) -> Prediction:
    probabilities = {label: round(math.exp(lp), 6) for label, lp in row.logprobs.items()}
    return Prediction(label=row.label, probabilities=probabilities)
