"""Stage 4: reward scores for the multi-response shard with the same index (hence `aftercorr`)."""

from __future__ import annotations

import pyarrow as pa

from ..engine.reward_engine import MissingGatingPattern
from ..errors import MagpieError
from ..models import model_label
from .base import ShardWork, rows_done


def _locate(items: list[dict], index: int) -> tuple[dict, int]:
    """The record and response number of the index-th flattened conversation."""
    for item in items:
        if index < len(item["responses"]):
            return item, index
        index -= len(item["responses"])
    raise IndexError(index)


class RewardsWork(ShardWork):
    stage = "rewards"
    engine_kind = "scorer"

    @classmethod
    def recorded_settings(cls, cfg, generator: str, domain: str) -> dict:
        return {
            "reward_model": model_label(cfg.reward_model),
            "max_length": cfg.rewards.max_length,
            "score_reasoning": cfg.rewards.score_reasoning,
            "engine": cfg.engine.reward_kind,
        }

    def __init__(self, *args):
        super().__init__(*args)
        scored = self.spec.upstream  # the multi-response shard with the same index
        self.require_done(scored, self.shard.shard)
        multi = self.ctx.store.shard(scored, self.domain, self.shard.shard).read_all()
        selection = self.ctx.selection(self.domain).slice(self.shard.start, self.shard.size)
        instructions = dict(zip(selection["id"].to_pylist(), selection["instruction"].to_pylist()))
        self.items = [
            dict(row, instruction=instructions[row["id"]])
            for row in multi.select(["id", "responses", "answers"]).to_pylist()
        ]
        self.part = "full" if self.cfg.rewards.score_reasoning else "answer"

    def next_chunk(self, committed: list[pa.Table]) -> slice | None:
        done = rows_done(committed)
        if done >= len(self.items):
            return None
        return slice(done, min(done + self.cfg.sharding.chunk_size, len(self.items)))

    def _scored_text(self, full: str, answer: str | None) -> str:
        # Reasoning models: score the answer only by default; a response with no answer part
        # (cut inside <think>) is scored on what it has.
        return full if self.part == "full" or not answer else answer

    def run_chunk(self, engine, chunk: slice, index: int, committed: list[pa.Table]) -> pa.Table:
        items = self.items[chunk]
        conversations = [
            [
                {"role": "user", "content": item["instruction"]},
                {"role": "assistant", "content": self._scored_text(full, answer)},
            ]
            for item in items
            for full, answer in zip(item["responses"], item["answers"])
        ]
        try:
            flat = engine.score(conversations)
        except MissingGatingPattern as exc:
            item, response = _locate(items, exc.index)
            raise MagpieError(
                f"rewards {self.domain} shard {self.shard.shard}: record {item['id']} response {response}: {exc}"
            ) from None
        scores, at = [], 0
        for item in items:
            scores.append(flat[at : at + len(item["responses"])])
            at += len(item["responses"])
        return pa.table(
            {"id": [i["id"] for i in items], "scores": scores, "scored_part": [self.part] * len(items)},
            schema=pa.schema([("id", pa.string()), ("scores", pa.list_(pa.float64())), ("scored_part", pa.string())]),
        )
