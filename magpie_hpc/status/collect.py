"""Where a run stands, from the disk and SLURM: every shard classified, summed per stage and domain.

The disk decides what is done (each shard's DONE.json, read through the run's view); SLURM says
what is pending, running, preempted or failed (one `sacct` call for the history, one `squeue` call
for the live queue; squeue alone, said so, where accounting is unavailable). Where the two disagree
(a task COMPLETED without a done marker) the status says so. A run of the local executor (no
jobs.jsonl) is read from the disk only, without any SLURM call. The GPU-time figures come from the
same sacct call, and the measured throughput is computed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from ..calibration import measured_throughput_or_none
from ..context import RunContext
from ..errors import ConfigError, MagpieError
from ..pipeline import INSTRUCTIONS, MERGE_KEY, STAGE_NAMES, stage as stage_spec
from ..plan import instruction_target, stage_shards
from ..shardlock import ShardLock
from ..slurm import states as slurm
from ..slurm.accounting import TaskRecord, shard_states
from ..store import INTERRUPTED, RunStore, ShardView
from .details import failed_shard, merge_status, stage_costs
from .model import Category, Disagreement, FailedShard, RunStatus, StageStatus, StageThroughput, Totals


def shard_target(cfg, stage: str, shard_range) -> int:
    """Records a shard holds when done: clean instructions for stage 1, problems elsewhere."""
    return instruction_target(cfg, shard_range) if stage == INSTRUCTIONS else shard_range.size


def _owner_live(store_path: Path, ft) -> bool:
    lock = ShardLock(store_path, heartbeat_seconds=ft.heartbeat_seconds, stale_seconds=ft.stale_seconds)
    return lock.owner_is_live(lock.read_owner())


def _requeued(disk: ShardView, st, history_known: bool) -> bool:
    if st.requeued:
        return True
    if history_known or st.state != slurm.PENDING or not disk.starts:
        return False
    # squeue alone has no history: a pending task whose shard's last attempt was cut off (SIGTERM
    # recorded, or no end at all) is a preempted or requeued one
    return disk.open_attempt or str((disk.last_end or {}).get("error", "")).startswith(INTERRUPTED)


def _classify(
    disk: ShardView, st, submitted: bool, local: bool, cap: int, owner_live: bool, history_known: bool = True
) -> tuple[Category, str | None]:
    """(category, problem): the disk decides done; SLURM (or a live lock owner) the rest."""
    if disk.done is not None:
        return "done", None
    state = st.state if st is not None else None
    running_now = state in slurm.RUNNING or owner_live
    starts = len(disk.counted_starts)
    if starts >= cap and not running_now:
        return "failed", (
            f"failed permanently: {starts} of fault_tolerance.max_attempts={cap} attempts used"
            + ("" if state is None or state in slurm.UNTOLD else f" (SLURM: {state})")
        )
    if st is not None and st.active:
        if st.running:
            return "running", None
        return ("preempted" if _requeued(disk, st, history_known) else "pending"), None
    if owner_live:
        return "running", None
    if state is not None and state not in slurm.UNTOLD:
        if state == slurm.COMPLETED:
            return "failed", "SLURM says COMPLETED but the shard has no DONE.json"
        if state == slurm.CANCELLED:
            return "cancelled", None
        return "failed", f"task ended {state} without a done marker"
    if local:
        if disk.last_error is not None:
            return "failed", "stopped with an error"
        if disk.open_attempt:
            return "failed", "started, never finished (the process was killed)"
        return "pending", None
    if not submitted:
        return "unsubmitted", None
    if disk.last_error is not None or disk.open_attempt:
        return "failed", "left the SLURM queue without a done marker" + (
            "" if disk.last_error else " (killed before it could record an error)"
        )
    return "cancelled", None


def _rates(s: StageStatus, active: bool, now: float) -> None:
    if s.first_start is None:
        return
    end = now if active else (s.last_activity or now)
    span = max(end - s.first_start, 1e-6)
    s.elapsed_seconds = round(span, 1)
    if s.output_tokens:
        s.tokens_per_second = round(s.output_tokens / span, 2)
    if s.records_done:
        s.problems_per_hour = round(s.records_done / span * 3600, 1)
    remaining = max(0, s.records_target - s.records_done)
    if s.done == s.shards:
        s.eta_seconds = 0.0
    elif s.records_done and active and remaining:
        s.eta_seconds = round(remaining / (s.records_done / span), 0)


def _active(row: StageStatus, local: bool) -> bool:
    return row.running > 0 or (not local and row.pending + row.preempted > 0)


def _empty_row(stage: str, domain: str) -> StageStatus:
    return StageStatus(
        stage=stage,
        domain=domain,
        shards=0,
        record_unit=stage_spec(stage).record_unit,
        records_done=0,
        records_target=0,
        output_tokens=0,
        prompt_tokens=0,
        truncated=0,
        completions=0,
        attempts=0,
        retries=0,
        preemptions=0,
        compute_seconds=0.0,
        first_start=None,
        last_activity=None,
        elapsed_seconds=None,
        tokens_per_second=None,
        problems_per_hour=None,
        eta_seconds=None,
    )


def _totals_row(stage: str, rows: list[StageStatus], now: float, active: bool) -> StageStatus:
    agg = _empty_row(stage, "all")
    for r in rows:
        for name in (
            "shards",
            "done",
            "running",
            "pending",
            "preempted",
            "failed",
            "cancelled",
            "unsubmitted",
            "records_done",
            "records_target",
            "output_tokens",
            "prompt_tokens",
            "truncated",
            "completions",
            "attempts",
            "retries",
            "preemptions",
        ):
            setattr(agg, name, getattr(agg, name) + getattr(r, name))
        agg.compute_seconds = round(agg.compute_seconds + r.compute_seconds, 3)
    agg.first_start = min((r.first_start for r in rows if r.first_start is not None), default=None)
    agg.last_activity = max((r.last_activity for r in rows if r.last_activity is not None), default=None)
    _rates(agg, active, now)
    return agg


@dataclass
class _Slurm:
    """What SLURM says about the run, from one sacct and one squeue call (none for a local run)."""

    states: dict
    source: Literal["sacct", "squeue", "disk"]
    note: str | None = None
    records: list[TaskRecord] | None = None  # sacct's runs of every task: the GPU time


def _ask_slurm(store: RunStore, local: bool, use_sacct: bool | None, notes: list[str]) -> _Slurm:
    if local:
        return _Slurm({}, "disk")
    result = shard_states(store, use_sacct=use_sacct)
    if result.source != "sacct":
        notes.append(
            f"{result.note or 'SLURM accounting not used'}: states from squeue and the disk only; tasks "
            "that left the queue show as done (DONE.json) or failed/cancelled (attempts.jsonl), without "
            "exit codes"
        )
        return _Slurm(result.shards, "squeue", result.note)
    if not result.squeue_ok:
        notes.append("squeue failed: the live queue is as slurmdbd last recorded it")
    return _Slurm(result.shards, "sacct", result.note, result.records)


@dataclass
class _Walk:
    """What walking a run's shards found, beyond the rows."""

    ctx: RunContext
    slurm: _Slurm
    submitted: set
    local: bool
    now: float
    failed: list[FailedShard] = field(default_factory=list)
    disagreements: list[Disagreement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    active: bool = False

    def row(self, stage: str, domain: str) -> StageStatus:
        row = _empty_row(stage, domain)
        starts, ends = [], []
        for rng in stage_shards(self.ctx.cfg, stage, domain):
            disk = self.shard(row, (stage, domain, rng.shard))
            row.records_target += shard_target(self.ctx.cfg, stage, rng)
            if disk.first_start is not None:
                starts.append(disk.first_start)
            if disk.last_activity is not None:
                ends.append(disk.last_activity)
        row.first_start = min(starts, default=None)
        row.last_activity = max(ends, default=None)
        _rates(row, _active(row, self.local), self.now)
        return row

    def shard(self, row: StageStatus, key: tuple[str, str, int]) -> ShardView:
        """Classify one shard and add it to its stage's row."""
        ctx, ft = self.ctx, self.ctx.cfg.fault_tolerance
        stage, domain, shard = key
        where = f"{stage} {domain} shard {shard}"
        shard_store = ctx.store.shard(*key)
        disk = ctx.view.shard(*key)
        st = self.slurm.states.get(key)
        live = disk.done is None and _owner_live(shard_store.path, ft)
        category, problem = _classify(
            disk, st, key in self.submitted, self.local, ft.max_attempts, live, self.slurm.source == "sacct"
        )
        damage = shard_store.damage() if disk.done is not None else []
        if damage:  # a done marker over a chunk that changed is not done
            category = "failed"
            problem = (
                f"damaged: {damage[0].removeprefix(shard_store.label + ': ')}"
                + (f" (and {len(damage) - 1} more)" if len(damage) > 1 else "")
                + "; `resubmit` moves it aside and redoes the shard"
            )
        self.notes += [
            f"{shard_store.label}: {p} is not a file the package writes; left alone, not read as a chunk"
            for p in shard_store.stray_files()
        ]
        setattr(row, category, getattr(row, category) + 1)
        row.shards += 1
        row.records_done += disk.records
        row.output_tokens += disk.output_tokens
        row.attempts += len(disk.starts)
        row.retries += disk.retries
        if self.slurm.source == "sacct":
            row.preemptions += st.preemptions if st is not None else 0
        else:
            row.preemptions += disk.interrupted
        if disk.done is not None:
            d = disk.done
            row.prompt_tokens += int(d.get("prompt_tokens", 0))
            reasons = d.get("finish_reasons") or {}
            row.truncated += int(reasons.get("length", 0))
            row.completions += int(sum(reasons.values()))
            row.compute_seconds = round(row.compute_seconds + float(d.get("seconds", 0.0)), 3)
            if st is not None and st.state in slurm.FAILED:
                self.disagreements.append(
                    Disagreement(
                        stage=stage,
                        domain=domain,
                        shard=shard,
                        kind="done_but_slurm_failed",
                        message=f"{where}: DONE.json is there but SLURM says {st.state} for task {st.job_id} "
                        "(the shard counts as done)",
                    )
                )
        if category == "running" or (not self.local and category in ("pending", "preempted")):
            self.active = True  # (a local run's pending shards wait for a process that may be gone)
        if category == "failed":
            self.failed.append(failed_shard(ctx.store, key, problem or "failed", disk, st, ft.max_attempts))
            self.failed[-1].damaged = bool(damage)
            if st is not None and st.state == slurm.COMPLETED:
                self.disagreements.append(
                    Disagreement(
                        stage=stage,
                        domain=domain,
                        shard=shard,
                        kind="completed_without_marker",
                        message=f"{where}: SLURM says task {st.job_id} COMPLETED but there is no DONE.json; "
                        "resubmit redoes it",
                    )
                )
        return disk


def collect_status(run_dir: Path | str, use_sacct: bool | None = None) -> RunStatus:
    """The status of a run. `use_sacct`: None = use accounting where it works, False = squeue only
    (and the GPU time then from the disk's wall-clock seconds). Raises MagpieError (exit code 2 in
    the CLI) for a path that is not a run directory."""
    store = RunStore(Path(run_dir))
    try:
        store.read_manifest()
    except MagpieError as exc:  # not a run directory: bad input, exit code 2
        raise ConfigError(str(exc)) from None
    ctx = RunContext(Path(run_dir))
    from ..damage import check_run_files

    check_run_files(ctx)  # a damaged run file: one line naming it, exit 2
    cfg, cap = ctx.cfg, ctx.cfg.fault_tolerance.max_attempts
    now = time.time()
    submissions = ctx.view.submissions()
    submitted = {key for sub in submissions for key in sub.keys}
    local = not submissions
    notes: list[str] = []
    found = _ask_slurm(store, local, use_sacct, notes)
    walk = _Walk(ctx, found, submitted, local, now, notes=notes)
    rows = [walk.row(stage, domain) for stage in STAGE_NAMES for domain in cfg.domains]
    rows.sort(key=lambda r: (cfg.domains.index(r.domain), STAGE_NAMES.index(r.stage)))
    if len(cfg.domains) > 1:
        for stage in STAGE_NAMES:
            mine = [r for r in rows if r.stage == stage]
            rows.append(_totals_row(stage, mine, now, any(_active(r, local) for r in mine)))

    merge = merge_status(ctx, found.states.get(MERGE_KEY), MERGE_KEY in submitted, local)
    if merge.state == "running" or (merge.state == "pending" and not local):
        walk.active = True
    if merge.state == "failed":
        walk.failed.append(
            failed_shard(
                store,
                MERGE_KEY,
                "the merge job ended without writing the dataset",
                ctx.view.shard(*MERGE_KEY, progress=False),
                found.states.get(MERGE_KEY),
                cap,
            )
        )
    per_domain = [r for r in rows if r.domain != "all"]
    totals = Totals(**{name: sum(getattr(r, name) for r in per_domain) for name in Totals.model_fields})
    complete = totals.done == totals.shards and merge.state == "done"
    if complete:
        state, exit_code = "complete", 0
    elif walk.failed:
        state, exit_code = "failed", 1
    elif walk.active:
        state, exit_code = "running", 0
    else:
        state, exit_code = "stopped", 1
    if totals.unsubmitted:
        notes.append(
            f"{totals.unsubmitted} shard(s) were never submitted; "
            f"`python -m magpie_hpc resubmit {store.run_dir}` submits them"
        )
    if state == "stopped" and not local:
        notes.append(
            "nothing is queued and the run is not complete; "
            f"`python -m magpie_hpc resubmit {store.run_dir}` continues it"
        )
    etas = [r.eta_seconds for r in rows if r.eta_seconds and r.done < r.shards]
    throughput, why_not = measured_throughput_or_none(ctx)
    if why_not:
        notes.append(why_not)
    return RunStatus(
        run_dir=str(store.run_dir),
        run_name=ctx.manifest.get("run_name", store.run_dir.name),
        executor="local" if local else "slurm",
        source=found.source,
        source_note=found.note,
        checked_at=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        state=state,
        complete=complete,
        active=walk.active,
        exit_code=exit_code,
        max_attempts=cap,
        eta_seconds=max(etas) if etas and walk.active else (0.0 if complete else None),
        totals=totals,
        stages=rows,
        merge=merge,
        failed=walk.failed,
        disagreements=walk.disagreements,
        notes=notes,
        throughput=[StageThroughput(**r) for r in throughput],
        gpu_hours=stage_costs(ctx, found.records, throughput),
    )
