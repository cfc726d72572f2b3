"""What every stage shares: a shard's work cut into chunks, run by `runner.run_shard`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Literal

import pyarrow as pa

from ..context import RunContext
from ..engine import PromptResult, Request
from ..errors import IncompleteRunError
from ..pipeline import StageSpec, stage as stage_spec
from ..plan import ShardRange


class ShardWork(ABC):
    """One stage's work on one shard. Subclasses say what the next chunk is and how to compute it;
    the runner owns locking, resuming, committing and the done marker."""

    stage: str
    engine_kind: Literal["generator", "scorer"] | None = "generator"

    def __init__(self, ctx: RunContext, domain: str, shard: ShardRange):
        self.ctx, self.cfg, self.domain, self.shard = ctx, ctx.cfg, domain, shard

    @property
    def spec(self) -> StageSpec:
        return stage_spec(self.stage)

    @classmethod
    def recorded_settings(cls, cfg, generator: str, domain: str) -> dict | None:
        """The settings each committed chunk records (generation_settings.py); None: nothing to
        record. `generator`: the generator's label (models.model_label), never a path."""
        return None

    @abstractmethod
    def next_chunk(self, committed: list[pa.Table]) -> Any | None:
        """The next chunk's input given what is committed, or None when the shard is complete."""

    @abstractmethod
    def run_chunk(self, engine: Any, chunk: Any, index: int, committed: list[pa.Table]) -> pa.Table:
        """Compute one chunk's rows (`committed`: the chunks before it)."""

    def planned_chunks(self, committed: list[pa.Table]) -> list[Any] | None:
        """Every remaining chunk, where none depends on the results of the one before: the runner
        then streams them through the engine (`request` / `to_table`) instead of one `run_chunk`
        at a time. None (the default) where the next chunk is decided from what is committed."""
        return None

    def request(self, chunk: Any, index: int) -> Request:
        raise NotImplementedError(f"{self.stage} plans no chunks ahead")

    def to_table(self, chunk: Any, index: int, results: list[PromptResult]) -> pa.Table:
        raise NotImplementedError(f"{self.stage} plans no chunks ahead")

    def require_done(self, stage: str, shard: int) -> None:
        if self.ctx.store.shard(stage, self.domain, shard).done() is None:
            raise IncompleteRunError(
                f"{self.stage} {self.domain} shard {self.shard.shard}: input {stage} shard {shard} is not done; "
                "run `python -m magpie_hpc resubmit RUN_DIR`"
            )


def rows_done(committed: list[pa.Table]) -> int:
    return sum(t.num_rows for t in committed)
