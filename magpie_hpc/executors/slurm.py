"""The SLURM executor: submits the DAG and returns; `status` and `resubmit` take it from there."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..context import RunContext
from ..pipeline import STAGE_NAMES
from ..plan import stage_shards
from ..slurm import cluster
from ..slurm.preflight import preflight
from ..slurm.resubmit import resubmit
from ..slurm.submit import SubmitPlan, Submitter, check_submission, submission_values
from .base import Executor, LaunchResult, Notify, silent

log = logging.getLogger("magpie_hpc")


class SlurmExecutor(Executor):
    name = "slurm"

    def preflight(self, cfg: RunConfig) -> None:
        check_submission(submission_values(cfg))  # before any sinfo/sacctmgr call sees them
        preflight(cfg)

    def max_array_size(self) -> int:
        return cluster.max_array_size()

    def launch(self, run_dir: Path) -> LaunchResult:
        ctx = RunContext(run_dir)
        todo = {
            (stage, domain): [s.shard for s in stage_shards(ctx.cfg, stage, domain)]
            for stage in STAGE_NAMES
            for domain in ctx.cfg.domains
        }
        pieces = Submitter(ctx).submit(SubmitPlan(todo=todo))
        for p in pieces:
            log.info(
                "submitted %s %s shards %s as job %s (%s)",
                p.stage,
                p.domain,
                _span(p.shards),
                p.job_id,
                p.dependency or "no dependency",
            )
        return LaunchResult(
            executor=self.name,
            run_dir=ctx.run_dir,
            submitted=tuple(pieces),
            err=(f"submitted; watch with: python -m magpie_hpc status {ctx.run_dir}",),
            out=(str(ctx.run_dir),),
        )

    def resume(self, run_dir: Path, notify: Notify = silent) -> LaunchResult:
        """Resubmit only what is neither done nor queued (slurm/resubmit.py)."""
        ctx = RunContext(run_dir)
        result = resubmit(ctx)
        for message in result.repaired:
            notify(f"damaged, redoing: {message}")
        out = [
            f"submitted {p.stage} {p.domain} shards {p.shards} as job {p.job_id} ({p.dependency or 'no dependency'})"
            for p in result.pieces
        ]
        if result.cancelled:
            out.append(f"cancelled stuck dependents: {', '.join(result.cancelled)}")
        if not result.pieces:
            out.append(f"nothing to resubmit ({result.active} task(s) pending or running; source: {result.source})")
        return LaunchResult(
            executor=self.name,
            run_dir=ctx.run_dir,
            submitted=tuple(result.pieces),
            failed=tuple(result.failed),
            out=tuple(out),
            err=tuple(f"failed, attempt cap reached (not resubmitted): {f}" for f in result.failed),
        )


def _span(shards: list[int]) -> str:
    return f"{shards[0]}-{shards[-1]}" if len(shards) > 1 else str(shards[0])
