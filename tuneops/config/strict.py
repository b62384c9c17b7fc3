"""The base of every params model: unknown keys are an error, so a typo in params.yaml names itself."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # strict: PyYAML reads `5e-5` as a string, and lax pydantic would quietly make it a float.
    # allow_inf_nan: `learning_rate: .inf` would train to all-NaN weights and exit 0.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
