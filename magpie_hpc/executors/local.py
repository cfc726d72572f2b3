"""Run the whole DAG on this machine, in dependency order, with the same stage code as SLURM.

Stage-major order over all domains means the generator is loaded once for all generation and the
reward model once for all scoring (one model resident at a time, as on a single GPU).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..context import RunContext
from ..engine import EngineCache
from ..merge import merge_run
from ..plan import stage_shards
from ..stages import run_shard
from ..stages.select import NeedMoreInstructions
from .base import Executor

log = logging.getLogger("magpie_hpc")

ORDER = ("instructions", "select", "responses", "multi_responses", "rewards")


class LocalExecutor(Executor):
    name = "local"

    def run(self, run_dir: Path) -> dict:
        ctx = RunContext(run_dir)
        engines = EngineCache()
        try:
            for stage in ORDER:
                for domain in ctx.cfg.domains:
                    for shard in stage_shards(ctx.cfg, stage, domain):
                        self._run(ctx, engines, stage, domain, shard.shard)
        finally:
            engines.close()
        return merge_run(run_dir, ctx=ctx)

    def _run(self, ctx: RunContext, engines: EngineCache, stage: str, domain: str, shard: int) -> None:
        for _ in range(ctx.cfg.fault_tolerance.max_attempts):
            try:
                summary = run_shard(ctx, stage, domain, shard, engines=engines)
                break
            except NeedMoreInstructions as exc:
                # What `resubmit` does on SLURM: generate the missing instructions, select again.
                log.warning("%s", exc)
                for ins in stage_shards(ctx.cfg, "instructions", domain):
                    run_shard(ctx, "instructions", domain, ins.shard, engines=engines)
        else:
            summary = run_shard(ctx, stage, domain, shard, engines=engines)
        log.info("%s %s shard %d done: %d rows", stage, domain, shard, summary.get("rows", 0))
