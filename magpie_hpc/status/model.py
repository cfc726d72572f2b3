"""What `status --json` prints: the `RunStatus` pydantic model. Its JSON schema is published as
magpie_hpc/status_schema.json (`python -m magpie_hpc.status` regenerates it; a test keeps the two
in sync)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "status_schema.json"

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
    pending: int = Field(
        0,
        description=(
            "Not done; queued in SLURM (dependency, throttle, resources) or not reached yet by the local executor."
        ),
    )
    preempted: int = Field(0, description="Not done; preempted or its node failed, waiting in SLURM to run again.")
    failed: int = Field(
        0,
        description=(
            "Not done and not queued: the task failed, ended without a done marker, or the shard is "
            "past its attempt cap."
        ),
    )
    cancelled: int = Field(
        0, description=("Not done and not queued: cancelled (scancel, or a dependency that can never be satisfied).")
    )
    unsubmitted: int = Field(0, description="Not done and never submitted (not in jobs.jsonl).")
    record_unit: str = Field(
        description=("What records count: clean instructions for `instructions`, problems elsewhere.")
    )
    records_done: int = Field(
        description=(
            "Records in done shards (DONE.json rows, `kept` for instructions) plus committed chunks "
            "of unfinished shards."
        )
    )
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
    elapsed_seconds: float | None = Field(
        description=(
            "Wall time the rates are measured over: first start to now (while active) or to the last activity."
        )
    )
    tokens_per_second: float | None = Field(
        description=("Generated tokens per second over elapsed_seconds, all tasks together.")
    )
    problems_per_hour: float | None = Field(description="Records per hour over elapsed_seconds, all tasks together.")
    eta_seconds: float | None = Field(
        description=(
            "Remaining records at the measured rate; 0 when done; null when nothing measured or nothing queued."
        )
    )


class FailedShard(_Model):
    stage: str
    domain: str
    shard: int
    problem: str = Field(description="One line: what went wrong.")
    permanent: bool = Field(description="Past fault_tolerance.max_attempts failed starts: resubmit will not retry it.")
    damaged: bool = Field(
        False,
        description=(
            "Done once, but a committed chunk no longer matches the row count and sha256 recorded when "
            "it was committed: not counted as done; resubmit moves the chunk aside and redoes the shard."
        ),
    )
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
    planned_tokens_per_second_per_gpu: float = Field(
        description="What the plan sized shards with (roofline or configured)."
    )
    measured_tokens_per_second_per_gpu: float | None = Field(
        description=(
            "Output tokens over GPU-seconds generating (DONE.json seconds less model load, x the task's GPUs) of "
            "done shards that ran from their start; null before any."
        )
    )
    measured_shards: int
    output_tokens: int
    gpu_seconds: float
    tensor_parallel_size: int
    gpu: str
    measured_on_gpu: bool = Field(description="False where the engine ran without a GPU (CPU or synthetic).")


class StageCost(_Model):
    """One GPU stage's time: spent, planned, and what went to waste."""

    stage: str
    gpu_hours: float = Field(
        description="Spent: sacct's elapsed x GPUs of every run (wall-clock hours without accounting)."
    )
    gpu_hours_planned: float | None = Field(description="The plan's figure for the stage (null where it cannot say).")
    gpu_hours_cut_short: float = Field(description="Spent on runs a preemption, kill, time limit or failure cut short.")
    gpu_hours_discarded: float = Field(
        description=(
            "Response stages: the share of the finished runs' time that made responses thrown away (cut off "
            "at max_tokens or stopped as loops), by tokens."
        )
    )
    source: Literal["sacct", "wall_clock"]


class RunStatus(_Model):
    """Everything `status` knows about a run; `--json` prints exactly this."""

    schema_version: Literal[1] = 1
    run_dir: str
    run_name: str
    executor: Literal["slurm", "local"] = Field(description="slurm when the run has jobs.jsonl submissions.")
    source: Literal["sacct", "squeue", "disk"] = Field(
        description=(
            "Where SLURM states came from: sacct (+ squeue for the live queue), squeue alone, or none (disk only)."
        )
    )
    source_note: str | None = Field(None, description="Why accounting was not used, when it was not.")
    checked_at: str = Field(description="When this status was taken (UTC, ISO 8601).")
    state: Literal["complete", "running", "failed", "stopped"] = Field(
        description=(
            "complete: every shard and the merge done; failed: a shard (or the merge) failed; "
            "running: something queued or running; stopped: none of these."
        )
    )
    complete: bool
    active: bool = Field(
        description=("A task of the run is pending, running or preempted (or a local shard holds a live lock).")
    )
    exit_code: Literal[0, 1] = Field(description="0: complete, or active without failures; 1 otherwise.")
    max_attempts: int
    eta_seconds: float | None = Field(
        description=("Latest ETA among started, unfinished stages (stages not started yet are not included).")
    )
    totals: Totals
    stages: list[StageStatus] = Field(
        description=("Per stage and domain, then per stage over all domains (domain `all`) when there are several.")
    )
    merge: MergeStatus
    failed: list[FailedShard]
    disagreements: list[Disagreement]
    notes: list[str]
    throughput: list[StageThroughput] = Field(
        default_factory=list, description=("Generation stages: measured tokens/s per GPU beside the planned figure.")
    )
    gpu_hours: list[StageCost] = Field(
        default_factory=list,
        description=("GPU stages: hours spent beside the planned figure, and the share cut short or thrown away."),
    )


def schema_text() -> str:
    return json.dumps(RunStatus.model_json_schema(), indent=2) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> Path:
    """Regenerate the published schema: `python -m magpie_hpc.status`."""
    Path(path).write_text(schema_text())
    return Path(path)
