"""The base of every config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    # allow_inf_nan=False: TOML can spell inf and nan, and a temperature of inf would only fail
    # inside a running task, after the queue wait.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
