"""What runs inside an array task on a compute node: one shard through the shared runner.

A Checkpointable callable: on USR2 (time limit) submitit calls `checkpoint` and requeues the same
arguments; the rerun resumes after the last committed chunk. On preemption SLURM requeues the task
itself with the same effect.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import submitit


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)


class ShardTask(submitit.helpers.Checkpointable):
    def __call__(self, run_dir: str, stage: str, domain: str, shard: int) -> dict:
        from ..stages import run_shard

        _logging()
        logging.getLogger("magpie_hpc").info("task: %s %s shard %d in %s", stage, domain, shard, run_dir)
        return run_shard(Path(run_dir), stage, domain, shard)


class MergeTask(submitit.helpers.Checkpointable):
    def __call__(self, run_dir: str) -> dict:
        from ..merge import merge_run

        _logging()
        return merge_run(Path(run_dir))
