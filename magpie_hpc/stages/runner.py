"""Run one stage on one shard: the shared machinery every stage goes through.

`run_shard(run_dir, stage, domain, shard)` is the unit the executors schedule. It is idempotent
(a done shard returns at once), resumes after the last committed chunk, holds the shard's lock
while it works, loads its model only if there is work left, and writes the done marker last.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from ..context import RunContext
from ..engine import EngineCache
from ..engine.factory import TaskRef, build_generator, build_scorer
from ..errors import MagpieError
from ..plan import derive_seed, stage_shards
from .base import ShardWork
from .instructions import InstructionsWork
from .responses import MultiResponsesWork, ResponsesWork
from .rewards import RewardsWork
from .select import SelectWork

log = logging.getLogger("magpie_hpc")

WORK: dict[str, type[ShardWork]] = {
    "instructions": InstructionsWork,
    "select": SelectWork,
    "responses": ResponsesWork,
    "multi_responses": MultiResponsesWork,
    "rewards": RewardsWork,
}


def _open_engine(work: ShardWork, ctx: RunContext, task: TaskRef, resume_chunk: int, engines: EngineCache | None):
    if work.engine_kind is None:
        return None
    if work.engine_kind == "scorer":
        build = lambda: build_scorer(ctx.cfg, ctx.reward_path, task=task)  # noqa: E731
        return engines.scorer(build) if engines else build()
    # The engine seed includes the resume point, so a resumed task does not replay the samples of
    # the chunks it already committed (engine-level seeding is all the CPU backend allows).
    seed = derive_seed(ctx.cfg.seed, "engine", task.stage, task.domain, task.shard, resume_chunk)
    build = lambda: build_generator(ctx.cfg, ctx.model, ctx.prompts, seed=seed, task=task)  # noqa: E731
    return engines.generator(build) if engines else build()


def _summary(stage: str, committed: list[pa.Table]) -> dict:
    rows = sum(t.num_rows for t in committed)
    summary: dict = {"rows": rows, "chunks": len(committed)}
    if not committed:
        return summary
    table = pa.concat_tables(committed, promote_options="default")
    names = set(table.column_names)
    if "output_tokens" in names:
        out = table["output_tokens"].to_pylist()
        summary["output_tokens"] = int(sum(sum(v) if isinstance(v, list) else v for v in out))
    if "prompt_tokens" in names:
        summary["prompt_tokens"] = int(sum(table["prompt_tokens"].to_pylist()))
    if "finish_reasons" in names:
        summary["finish_reasons"] = dict(Counter(f for fs in table["finish_reasons"].to_pylist() for f in fs))
    elif "finish_reason" in names:
        summary["finish_reasons"] = dict(Counter(table["finish_reason"].to_pylist()))
    if "drop_reason" in names:
        summary["kept"] = rows - table["instruction"].null_count
        summary["drop_reasons"] = dict(Counter(r for r in table["drop_reason"].to_pylist() if r))
    if "id" in names:
        ids = table["id"].to_pylist()
        summary["first_id"], summary["last_id"] = ids[0], ids[-1]
    return summary


def run_shard(run_dir: Path | str, stage: str, domain: str, shard: int, *, engines: EngineCache | None = None,
              ctx: RunContext | None = None) -> dict:
    """Bring one shard to done; returns its done marker. Safe to call any number of times."""
    ctx = ctx or RunContext(Path(run_dir))
    store = ctx.store.shard(stage, domain, shard)
    if (done := store.done()) is not None:
        return done
    ranges = stage_shards(ctx.cfg, stage, domain)
    if not 0 <= shard < len(ranges):
        raise MagpieError(f"{stage} {domain}: no shard {shard} (this run has {len(ranges)})")
    started = time.monotonic()
    with store.lock() as held:
        if not held:
            raise MagpieError(f"{stage} {domain} shard {shard} is being worked on by another task; not touching it")
        if (done := store.done()) is not None:
            return done
        committed = store.read_committed()
        task = TaskRef(stage, domain, shard)
        work = WORK[stage](ctx, domain, ranges[shard])
        engine, load_seconds, resumed_at = None, 0.0, len(committed)
        while (chunk := work.next_chunk(committed)) is not None:
            if engine is None and work.engine_kind is not None:
                engine = _open_engine(work, ctx, task, resumed_at, engines)
                load_seconds = engine.load_seconds
            chunk_started = time.monotonic()
            table = work.run_chunk(engine, chunk, len(committed), committed)
            store.commit(len(committed), table)
            committed.append(table)
            log.info("%s %s shard %d: chunk %d committed (%d rows, %.1fs)", stage, domain, shard,
                     len(committed) - 1, table.num_rows, time.monotonic() - chunk_started)
        summary = {
            "stage": stage, "domain": domain, "shard": shard, **_summary(stage, committed),
            "resumed_at_chunk": resumed_at, "model_load_seconds": round(load_seconds, 3),
            "seconds": round(time.monotonic() - started, 3), "host": socket.gethostname(),
            "job_id": os.environ.get("SLURM_JOB_ID"), "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"),
            "finished": time.time(),
        }
        if engine is not None and engines is None:
            engine.close()
        store.mark_done(summary)
        return summary
