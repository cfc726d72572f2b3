"""Per-domain selection (CPU): all instruction shards -> exactly `count` distinct instructions with
stable ids `<domain>-<index>`. Runs once per domain, before any response is generated, so no GPU
time goes to duplicates."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import MagpieError
from ..plan import instruction_id, stage_shards
from ..quality.cleaning import normalize_for_dedup
from .base import ShardWork


class SelectWork(ShardWork):
    stage = "select"
    engine_kind = None

    def next_chunk(self, committed: list[pa.Table]) -> str | None:
        return None if committed else "all"

    def run_chunk(self, engine, chunk, index: int, committed: list[pa.Table]) -> pa.Table:
        count = self.cfg.domain(self.domain).count
        candidates = []
        for shard in stage_shards(self.cfg, "instructions", self.domain):
            self.require_done("instructions", shard.shard)
            table = self.ctx.store.shard("instructions", self.domain, shard.shard).read_all()
            table = table.filter(pc.is_valid(table["instruction"]))
            candidates.extend(
                dict(row, source_shard=shard.shard) for row in table.select(
                    ["instruction", "sample", "seed", "created", "output_tokens"]).to_pylist()
            )
        seen: set[str] = set()
        chosen = []
        for row in candidates:  # shard order, then sample order: the same choice on every rerun
            key = normalize_for_dedup(row["instruction"])
            if key in seen:
                continue
            seen.add(key)
            chosen.append(row)
            if len(chosen) == count:
                break
        if len(chosen) < count:
            raise MagpieError(
                f"select {self.domain}: only {len(chosen)} distinct clean instructions for {count} problems; "
                "raise instructions.oversample in the config and relaunch into the same run directory"
            )
        return pa.table({
            "id": [instruction_id(self.domain, i) for i in range(count)],
            "index": list(range(count)),
            "instruction": [r["instruction"] for r in chosen],
            "seed": [r["seed"] for r in chosen],
            "created": [r["created"] for r in chosen],
            "instruction_tokens": [r["output_tokens"] for r in chosen],
            "source_shard": [r["source_shard"] for r in chosen],
            "source_sample": [r["sample"] for r in chosen],
        })
