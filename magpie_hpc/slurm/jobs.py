"""What SLURM says about a run's shards: jobs.jsonl maps array tasks back to shards, one `sacct`
call (or `squeue` where accounting is unavailable) gives their states.

The disk decides what is done (DONE.json); SLURM says what is pending, running or failed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from ..store import RunStore
from . import cluster

# Job states in which a task will still run or is running: don't resubmit its shard.
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "CONFIGURING", "COMPLETING",
          "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}
SACCT_FIELDS = ["JobID", "State", "ExitCode", "Start", "End", "Elapsed", "ElapsedRaw", "NodeList", "Reason",
                "AllocTRES"]


@dataclass
class TaskState:
    """The latest SLURM record of one shard (the newest submission wins)."""

    stage: str
    domain: str
    shard: int
    job_id: str  # "123_4" for array tasks, "125" for single jobs
    state: str = "UNKNOWN"
    exit_code: str = ""
    node: str = ""
    reason: str = ""
    elapsed_seconds: int = 0
    start: str = ""
    end: str = ""
    gpus: int = 0
    history: list[str] = field(default_factory=list)  # every state this shard's tasks went through

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def array_job_id(self) -> str:
        return self.job_id.split("_")[0]


def _task_ids(store: RunStore) -> dict[str, tuple[str, str, int]]:
    """'123_4' -> (stage, domain, shard), from each submission's own recorded mapping."""
    mapping = {}
    for job in store.read_jobs():
        if job["stage"] == "merge":
            mapping[job["job_id"]] = ("merge", "all", 0)
            continue
        for index, shard in enumerate(job["shards"]):
            mapping[f"{job['job_id']}_{index}"] = (job["stage"], job["domain"], shard)
        if len(job["shards"]) == 1:  # submitit submits a one-task array as a plain job
            mapping[job["job_id"]] = (job["stage"], job["domain"], job["shards"][0])
    return mapping


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key in ("gres/gpu", "gpu"):
            return int(value or 0)
    return 0


def _sacct_rows(job_ids: list[str]) -> list[dict]:
    # --duplicates: a requeued task keeps one record per run, so PREEMPTED then COMPLETED both show.
    out = cluster.run_cmd(["sacct", "-X", "-n", "-P", "--duplicates", "-j", ",".join(job_ids),
                           "-o", ",".join(SACCT_FIELDS)])
    return [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line.strip()]


def _squeue_rows(job_ids: list[str]) -> list[dict]:
    try:
        out = cluster.run_cmd(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%N|%r|%M"])
    except cluster.SlurmError as exc:
        if "Invalid job id" in str(exc):  # every job already left slurmctld's memory
            return []
        raise
    rows = []
    for line in out.splitlines():
        if line.strip():
            job, state, node, reason, _ = line.split("|")
            rows.append({"JobID": job, "State": state, "NodeList": node, "Reason": reason})
    return rows


def accounting_available() -> bool:
    if shutil.which("sacct") is None:
        return False
    try:
        cluster.run_cmd(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], timeout=20)
    except cluster.SlurmError:
        return False
    return True


def task_states(store: RunStore, *, use_sacct: bool | None = None) -> tuple[dict[tuple[str, str, int], TaskState], str]:
    """Latest state per (stage, domain, shard) with one sacct call (or squeue), and the source used."""
    mapping = _task_ids(store)
    if not mapping:
        return {}, "none"
    job_ids = sorted({j.split("_")[0] for j in mapping}, key=int)
    if use_sacct is None:
        use_sacct = accounting_available()
    # squeue is authoritative for what is queued now (sacct can lag a fresh submission by seconds),
    # so its rows come last and win; sacct adds the history of what already ended.
    rows = (_sacct_rows(job_ids) if use_sacct else []) + _squeue_rows(job_ids)
    states: dict[tuple[str, str, int], TaskState] = {}
    for row in rows:
        job_id = row["JobID"]
        if job_id not in mapping:
            if "_[" in job_id or "[" in job_id:
                continue  # a pending array not yet split into tasks: squeue -r lists them one by one
            continue
        key = mapping[job_id]
        state = row["State"].split()[0].rstrip("+")  # "CANCELLED by 0" -> CANCELLED
        prev = states.get(key)
        live = "ElapsedRaw" not in row  # a squeue row: the same run sacct may already have listed
        history = (prev.history if prev else []) + ([] if live and prev and prev.job_id == job_id else [state])
        if prev is not None and int(prev.array_job_id) > int(job_id.split("_")[0]):
            prev.history = history
            continue  # an older submission's record: keep the newer one
        if live and prev is not None and prev.job_id == job_id:
            prev.state, prev.reason, prev.node = state, row.get("Reason", ""), row.get("NodeList", "") or prev.node
            if prev.history:
                prev.history[-1] = state
            continue
        states[key] = TaskState(
            *key, job_id=job_id, state=state, exit_code=row.get("ExitCode", ""), node=row.get("NodeList", ""),
            reason=row.get("Reason", ""), elapsed_seconds=int(row.get("ElapsedRaw") or 0),
            start=row.get("Start", ""), end=row.get("End", ""), gpus=_gpus(row.get("AllocTRES", "")),
            history=history,
        )
    return states, "sacct" if use_sacct else "squeue"
