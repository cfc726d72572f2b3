"""The parts of a status beside the stage table: the merge, failed shards with the tail of their
log, and the GPU-hours spent against the plan."""

from __future__ import annotations

import re
from pathlib import Path

from ..context import RunContext
from ..pipeline import stage as stage_spec
from ..slurm import states as slurm
from ..slurm.accounting import TaskRecord, summary_accounting
from ..slurm.logs import task_paths, tasks_that_ran
from ..store import RunStore, ShardView
from .model import FailedShard, MergeStatus, StageCost

LOG_TAIL_LINES = 8

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    out = [_ANSI.sub("", line).rstrip()[:400] for line in text.splitlines()]
    # Python's ^^^^ markers under traceback lines take room and say nothing here.
    return [line for line in out if line.strip() and line.strip(" ^~")][-lines:]


def stage_costs(ctx: RunContext, records: list[TaskRecord] | None, throughput: list[dict]) -> list[StageCost]:
    """The run summary's cost figures, now: from the sacct records status already has (no second
    call), or from the disk's wall-clock seconds without them."""
    from ..run_summary import build_run_summary

    accounting = None if records is None else (lambda store: summary_accounting(records))
    summary = build_run_summary(ctx, accounting, throughput=throughput)
    source = "wall_clock" if summary["gpu_hours_source"] == "wall_clock" else "sacct"
    return [
        StageCost(
            stage=stage,
            gpu_hours=m["gpu_hours"],
            gpu_hours_planned=m["gpu_hours_planned"],
            gpu_hours_cut_short=m["gpu_hours_cut_short"],
            gpu_hours_discarded=m["gpu_hours_discarded"],
            source=source,
        )
        for stage, m in ((stage, block["total"]) for stage, block in summary["stages"].items())
        if stage_spec(stage).gpu
    ]


def merge_status(ctx: RunContext, st, submitted: bool, local: bool) -> MergeStatus:
    if ctx.view.merged() is not None:
        return MergeStatus(state="done", job_id=st.job_id if st else None, slurm_state=st.state if st else None)
    if st is None or st.state in slurm.UNTOLD:
        state = "pending" if local else ("cancelled" if submitted else "unsubmitted")
        return MergeStatus(state=state, job_id=st.job_id if st else None)
    if st.active:
        state = "running" if st.running else "pending"
    else:
        state = "cancelled" if st.state == slurm.CANCELLED else "failed"
    return MergeStatus(
        state=state, job_id=st.job_id, slurm_state=st.state, reason=slurm.end_reason(st.state, st.reason)
    )


def failed_shard(store: RunStore, key, problem: str, disk: ShardView, st, cap: int) -> FailedShard:
    stage, domain, shard = key
    # The task that last ran the shard: SLURM's record, else the newest attempt's own record.
    job_id = st.job_id if st is not None else None
    logs = [task_paths(store, task).stderr for task in tasks_that_ran(store, key, job_id)]
    log = next((p for p in logs if p.exists()), logs[0] if logs else None)
    return FailedShard(
        stage=stage,
        domain=domain,
        shard=shard,
        problem=problem,
        permanent=problem.startswith("failed permanently"),
        slurm_state=st.state if st is not None else None,
        job_id=job_id,
        node=(st.node or None) if st else None,
        exit_code=(st.exit_code or None) if st else None,
        reason=slurm.end_reason(st.state, st.reason) if st else None,
        attempts=len(disk.counted_starts),
        max_attempts=cap,
        last_error=disk.last_error,
        log_path=str(log) if log else None,
        log_tail=log_tail(log) if log else [],
    )
