"""Where a run stands, from the disk and SLURM: `python -m magpie_hpc status RUN_DIR`.

The disk decides what is done (each shard's DONE.json); SLURM says what is pending, running,
preempted or failed (one `sacct` call for the history, one `squeue` call for the live queue; squeue
alone, said so, where accounting is unavailable). Where the two disagree (a task COMPLETED without
a done marker) the status says so. A run of the local executor (no jobs.jsonl) is read from the
disk only, without any SLURM call.

`collect_status` returns a `RunStatus` (pydantic; its JSON schema is `status_schema.json`, written
by `write_schema`), `render_table` the text the command prints. Exit codes: 0 complete, or active
without failures; 1 any shard failed, or the run stopped incomplete; 2 not a run directory.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .calibration import measured_throughput_or_none, throughput_line
from .context import RunContext
from .errors import ConfigError, MagpieError
from .pipeline import MERGE, MERGE_KEY, STAGE_NAMES, stage as stage_spec
from .plan import stage_shards
from .run_summary import ShardDisk, read_shard, shard_target
from .shardlock import ShardLock
from .slurm.accounting import ACTIVE
from .store import INTERRUPTED, RunStore

SCHEMA_PATH = Path(__file__).resolve().parent / "status_schema.json"
LOG_TAIL_LINES = 8
RUNNING_STATES = {"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"}
# What slurmctld itself gives as the reason of a job that ended so (sacct's Reason column keeps the
# last pending reason, e.g. "Dependency", which says nothing about why a task ended).
END_REASONS = {"FAILED": "NonZeroExitCode", "TIMEOUT": "TimeLimit", "OUT_OF_MEMORY": "OutOfMemory",
               "NODE_FAIL": "NodeFail", "BOOT_FAIL": "BootFail", "DEADLINE": "Deadline",
               "PREEMPTED": "Preempted", "CANCELLED": "Cancelled"}

Category = Literal["done", "running", "pending", "preempted", "failed", "cancelled", "unsubmitted"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageStatus(_Model):
    """One stage of one domain, or of all domains (domain "all")."""

    stage: str
    domain: str
    shards: int = Field(description="Shards (array tasks) this stage has for the domain.")
    done: int = Field(0, description="Shards with a done marker (DONE.json): the disk decides.")
    running: int = Field(0, description="Not done; SLURM says running (or, without SLURM, a live lock owner).")
    pending: int = Field(0, description=(
            "Not done; queued in SLURM (dependency, throttle, resources) or not reached yet by the "
            "local executor."))
    preempted: int = Field(0, description="Not done; preempted or its node failed, waiting in SLURM to run again.")
    failed: int = Field(0, description=(
            "Not done and not queued: the task failed, ended without a done marker, or the shard is "
            "past its attempt cap."))
    cancelled: int = Field(0, description=(
            "Not done and not queued: cancelled (scancel, or a dependency that can never be "
            "satisfied)."))
    unsubmitted: int = Field(0, description="Not done and never submitted (not in jobs.jsonl).")
    record_unit: str = Field(description=(
            "What records count: clean instructions for `instructions`, problems elsewhere."))
    records_done: int = Field(description=(
            "Records in done shards (DONE.json rows, `kept` for instructions) plus committed chunks "
            "of unfinished shards."))
    records_target: int = Field(description="Records the stage holds when complete.")
    output_tokens: int = Field(description="Generated tokens (done shards plus committed chunks).")
    prompt_tokens: int = Field(description="Prompt tokens of done shards.")
    truncated: int = Field(description="Completions of done shards that hit max_tokens (finish reason `length`).")
    completions: int = Field(description="Completions of done shards (all finish reasons).")
    attempts: int = Field(description="Task starts recorded in the shards' attempts.jsonl.")
    retries: int = Field(description="Starts beyond the first, summed over shards.")
    preemptions: int = Field(description="Preempted/requeued runs (SLURM history; interrupted attempts without it).")
    compute_seconds: float = Field(description="Sum of DONE.json `seconds` (final attempt of each done shard).")
    first_start: float | None = Field(description="Unix time of the first attempt of any shard.")
    last_activity: float | None = Field(description="Unix time of the latest attempt event or done marker.")
    elapsed_seconds: float | None = Field(description=(
            "Wall time the rates are measured over: first start to now (while active) or to the last "
            "activity."))
    tokens_per_second: float | None = Field(description=(
            "Generated tokens per second over elapsed_seconds, all tasks together."))
    problems_per_hour: float | None = Field(description="Records per hour over elapsed_seconds, all tasks together.")
    eta_seconds: float | None = Field(description=(
            "Remaining records at the measured rate; 0 when done; null when nothing measured or "
            "nothing queued."))


class FailedShard(_Model):
    stage: str
    domain: str
    shard: int
    problem: str = Field(description="One line: what went wrong.")
    permanent: bool = Field(description="Past fault_tolerance.max_attempts failed starts: resubmit will not retry it.")
    damaged: bool = Field(False, description=(
            "Done once, but a committed chunk no longer matches the row count and sha256 recorded when "
            "it was committed: not counted as done; resubmit moves the chunk aside and redoes the shard."))
    slurm_state: str | None = None
    job_id: str | None = Field(None, description="SLURM task id, e.g. 123_4.")
    node: str | None = None
    exit_code: str | None = Field(None, description="SLURM exit code, `code:signal`.")
    reason: str | None = Field(None, description="SLURM reason.")
    attempts: int = Field(0, description="Failed starts: those a signal stopped (preemption, time limit) do not count.")
    max_attempts: int = 0
    last_error: str | None = Field(None, description="Last error recorded in the shard's attempts.jsonl.")
    log_path: str | None = Field(None, description="The task's stderr log (submitit).")
    log_tail: list[str] = Field(default_factory=list, description="Last lines of that log.")


class Disagreement(_Model):
    stage: str
    domain: str
    shard: int
    kind: Literal["completed_without_marker", "done_but_slurm_failed"]
    message: str


class MergeStatus(_Model):
    state: Category
    job_id: str | None = None
    slurm_state: str | None = None
    reason: str | None = None


class Totals(_Model):
    shards: int
    done: int
    running: int
    pending: int
    preempted: int
    failed: int
    cancelled: int
    unsubmitted: int
    output_tokens: int
    attempts: int
    retries: int
    preemptions: int


class StageThroughput(_Model):
    stage: str
    domain: str
    planned_tokens_per_second_per_gpu: float = Field(description="What the plan sized shards with (roofline or configured).")
    measured_tokens_per_second_per_gpu: float | None = Field(description=(
            "Output tokens over GPU-seconds generating (DONE.json seconds less model load, x the task's GPUs) of "
            "done shards that ran from their start; null before any."))
    measured_shards: int
    output_tokens: int
    gpu_seconds: float
    tensor_parallel_size: int
    gpu: str
    measured_on_gpu: bool = Field(description="False where the engine ran without a GPU (CPU or synthetic).")


class StageCost(_Model):
    """One GPU stage's time: spent, planned, and what went to waste."""

    stage: str
    gpu_hours: float = Field(description="Spent: sacct's elapsed x GPUs of every run (wall-clock hours without accounting).")
    gpu_hours_planned: float | None = Field(description="The plan's figure for the stage (null where it cannot say).")
    gpu_hours_cut_short: float = Field(description="Spent on runs a preemption, kill, time limit or failure cut short.")
    gpu_hours_discarded: float = Field(description=(
            "Response stages: the share of the finished runs' time that made responses thrown away (cut off "
            "at max_tokens or stopped as loops), by tokens."))
    source: Literal["sacct", "wall_clock"]


class RunStatus(_Model):
    """Everything `status` knows about a run; `--json` prints exactly this."""

    schema_version: Literal[1] = 1
    run_dir: str
    run_name: str
    executor: Literal["slurm", "local"] = Field(description="slurm when the run has jobs.jsonl submissions.")
    source: Literal["sacct", "squeue", "disk"] = Field(description=(
            "Where SLURM states came from: sacct (+ squeue for the live queue), squeue alone, or none "
            "(disk only)."))
    source_note: str | None = Field(None, description="Why accounting was not used, when it was not.")
    checked_at: str = Field(description="When this status was taken (UTC, ISO 8601).")
    state: Literal["complete", "running", "failed", "stopped"] = Field(description=(
            "complete: every shard and the merge done; failed: a shard (or the merge) failed; "
            "running: something queued or running; stopped: none of these."))
    complete: bool
    active: bool = Field(description=(
            "A task of the run is pending, running or preempted (or a local shard holds a live lock)."))
    exit_code: Literal[0, 1] = Field(description="0: complete, or active without failures; 1 otherwise.")
    max_attempts: int
    eta_seconds: float | None = Field(description=(
            "Latest ETA among started, unfinished stages (stages not started yet are not included)."))
    totals: Totals
    stages: list[StageStatus] = Field(description=(
            "Per stage and domain, then per stage over all domains (domain `all`) when there are "
            "several."))
    merge: MergeStatus
    failed: list[FailedShard]
    disagreements: list[Disagreement]
    notes: list[str]
    throughput: list[StageThroughput] = Field(default_factory=list, description=(
            "Generation stages: measured tokens/s per GPU beside the planned figure."))
    gpu_hours: list[StageCost] = Field(default_factory=list, description=(
            "GPU stages: hours spent beside the planned figure, and the share cut short or thrown away."))


def schema_text() -> str:
    return json.dumps(RunStatus.model_json_schema(), indent=2) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate the published schema: `python -m magpie_hpc.status`."""
    Path(path).write_text(schema_text())
    return Path(path)


# ---------------------------------------------------------------------------------------------------


def _owner_live(store_path: Path, ft) -> bool:
    lock = ShardLock(store_path, heartbeat_seconds=ft.heartbeat_seconds, stale_seconds=ft.stale_seconds)
    return lock.owner_is_live(lock.read_owner())


def _log_candidates(store: RunStore, key: tuple[str, str, int], job_id: str | None) -> list[Path]:
    """submitit's stderr files of the tasks that ran a shard, newest submission first: array task
    A_i writes logs/A_i/A_i_0_log.err, a plain job (one-shard piece, merge) logs/A/A_0_log.err."""
    found = []
    for job in reversed(store.read_jobs()):
        keys = ([MERGE_KEY] if job["stage"] == MERGE
                else [(job["stage"], job["domain"], s) for s in job["shards"]])
        if key not in keys:
            continue
        base = str(job["job_id"])
        task = base if len(keys) == 1 else f"{base}_{keys.index(key)}"
        path = store.logs / task / f"{task}_0_log.err"
        if job_id and job_id.split("_")[0] == base:
            found.insert(0, path)
        else:
            found.append(path)
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
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


def _reason(state: str | None, reason: str | None) -> str | None:
    if state is None:
        return None
    stale = reason in (None, "", "None", "Dependency", "JobArrayTaskLimit", "BeginTime", "Priority", "Resources")
    if state not in ACTIVE and state not in ("ENDED", "UNKNOWN") and stale:
        return END_REASONS.get(state)
    return None if reason in (None, "", "None") else reason


def _requeued(disk: ShardDisk, st, history_known: bool) -> bool:
    if st.requeued:
        return True
    if history_known or st.state != "PENDING" or not disk.starts:
        return False
    # squeue alone has no history: a pending task whose shard's last attempt was cut off (SIGTERM
    # recorded, or no end at all) is a preempted or requeued one
    return disk.open_attempt or str((disk.last_end or {}).get("error", "")).startswith(INTERRUPTED)


def _classify(disk: ShardDisk, st, submitted: bool, local: bool, cap: int, owner_live: bool,
              history_known: bool = True) -> tuple[Category, str | None]:
    """(category, problem): the disk decides done; SLURM (or a live lock owner) the rest."""
    if disk.done is not None:
        return "done", None
    state = st.state if st is not None else None
    running_now = state in RUNNING_STATES or owner_live
    starts = len(disk.counted_starts)
    if starts >= cap and not running_now:
        return "failed", (f"failed permanently: {starts} of fault_tolerance.max_attempts={cap} attempts used"
                          + ("" if state is None or state in ("ENDED", "UNKNOWN") else f" (SLURM: {state})"))
    if st is not None and st.active:
        if state in RUNNING_STATES:
            return "running", None
        return ("preempted" if _requeued(disk, st, history_known) else "pending"), None
    if owner_live:
        return "running", None
    if state is not None and state not in ("ENDED", "UNKNOWN"):
        if state == "COMPLETED":
            return "failed", "SLURM says COMPLETED but the shard has no DONE.json"
        if state == "CANCELLED":
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
            "" if disk.last_error else " (killed before it could record an error)")
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


def _totals_row(stage: str, rows: list[StageStatus], now: float, active: bool) -> StageStatus:
    agg = StageStatus(stage=stage, domain="all", shards=0, record_unit=stage_spec(stage).record_unit, records_done=0,
                      records_target=0, output_tokens=0, prompt_tokens=0, truncated=0, completions=0, attempts=0,
                      retries=0, preemptions=0, compute_seconds=0.0, first_start=None, last_activity=None,
                      elapsed_seconds=None, tokens_per_second=None, problems_per_hour=None, eta_seconds=None)
    for r in rows:
        for name in ("shards", "done", "running", "pending", "preempted", "failed", "cancelled", "unsubmitted",
                     "records_done", "records_target", "output_tokens", "prompt_tokens", "truncated", "completions",
                     "attempts", "retries", "preemptions"):
            setattr(agg, name, getattr(agg, name) + getattr(r, name))
        agg.compute_seconds = round(agg.compute_seconds + r.compute_seconds, 3)
    starts = [r.first_start for r in rows if r.first_start is not None]
    ends = [r.last_activity for r in rows if r.last_activity is not None]
    agg.first_start = min(starts, default=None)
    agg.last_activity = max(ends, default=None)
    _rates(agg, active, now)
    return agg


def collect_status(run_dir: Path | str, use_sacct: bool | None = None) -> RunStatus:
    """The status of a run. `use_sacct`: None = use accounting where it works, False = squeue only.
    Raises MagpieError (exit code 2 in the CLI) for a path that is not a run directory."""
    store = RunStore(Path(run_dir))
    try:
        store.read_manifest()
    except MagpieError as exc:  # not a run directory: bad input, exit code 2
        raise ConfigError(str(exc)) from None
    ctx = RunContext(Path(run_dir))
    from .damage import check_run_files

    check_run_files(ctx)  # a damaged run file: one line naming it, exit 2
    cfg, ft = ctx.cfg, ctx.cfg.fault_tolerance
    cap = ft.max_attempts
    now = time.time()
    jobs = store.read_jobs()
    local = not jobs
    notes: list[str] = []
    if local:
        states, source, note = {}, "disk", None
    else:
        from .slurm.accounting import shard_states

        result = shard_states(store, use_sacct=use_sacct)
        states, note = result.shards, result.note
        source = "sacct" if result.source == "sacct" else "squeue"
        if source == "squeue":
            notes.append(f"{note or 'SLURM accounting not used'}: states from squeue and the disk only; tasks that "
                         "left the queue show as done (DONE.json) or failed/cancelled (attempts.jsonl), without "
                         "exit codes")
        elif not result.squeue_ok:
            notes.append("squeue failed: the live queue is as slurmdbd last recorded it")
    submitted = {MERGE_KEY if j["stage"] == MERGE else (j["stage"], j["domain"], s)
                 for j in jobs for s in j["shards"]}
    rows: list[StageStatus] = []
    failed: list[FailedShard] = []
    disagreements: list[Disagreement] = []
    any_active = False
    for stage in STAGE_NAMES:
        for domain in cfg.domains:
            row = StageStatus(stage=stage, domain=domain, shards=0, record_unit=stage_spec(stage).record_unit, records_done=0,
                              records_target=0, output_tokens=0, prompt_tokens=0, truncated=0, completions=0,
                              attempts=0, retries=0, preemptions=0, compute_seconds=0.0, first_start=None,
                              last_activity=None, elapsed_seconds=None, tokens_per_second=None,
                              problems_per_hour=None, eta_seconds=None)
            starts, ends = [], []
            for rng in stage_shards(cfg, stage, domain):
                key = (stage, domain, rng.shard)
                shard_store = store.shard(stage, domain, rng.shard)
                disk = read_shard(stage, shard_store)
                st = states.get(key)
                live = disk.done is None and _owner_live(shard_store.path, ft)
                category, problem = _classify(disk, st, key in submitted, local, cap, live, source == "sacct")
                damage = shard_store.damage() if disk.done is not None else []
                if damage:  # a done marker over a chunk that changed is not done
                    category = "failed"
                    problem = (f"damaged: {damage[0].removeprefix(shard_store.label + ': ')}"
                               + (f" (and {len(damage) - 1} more)" if len(damage) > 1 else "")
                               + "; `resubmit` moves it aside and redoes the shard")
                notes += [f"{shard_store.label}: {p} is not a file the package writes; left alone, not read "
                          "as a chunk" for p in shard_store.stray_files()]
                setattr(row, category, getattr(row, category) + 1)
                row.shards += 1
                row.records_target += shard_target(cfg, stage, rng)
                row.records_done += disk.records
                row.output_tokens += disk.output_tokens
                row.attempts += len(disk.starts)
                row.retries += disk.retries
                history = st.history if st is not None else []
                row.preemptions += (sum(1 for s in history if s in ("PREEMPTED", "NODE_FAIL", "REQUEUED"))
                                    if source == "sacct" else disk.interrupted)
                if disk.first_start is not None:
                    starts.append(disk.first_start)
                if disk.last_activity is not None:
                    ends.append(disk.last_activity)
                if disk.done is not None:
                    d = disk.done
                    row.prompt_tokens += int(d.get("prompt_tokens", 0))
                    reasons = d.get("finish_reasons") or {}
                    row.truncated += int(reasons.get("length", 0))
                    row.completions += int(sum(reasons.values()))
                    row.compute_seconds = round(row.compute_seconds + float(d.get("seconds", 0.0)), 3)
                    if st is not None and st.state in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"):
                        disagreements.append(Disagreement(
                            stage=stage, domain=domain, shard=rng.shard, kind="done_but_slurm_failed",
                            message=f"{stage} {domain} shard {rng.shard}: DONE.json is there but SLURM says "
                                    f"{st.state} for task {st.job_id} (the shard counts as done)"))
                if category == "running" or (not local and category in ("pending", "preempted")):
                    any_active = True  # (a local run's pending shards wait for a process that may be gone)
                if category == "failed":
                    failed.append(_failed(store, key, problem or "failed", disk, st, cap))
                    failed[-1].damaged = bool(damage)
                    if st is not None and st.state == "COMPLETED":
                        disagreements.append(Disagreement(
                            stage=stage, domain=domain, shard=rng.shard, kind="completed_without_marker",
                            message=f"{stage} {domain} shard {rng.shard}: SLURM says task {st.job_id} COMPLETED "
                                    "but there is no DONE.json; resubmit redoes it"))
            row.first_start = min(starts, default=None)
            row.last_activity = max(ends, default=None)
            _rates(row, _active(row, local), now)
            rows.append(row)
    rows.sort(key=lambda r: (cfg.domains.index(r.domain), STAGE_NAMES.index(r.stage)))
    if len(cfg.domains) > 1:
        for stage in STAGE_NAMES:
            mine = [r for r in rows if r.stage == stage]
            rows.append(_totals_row(stage, mine, now, any(_active(r, local) for r in mine)))

    merge = _merge_status(store, states.get(MERGE_KEY), MERGE_KEY in submitted, local)
    if merge.state == "running" or (merge.state == "pending" and not local):
        any_active = True
    if merge.state == "failed":
        merge_disk = read_shard(MERGE, store.shard(*MERGE_KEY), progress=False)
        failed.append(_failed(store, MERGE_KEY, "the merge job ended without writing the dataset", merge_disk,
                              states.get(MERGE_KEY), cap))
    per_domain = [r for r in rows if r.domain != "all"]
    totals = Totals(**{name: sum(getattr(r, name) for r in per_domain) for name in Totals.model_fields})
    complete = totals.done == totals.shards and merge.state == "done"
    if complete:
        state, exit_code = "complete", 0
    elif failed:
        state, exit_code = "failed", 1
    elif any_active:
        state, exit_code = "running", 0
    else:
        state, exit_code = "stopped", 1
    if totals.unsubmitted:
        notes.append(f"{totals.unsubmitted} shard(s) were never submitted; "
                     f"`python -m magpie_hpc resubmit {store.run_dir}` submits them")
    if state == "stopped" and not local:
        notes.append("nothing is queued and the run is not complete; "
                     f"`python -m magpie_hpc resubmit {store.run_dir}` continues it")
    etas = [r.eta_seconds for r in rows if r.eta_seconds and r.done < r.shards]
    throughput, why_not = measured_throughput_or_none(ctx)
    if why_not:
        notes.append(why_not)
    costs = _costs(ctx, local)
    return RunStatus(
        run_dir=str(store.run_dir), run_name=ctx.manifest.get("run_name", store.run_dir.name),
        executor="local" if local else "slurm", source=source, source_note=note,
        checked_at=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        state=state, complete=complete, active=any_active, exit_code=exit_code, max_attempts=cap,
        eta_seconds=max(etas) if etas and any_active else (0.0 if complete else None),
        totals=totals, stages=rows, merge=merge, failed=failed, disagreements=disagreements, notes=notes,
        throughput=[StageThroughput(**r) for r in throughput], gpu_hours=costs,
    )


def _costs(ctx: RunContext, local: bool) -> list[StageCost]:
    """The run summary's cost figures, now (one sacct call without waiting for it to settle)."""
    from .run_summary import build_run_summary
    from .slurm.accounting import run_accounting

    accounting = None if local else (lambda store: run_accounting(store, settle_tries=1))
    summary = build_run_summary(ctx, accounting)
    source = "wall_clock" if summary["gpu_hours_source"] == "wall_clock" else "sacct"
    return [StageCost(stage=stage, gpu_hours=m["gpu_hours"], gpu_hours_planned=m["gpu_hours_planned"],
                      gpu_hours_cut_short=m["gpu_hours_cut_short"], gpu_hours_discarded=m["gpu_hours_discarded"],
                      source=source)
            for stage, m in ((stage, block["total"]) for stage, block in summary["stages"].items())
            if stage_spec(stage).gpu]


def _merge_status(store: RunStore, st, submitted: bool, local: bool) -> MergeStatus:
    if store.shard(*MERGE_KEY).done() is not None:
        return MergeStatus(state="done", job_id=st.job_id if st else None, slurm_state=st.state if st else None)
    if st is None or st.state in ("ENDED", "UNKNOWN"):
        state = "pending" if local else ("cancelled" if submitted else "unsubmitted")
        return MergeStatus(state=state, job_id=st.job_id if st else None)
    if st.active:
        state = "running" if st.state in RUNNING_STATES else "pending"
    else:
        state = "cancelled" if st.state == "CANCELLED" else "failed"
    return MergeStatus(state=state, job_id=st.job_id, slurm_state=st.state, reason=_reason(st.state, st.reason))


def _failed(store: RunStore, key, problem: str, disk: ShardDisk, st, cap: int) -> FailedShard:
    stage, domain, shard = key
    # The task that last ran the shard: SLURM's record, else the newest attempt's own record.
    job_id = st.job_id if st is not None else None
    logs = _log_candidates(store, key, job_id)
    log = next((p for p in logs if p.exists()), logs[0] if logs else None)
    return FailedShard(
        stage=stage, domain=domain, shard=shard, problem=problem, permanent=problem.startswith("failed permanently"),
        slurm_state=st.state if st is not None else None, job_id=job_id, node=(st.node or None) if st else None,
        exit_code=(st.exit_code or None) if st else None, reason=_reason(st.state, st.reason) if st else None,
        attempts=len(disk.counted_starts), max_attempts=cap, last_error=disk.last_error,
        log_path=str(log) if log else None, log_tail=_tail(log) if log else [],
    )


# --------------------------------------------------------------------------------------- rendering


def _num(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if n >= 10 or n == int(n) else f"{n:.1f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds == 0:
        return "done"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


COLUMNS = [("domain", "<"), ("stage", "<"), ("shards", ">"), ("done", ">"), ("run", ">"), ("pend", ">"),
           ("preempt", ">"), ("fail", ">"), ("cancel", ">"), ("records", ">"), ("tokens", ">"), ("tok/s", ">"),
           ("prob/h", ">"), ("ETA", ">")]


def _row_cells(r: StageStatus, first_of_domain: bool) -> list[str]:
    pct = f"{min(r.records_done / r.records_target, 1):.0%}" if r.records_target else "-"
    tokens = stage_spec(r.stage).generates  # what a scorer reads is not output
    return [r.domain if first_of_domain else "", r.stage, str(r.shards), str(r.done), str(r.running), str(r.pending),
            str(r.preempted), str(r.failed), str(r.cancelled), f"{r.records_done}/{r.records_target} {pct:>4}",
            _num(r.output_tokens) if tokens else "-", _num(r.tokens_per_second) if tokens else "-",
            _num(r.problems_per_hour), _duration(r.eta_seconds)]


def render_table(status: RunStatus) -> str:
    s, t = status, status.totals
    source = {"sacct": "SLURM states from sacct + squeue", "squeue": "SLURM states from squeue only",
              "disk": "local run: disk only"}[s.source]
    head = f"{s.state.upper()}: {t.done}/{t.shards} shards done"
    parts = [f"{getattr(t, n)} {label}" for n, label in (("running", "running"), ("pending", "pending"),
                                                          ("preempted", "preempted"), ("failed", "failed"),
                                                          ("cancelled", "cancelled")) if getattr(t, n)]
    head += (", " + ", ".join(parts) if parts else "") + f"; merge {s.merge.state}"
    if s.eta_seconds and not s.complete:
        head += f"; ETA {_duration(s.eta_seconds)} (running stages)"
    lines = [f"run {s.run_name}", f"  {s.run_dir}", f"  {s.executor} executor; {source}; checked {s.checked_at}",
             f"  {head}", ""]
    table = [[name for name, _ in COLUMNS]]
    previous = None
    for r in s.stages:
        if r.domain != previous and previous is not None:
            table.append(None)
        table.append(_row_cells(r, r.domain != previous))
        previous = r.domain
    widths = [max(len(row[i]) for row in table if row) for i in range(len(COLUMNS))]

    def fmt(row: list[str]) -> str:
        return "  ".join(f"{cell:{align}{w}}" for cell, (_, align), w in zip(row, COLUMNS, widths)).rstrip()

    lines.append(fmt(table[0]))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["" if row is None else fmt(row) for row in table[1:]]
    m = s.merge
    merge_line = f"merge: {m.state}"
    if m.job_id:
        merge_line += f" (job {m.job_id}" + (f", {m.slurm_state}" if m.slurm_state else "") + (
            f", {m.reason}" if m.reason and m.state == "pending" else "") + ")"
    lines += ["", merge_line]
    if s.throughput:
        lines.append(throughput_line([r.model_dump() for r in s.throughput]))
    if s.gpu_hours:
        from .run_summary import cost_lines

        summary = {"gpu_hours_source": s.gpu_hours[0].source,
                   "stages": {c.stage: {"total": c.model_dump()} for c in s.gpu_hours}}
        lines += ["GPU time:", *[f"  {line}" for line in cost_lines(summary)]]
    if t.retries or t.preemptions:
        lines.append(f"retries so far: {t.retries}; preemptions: {t.preemptions}")
    if s.failed:
        lines += ["", f"FAILED ({len(s.failed)}):"]
        for f in s.failed:
            what = MERGE if f.stage == MERGE else f"{f.stage} {f.domain} shard {f.shard}"
            slurm = ", ".join(x for x in (
                f"job {f.job_id}" if f.job_id else "", f"node {f.node}" if f.node else "",
                f"exit code {f.exit_code}" if f.exit_code else "", f"reason {f.reason}" if f.reason else "") if x)
            lines.append(f"  {what}: {f.problem}" + (f"; {slurm}" if slurm else ""))
            if f.stage != MERGE:
                cap = " - failed permanently, resubmit will not retry it" if f.permanent else ""
                lines.append(f"    attempts: {f.attempts} of {f.max_attempts}{cap}")
            if f.last_error:
                lines.append(f"    last error (attempts.jsonl): {f.last_error.splitlines()[0][:300]}")
            if f.log_path:
                missing = not f.log_tail and not Path(f.log_path).exists()
                lines.append(f"    log: {f.log_path}" + (" (missing)" if missing else ""))
                lines += [f"      | {line}" for line in f.log_tail]
    if s.disagreements:
        lines += ["", "disk and SLURM disagree:"]
        lines += [f"  {d.message}" for d in s.disagreements]
    if s.source_note or s.notes:
        lines.append("")
        lines += [f"note: {n}" for n in s.notes]
    if s.failed and s.executor == "slurm":
        lines += ["", f"see why: python -m magpie_hpc logs {s.run_dir} --failed"]
    return "\n".join(lines) + "\n"


CLEAR = "\x1b[H\x1b[2J"


def status_command(run_dir: Path | str, *, as_json: bool = False, watch: float | None = None,
                   use_sacct: bool | None = None, out=None) -> int:
    """What `python -m magpie_hpc status` does; returns the exit code."""
    out = out or sys.stdout
    if watch is None:
        status = collect_status(run_dir, use_sacct=use_sacct)
        out.write(status.model_dump_json(indent=2) + "\n" if as_json else render_table(status))
        return status.exit_code
    interval = max(float(watch), 1.0)
    redraw = out.isatty()
    while True:
        status = collect_status(run_dir, use_sacct=use_sacct)
        text = render_table(status)
        if status.active:
            text += f"\nrefreshing every {interval:g}s until nothing is queued or running (Ctrl-C to stop)\n"
        out.write((CLEAR if redraw else "\n") + text)
        out.flush()
        if not status.active:
            return status.exit_code
        time.sleep(interval)


if __name__ == "__main__":
    print(write_schema())
