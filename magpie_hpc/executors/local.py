"""Run the whole DAG on this machine, in dependency order, with the same stage code as SLURM.

Stage-major order over all domains means the generator is loaded once for all generation and the
reward model once for all scoring (one model resident at a time, as on a single GPU).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..context import RunContext
from ..damage import repair_damaged
from ..engine import EngineCache
from ..errors import RerunUpstream
from ..merge import merge_run
from ..pipeline import STAGE_NAMES
from ..plan import stage_shards
from ..stages import run_shard
from .base import Executor, LaunchResult, Notify, silent

log = logging.getLogger("magpie_hpc")


class LocalExecutor(Executor):
    name = "local"

    def launch(self, run_dir: Path) -> LaunchResult:
        return self._run_all(RunContext(run_dir))

    def resume(self, run_dir: Path, notify: Notify = silent) -> LaunchResult:
        ctx = RunContext(run_dir)
        for message in repair_damaged(ctx):  # moved aside, never deleted; the run below redoes it
            notify(f"damaged, redoing: {message}")
        return self._run_all(ctx)  # done shards return at once: only what is left runs

    def _run_all(self, ctx: RunContext) -> LaunchResult:
        engines = EngineCache()
        try:
            for stage in STAGE_NAMES:  # pipeline order: every stage after the one it reads
                for domain in ctx.cfg.domains:
                    for shard in stage_shards(ctx.cfg, stage, domain):
                        self._complete(ctx, engines, stage, domain, shard.shard)
        finally:
            engines.close()
        summary = merge_run(ctx)
        return LaunchResult(executor=self.name, run_dir=ctx.run_dir, summary=summary, out=(str(ctx.run_dir),))

    def _complete(self, ctx: RunContext, engines: EngineCache, stage: str, domain: str, shard: int) -> None:
        for _ in range(ctx.cfg.fault_tolerance.max_attempts):
            try:
                summary = _run_shard(ctx, engines, stage, domain, shard)
                break
            except RerunUpstream as exc:
                # What `resubmit` does on SLURM: run the reopened upstream shards, then this one again.
                log.warning("%s", exc)
                for upstream_shard in exc.shards:
                    _run_shard(ctx, engines, exc.stage, exc.domain, upstream_shard)
        else:
            summary = _run_shard(ctx, engines, stage, domain, shard)
        log.info("%s %s shard %d done: %d rows", stage, domain, shard, summary.get("rows", 0))


def _run_shard(ctx: RunContext, engines: EngineCache, stage: str, domain: str, shard: int) -> dict:
    """The one call of the shard runner, shared by the DAG walk and the reruns it asks for."""
    return run_shard(ctx, stage, domain, shard, engines=engines)
