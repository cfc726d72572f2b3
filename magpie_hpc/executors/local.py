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
from ..pipeline import STAGE_NAMES, stage as stage_spec
from ..plan import stage_shards
from ..stages import run_shard
from ..stages.select import NeedMoreInstructions
from .base import Executor

log = logging.getLogger("magpie_hpc")

class LocalExecutor(Executor):
    name = "local"

    def run(self, run_dir: Path) -> dict:
        ctx = RunContext(run_dir)
        engines = EngineCache()
        try:
            for stage in STAGE_NAMES:  # pipeline order: every stage after the one it reads
                for domain in ctx.cfg.domains:
                    for shard in stage_shards(ctx.cfg, stage, domain):
                        self._run(ctx, engines, stage, domain, shard.shard)
        finally:
            engines.close()
        return merge_run(run_dir, ctx=ctx)

    def _run(self, ctx: RunContext, engines: EngineCache, stage: str, domain: str, shard: int) -> None:
        for _ in range(ctx.cfg.fault_tolerance.max_attempts):
            try:
                summary = run_shard(ctx.run_dir, stage, domain, shard, engines=engines, ctx=ctx)
                break
            except NeedMoreInstructions as exc:
                # What `resubmit` does on SLURM: generate the missing instructions, select again.
                log.warning("%s", exc)
                upstream = stage_spec(stage).upstream
                for ins in stage_shards(ctx.cfg, upstream, domain):
                    run_shard(ctx.run_dir, upstream, domain, ins.shard, engines=engines, ctx=ctx)
        else:
            summary = run_shard(ctx.run_dir, stage, domain, shard, engines=engines, ctx=ctx)
        log.info("%s %s shard %d done: %d rows", stage, domain, shard, summary.get("rows", 0))
