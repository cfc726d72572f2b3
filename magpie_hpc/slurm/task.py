"""What runs inside an array task on a compute node: one shard through the shared runner.

A Checkpointable callable. On USR2 (the time-limit warning, `signal_delay_s` before the limit) the
runner stops queueing requests and keeps journaling those that finish for most of that warning
time, then stops; only then is submitit's own USR2 handler run, which calls `checkpoint` and
requeues the same arguments, as it would have at once. The rerun resumes after the last committed
chunk, with the journaled requests. On preemption SLURM requeues the task itself with the same
effect.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import submitit

from ..task_identity import slurm_task_identity

# Of the time-limit warning (signal_delay_s), what the requeue itself needs after the drain: the
# checkpoint pickle, `scontrol requeue` (a busy controller answers in seconds), the engine's
# shutdown and the exit, all before SLURM's kill at the limit, which would end the task unrequeued.
REQUEUE_MARGIN_SECONDS = 15.0


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
        from ..stages.interrupts import Interrupted
        from .submit import stage_resources

        _logging()
        log = logging.getLogger("magpie_hpc")
        ctx = RunContext(Path(run_dir))
        jitter = ctx.cfg.fault_tolerance.start_jitter_seconds
        if jitter and ctx.store.shard(stage, domain, shard).done() is None:
            time.sleep(random.uniform(0, jitter))  # no start-up stampede on the filesystem and caches
        _compile_caches(run_dir)
        log.info(
            "task: %s %s shard %d in %s (restart %s)",
            stage,
            domain,
            shard,
            run_dir,
            slurm_task_identity().restart_count or 0,
        )
        warning = stage_resources(ctx.cfg, stage, ctx.model.tensor_parallel_size).signal_delay_s
        try:
            return run_shard(ctx, stage, domain, shard, time_limit_drain=warning - REQUEUE_MARGIN_SECONDS)
        except Interrupted as stop:
            requeue = signal.getsignal(signal.SIGUSR2)  # submitit's again, now that the runner is done
            if not stop.time_limit or not callable(requeue):
                raise
            self._stop_logged = True  # the runner logged the USR2 when it came
            requeue(signal.SIGUSR2, None)  # checkpoint() below, `scontrol requeue`, exit
            raise  # (reached only if submitit's handler returned without exiting)

    def checkpoint(self, run_dir: str, stage: str, domain: str, shard: int):
        """Time limit near (USR2): requeue the same shard; it resumes after its last committed chunk
        and the requests journaled since."""
        from ..shardlock import mark_all_released
        from ..stages.interrupts import TIME_LIMIT
        from ..store import RunStore

        # Not pickled into the requeued task (super().checkpoint pickles self): popped first.
        if not self.__dict__.pop("_stop_logged", False):
            # USR2 came outside the runner's chunk loop (start-up, waiting for the lock): logged here
            mark_all_released()  # before anything else: the requeued task takes the shard at once
            # a stop by the clock, not a failure of the shard: it does not count toward max_attempts
            RunStore(Path(run_dir)).shard(stage, domain, shard).log_interruption(TIME_LIMIT)
        if slurm_task_identity().in_slurm and shutil.which("scontrol") is None:
            logging.getLogger("magpie_hpc").warning(
                "time limit: cannot requeue from this node (no scontrol); the shard keeps its committed "
                "chunks and is left for `python -m magpie_hpc resubmit RUN_DIR`"
            )
            return None
        return super().checkpoint(run_dir, stage, domain, shard)


class MergeTask(submitit.helpers.Checkpointable):
    def __call__(self, run_dir: str) -> dict:
        from ..context import RunContext
        from ..merge import merge_run
        from .accounting import run_accounting

        _logging()
        # GPU-hours of the run summary from sacct (every run of every task, preempted ones included)
        return merge_run(RunContext(Path(run_dir)), accounting=run_accounting)
