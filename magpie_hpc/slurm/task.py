"""What runs inside an array task on a compute node: one shard through the shared runner.

A Checkpointable callable: on USR2 (time limit) submitit calls `checkpoint` and requeues the same
arguments; the rerun resumes after the last committed chunk. On preemption SLURM requeues the task
itself with the same effect.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

import submitit


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)


def _compile_caches(run_dir: str) -> None:
    """Compile caches inside the run directory, shared by the run's tasks (compile_cache.py, around
    each engine load). The model cache is only read: jobs run with HF_HUB_OFFLINE=1."""
    from ..compile_cache import ROOT_ENV

    os.environ[ROOT_ENV] = str(Path(run_dir) / "cache" / "compile")  # this run's, whatever the shell had


class ShardTask(submitit.helpers.Checkpointable):
    def __call__(self, run_dir: str, stage: str, domain: str, shard: int) -> dict:
        from ..context import RunContext
        from ..stages import run_shard

        _logging()
        log = logging.getLogger("magpie_hpc")
        ctx = RunContext(Path(run_dir))
        jitter = ctx.cfg.fault_tolerance.start_jitter_seconds
        if jitter and ctx.store.shard(stage, domain, shard).done() is None:
            time.sleep(random.uniform(0, jitter))  # no start-up stampede on the filesystem and caches
        _compile_caches(run_dir)
        log.info("task: %s %s shard %d in %s (restart %s)", stage, domain, shard, run_dir,
                 os.environ.get("SLURM_RESTART_COUNT", "0"))
        return run_shard(Path(run_dir), stage, domain, shard, ctx=ctx)

    def checkpoint(self, run_dir: str, stage: str, domain: str, shard: int):
        """Time limit near (USR2): requeue the same shard; it resumes after its last committed chunk."""
        from ..shardlock import mark_all_released
        from ..store import RunStore

        mark_all_released()  # before anything else: the requeued task takes the shard at once
        # a stop by the clock, not a failure of the shard: it does not count toward max_attempts
        RunStore(Path(run_dir)).shard(stage, domain, shard).log_interruption("USR2 (time limit)")
        if shutil.which("scontrol") is None:
            logging.getLogger("magpie_hpc").warning(
                "time limit: cannot requeue from this node (no scontrol); the shard keeps its committed "
                "chunks and is left for `python -m magpie_hpc resubmit RUN_DIR`")
            return None
        return super().checkpoint(run_dir, stage, domain, shard)


class MergeTask(submitit.helpers.Checkpointable):
    def __call__(self, run_dir: str) -> dict:
        from ..merge import merge_run
        from .accounting import run_accounting

        _logging()
        # GPU-hours of the run summary from sacct (every run of every task, preempted ones included)
        return merge_run(Path(run_dir), accounting=run_accounting)
