"""The SLURM executor: submits the DAG and returns; `status` and `resubmit` take it from there."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import RunConfig
from ..context import RunContext
from ..pipeline import STAGE_NAMES
from ..plan import stage_shards
from ..slurm.preflight import preflight
from ..slurm.submit import SubmitPlan, Submitter, check_submission, submission_values
from .base import Executor

log = logging.getLogger("magpie_hpc")


class SlurmExecutor(Executor):
    name = "slurm"

    def preflight(self, cfg: RunConfig) -> None:
        check_submission(submission_values(cfg))  # before any sinfo/sacctmgr call sees them
        preflight(cfg)

    def run(self, run_dir: Path) -> list:
        ctx = RunContext(run_dir)
        todo = {
            (stage, domain): [s.shard for s in stage_shards(ctx.cfg, stage, domain)]
            for stage in STAGE_NAMES for domain in ctx.cfg.domains
        }
        pieces = Submitter(ctx).submit(SubmitPlan(todo=todo))
        for p in pieces:
            log.info("submitted %s %s shards %s as job %s (%s)", p.stage, p.domain, _span(p.shards), p.job_id,
                     p.dependency or "no dependency")
        return pieces


def _span(shards: list[int]) -> str:
    return f"{shards[0]}-{shards[-1]}" if len(shards) > 1 else str(shards[0])
