"""Per-domain selection (CPU): all instruction shards -> exactly `count` distinct instructions with
stable ids `<domain>-<index>`. Runs once per domain, before any response is generated, so no GPU
time goes to duplicates: exact ones first, then near-duplicates across every shard of the domain
(`quality.near_dedup`), both counted in `near_duplicates.json` beside the shard; then problems of
evaluation benchmarks (`quality.decontamination_files`), counted in `decontamination.json`."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import RerunUpstream
from ..pipeline import INSTRUCTIONS
from ..plan import instruction_id, stage_shards
from ..quality.cleaning import normalize_for_dedup
from ..quality.neardup import NearDuplicate, find_near_duplicates
from .base import ShardWork


class NeedMoreInstructions(RerunUpstream):
    """Too few distinct instructions survived: the last instruction shard was reopened for more."""


def reopen_for_more(ctx, domain: str, shard: int, missing: int) -> int:
    """Raise the shard's target by `missing` (plus half again for the next round's losses) and drop
    its done marker, so rerunning it generates only the difference (it resumes after its chunks)."""
    extra = ctx.view.raise_topup(domain, shard, missing)
    ctx.store.shard(INSTRUCTIONS, domain, shard).done_path.unlink(missing_ok=True)
    return extra


class SelectWork(ShardWork):
    stage = "select"
    engine_kind = None

    def next_chunk(self, committed: list[pa.Table]) -> str | None:
        return None if committed else "all"

    def _duplicates_path(self) -> Path:
        return self.ctx.view.duplicates_path(self.domain)

    def _drop_near_duplicates(self, unique: list[dict]) -> tuple[list[dict], list[NearDuplicate]]:
        """Across the whole domain, in candidate order: the first of each cluster is kept."""
        q = self.cfg.quality
        if not q.near_dedup:
            return unique, []
        near = find_near_duplicates([r["instruction"] for r in unique], threshold=q.near_dup_threshold)
        dropped = {d.index for d in near}
        return [r for i, r in enumerate(unique) if i not in dropped], near

    def _record_duplicates(self, candidates: int, exact: int, near: list[NearDuplicate], unique: list[dict]) -> None:
        """work/select/<domain>/near_duplicates.json: the counts the merge and `report` read, and
        every near-duplicate dropped with the instruction it duplicates."""
        q = self.cfg.quality
        self.ctx.view.write_duplicates(
            self.domain,
            {
                "domain": self.domain,
                "near_dedup": q.near_dedup,
                "threshold": q.near_dup_threshold,
                "candidates": candidates,
                "exact_duplicates": exact,
                "near_duplicates_dropped": len(near),
                "near_duplicates": [
                    {
                        "instruction": unique[d.index]["instruction"],
                        "duplicate_of_instruction": unique[d.duplicate_of]["instruction"],
                        "similarity": round(d.similarity, 4),
                        "source_shard": unique[d.index]["source_shard"],
                        "source_sample": unique[d.index]["sample"],
                        "duplicate_of_source_shard": unique[d.duplicate_of]["source_shard"],
                        "duplicate_of_source_sample": unique[d.duplicate_of]["sample"],
                    }
                    for d in near
                ],
            },
        )

    def _drop_contaminated(self, chosen: list[dict]) -> tuple[list[dict], int]:
        """Instructions that reproduce a problem of `quality.decontamination_files` (quality/decontam.py),
        dropped like duplicates; recorded per benchmark file in decontamination.json."""
        q = self.cfg.quality
        if not q.decontamination_files:
            self.ctx.view.write_decontamination(self.domain, None)
            return chosen, 0
        from ..quality.decontam import Decontaminator

        bench = Decontaminator(
            q.decontamination_files,
            q.decontamination_field,
            ngram=q.decontamination_ngram,
            threshold=q.decontamination_threshold,
        )
        matches = bench.match([r["instruction"] for r in chosen])
        per_file = {f: 0 for f in bench.files}
        for m in matches:
            per_file[bench.files[m.file]] += 1
        self.ctx.view.write_decontamination(
            self.domain,
            {
                "domain": self.domain,
                "field": q.decontamination_field,
                "ngram": q.decontamination_ngram,
                "threshold": q.decontamination_threshold,
                "files": {f: {"problems": n, "dropped": per_file[f]} for f, n in zip(bench.files, bench.sizes)},
                "dropped": len(matches),
                "matches": [
                    {
                        "instruction": chosen[m.index]["instruction"],
                        "benchmark_file": bench.files[m.file],
                        "benchmark_index": m.problem,
                        "method": m.method,
                        "similarity": m.similarity,
                        "source_shard": chosen[m.index]["source_shard"],
                        "source_sample": chosen[m.index]["sample"],
                    }
                    for m in matches
                ],
            },
        )
        dropped = {m.index for m in matches}
        return [r for i, r in enumerate(chosen) if i not in dropped], len(matches)

    def run_chunk(self, engine, chunk, index: int, committed: list[pa.Table]) -> pa.Table:
        count = self.cfg.domain(self.domain).count
        candidates = []
        for shard in stage_shards(self.cfg, INSTRUCTIONS, self.domain):
            self.require_done(INSTRUCTIONS, shard.shard)
            table = self.ctx.store.shard(INSTRUCTIONS, self.domain, shard.shard).read_all()
            table = table.filter(pc.is_valid(table["instruction"]))
            candidates.extend(
                dict(row, source_shard=shard.shard)
                for row in table.select(["instruction", "sample", "seed", "created", "output_tokens"]).to_pylist()
            )
        seen: set[str] = set()
        unique = []
        for row in candidates:  # shard order, then sample order: the same choice on every rerun
            key = normalize_for_dedup(row["instruction"])
            if key in seen:
                continue
            seen.add(key)
            unique.append(row)
        chosen, near = self._drop_near_duplicates(unique)
        self._record_duplicates(len(candidates), len(candidates) - len(unique), near, unique)
        chosen, contaminated = self._drop_contaminated(chosen)
        chosen = chosen[:count]
        if len(chosen) < count:
            shards = stage_shards(self.cfg, INSTRUCTIONS, self.domain)
            extra = reopen_for_more(self.ctx, self.domain, shards[-1].shard, count - len(chosen))
            raise NeedMoreInstructions(
                f"select {self.domain}: only {len(chosen)} distinct clean instructions for {count} problems "
                f"({len(candidates) - len(unique)} exact and {len(near)} near duplicates and {contaminated} "
                "benchmark problems dropped, see "
                f"{self._duplicates_path()}); reopened instructions shard {shards[-1].shard} for {extra} more: "
                "run `python -m magpie_hpc resubmit RUN_DIR`",
                stage=INSTRUCTIONS,
                domain=self.domain,
                shards=[shards[-1].shard],
            )
        return pa.table(
            {
                "id": [instruction_id(self.domain, i) for i in range(count)],
                "index": list(range(count)),
                "instruction": [r["instruction"] for r in chosen],
                "seed": [r["seed"] for r in chosen],
                "created": [r["created"] for r in chosen],
                "instruction_tokens": [r["output_tokens"] for r in chosen],
                "source_shard": [r["source_shard"] for r in chosen],
                "source_sample": [r["sample"] for r in chosen],
            }
        )
