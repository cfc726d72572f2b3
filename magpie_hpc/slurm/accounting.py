"""What SLURM says about every task of a run, for `status` and the merge's run summary.

`shard_states` gives the latest state of each shard: one `sacct` call for the history (exit codes,
elapsed time, preemptions) and one `squeue` call for the live queue, which slurmdbd reports with a
delay (a pending array can be missing from sacct for a while). Without accounting (no sacct on
PATH, or sacct failing) it says so and uses squeue alone: finished tasks are then known only from
the disk. `task_records` lists every run of every task (requeues and resubmissions included), which
is what GPU-hours are summed from.

The mapping from SLURM ids to shards comes from each submission's own record in jobs.jsonl and
covers what submitit submits as a plain job (a piece of one shard: job `87`, not `87_0`) and array
records not split into tasks yet (`84_[1-3%1]`, or `86` for an array cancelled as a whole).
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field

from ..pipeline import MERGE
from ..store import RunStore, RunView
from . import cluster, states as slurm_states
from .states import ACTIVE, ENDED, REQUEUE, RUNNING, UNKNOWN

Key = tuple[str, str, int]

SACCT_FIELDS = [
    "JobID",
    "State",
    "ExitCode",
    "Start",
    "End",
    "Elapsed",
    "ElapsedRaw",
    "NodeList",
    "Reason",
    "AllocTRES",
]


def _gpus(tres: str) -> int:
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key in ("gres/gpu", "gpu"):
            return int(value or 0)
    return 0


def accounting_available() -> bool:
    if shutil.which("sacct") is None:
        return False
    try:
        cluster.run_cmd(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], timeout=20)
    except cluster.SlurmError:
        return False
    return True


@dataclass
class TaskRecord:
    """One SLURM record of one task of the run: one run of it (sacct) or its queue entry (squeue)."""

    stage: str
    domain: str
    shard: int
    job_id: str
    state: str
    exit_code: str = ""
    node: str = ""
    reason: str = ""
    elapsed_seconds: int = 0
    start: str = ""
    end: str = ""
    gpus: int = 0

    @property
    def key(self) -> Key:
        return self.stage, self.domain, self.shard

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ShardState(TaskRecord):
    """The latest SLURM record of one shard (the newest submission wins), with the states of every
    submission (`history`) and of the current job only (`job_history`)."""

    history: list[str] = field(default_factory=list)
    job_history: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def array_job_id(self) -> str:
        return self.job_id.split("_")[0]

    @property
    def requeued(self) -> bool:
        """Preempted (or its node failed) and waiting to run again under the same job."""
        return self.state in REQUEUE or (
            self.active and self.state != "RUNNING" and any(s in REQUEUE for s in self.job_history)
        )

    @property
    def running(self) -> bool:
        """Holds its allocation now (not queued, not waiting to run again)."""
        return self.state in RUNNING

    @property
    def preemptions(self) -> int:
        """Runs of every submission that the cluster took away (slurm/states.py PREEMPTED)."""
        return sum(1 for s in self.history if s in slurm_states.PREEMPTED)


@dataclass
class States:
    shards: dict[Key, ShardState]
    source: str  # "sacct" (+ squeue for the live queue), "squeue" or "none" (nothing submitted)
    note: str | None = None  # why accounting was not used, when it was not
    squeue_ok: bool = True
    # every run of every task as sacct listed it (what task_records gives), None without sacct:
    # status sums GPU time from the same call that gave the states
    records: list[TaskRecord] | None = None


def _pieces(store: RunStore) -> dict[str, list[Key]]:
    """job id -> shard keys by array index, of every submission in jobs.jsonl."""
    return {sub.job_id: list(sub.keys) for sub in RunView(store).submissions()}


_BRACKET = re.compile(r"^(\d+)_\[([^\]]*)\]$")


def _indices(spec: str) -> list[int]:
    """'0-3%1' -> [0, 1, 2, 3]; '1,4-5' -> [1, 4, 5]."""
    spec = spec.split("%")[0]
    out = []
    for part in filter(None, spec.split(",")):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _resolve(job_id: str, pieces: dict[str, list[Key]]) -> list[tuple[str, Key]]:
    """(task id, shard) pairs a SLURM JobID stands for; empty when it is not one of the run's."""
    if m := _BRACKET.match(job_id):
        keys = pieces.get(m.group(1), [])
        return [(f"{m.group(1)}_{i}", keys[i]) for i in _indices(m.group(2)) if i < len(keys)]
    base, _, index = job_id.partition("_")
    keys = pieces.get(base)
    if keys is None:
        return []
    if index:
        return [(job_id, keys[int(index)])] if index.isdigit() and int(index) < len(keys) else []
    if len(keys) == 1:
        return [(job_id, keys[0])]  # submitit submits a one-shard piece as a plain job
    return [(f"{base}_{i}", k) for i, k in enumerate(keys)]  # an array that never split into tasks


def _state(raw: str) -> str:
    return (raw.split() or [UNKNOWN])[0].rstrip("+")  # "CANCELLED by 0" -> CANCELLED


def _sacct(job_ids: list[str]) -> list[dict]:
    # --duplicates: a requeued task keeps one record per run, so PREEMPTED then COMPLETED both show.
    out = cluster.run_cmd(
        ["sacct", "-X", "-n", "-P", "--duplicates", "-j", ",".join(job_ids), "-o", ",".join(SACCT_FIELDS)]
    )
    return [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line.strip()]


def _squeue(job_ids: list[str]) -> list[dict]:
    try:
        out = cluster.run_cmd(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%N|%r"])
    except cluster.SlurmError as exc:
        if "Invalid job id" in str(exc):
            return []  # none of them is known to slurmctld any more: nothing queued
        raise
    rows = []
    for line in out.splitlines():
        if line.strip():
            job, state, node, reason = (line.split("|") + ["", "", ""])[:4]
            rows.append({"JobID": job, "State": state, "NodeList": node, "Reason": reason})
    return rows


def _records(rows: list[dict], pieces: dict[str, list[Key]]) -> list[TaskRecord]:
    """Rows mapped to shards. A record of a whole array (`84_[1-3]`, `86`) stands for its tasks
    that have no record of their own."""
    own, grouped = [], []
    for row in rows:
        job_id = row["JobID"]
        targets = _resolve(job_id, pieces)
        kwargs = dict(
            state=_state(row["State"]),
            exit_code=row.get("ExitCode", ""),
            node=row.get("NodeList", "") if row.get("NodeList") != "None assigned" else "",
            reason=row.get("Reason", "") if row.get("Reason") != "None" else "",
            elapsed_seconds=int(row.get("ElapsedRaw") or 0),
            start=row.get("Start", ""),
            end=row.get("End", ""),
            gpus=_gpus(row.get("AllocTRES", "")),
        )
        is_group = "[" in job_id or len(targets) > 1
        for task_id, key in targets:
            (grouped if is_group else own).append(TaskRecord(*key, job_id=task_id, **kwargs))
    seen = {r.job_id for r in own}
    return own + [r for r in grouped if r.job_id not in seen]


def _array(job_id: str) -> int:
    return int(job_id.split("_")[0])


def _latest(records: list[TaskRecord]) -> dict[Key, ShardState]:
    states: dict[Key, ShardState] = {}
    for rec in records:  # sacct lists the runs of one task in order
        prev = states.get(rec.key)
        history = (prev.history if prev else []) + [rec.state]
        if prev is not None and _array(prev.job_id) > _array(rec.job_id):
            prev.history = history
            continue  # an older submission's record: keep the newer one
        job_history = (prev.job_history if prev is not None and prev.job_id == rec.job_id else []) + [rec.state]
        states[rec.key] = ShardState(
            *rec.key,
            job_id=rec.job_id,
            state=rec.state,
            exit_code=rec.exit_code,
            node=rec.node,
            reason=rec.reason,
            elapsed_seconds=rec.elapsed_seconds,
            start=rec.start,
            end=rec.end,
            gpus=rec.gpus,
            history=history,
            job_history=job_history,
        )
    return states


def _job_ids(pieces: dict[str, list[Key]]) -> list[str]:
    return sorted(pieces, key=int)


def shard_states(store: RunStore, *, use_sacct: bool | None = None) -> States:
    """Latest SLURM state of every submitted shard (and of the merge, key pipeline.MERGE_KEY)."""
    pieces = _pieces(store)
    if not pieces:
        return States({}, "none")
    ids = _job_ids(pieces)
    note = None
    if use_sacct is None:  # one sacct call: whether it works is seen from the call itself
        use_sacct = shutil.which("sacct") is not None
        if not use_sacct:
            note = "SLURM accounting unavailable (sacct is not on PATH)"
    elif not use_sacct:
        note = "SLURM accounting not used"
    states: dict[Key, ShardState] = {}
    records: list[TaskRecord] | None = None
    if use_sacct:
        try:
            records = _records(_sacct(ids), pieces)
            states = _latest(records)
        except cluster.SlurmError as exc:
            use_sacct, note = False, f"SLURM accounting unavailable ({exc})"
    try:
        queue = _latest(_records(_squeue(ids), pieces))
        squeue_ok = True
    except cluster.SlurmError:
        if not use_sacct:
            raise
        queue, squeue_ok = {}, False
    if not use_sacct:
        return States(queue, "squeue", note)
    if squeue_ok:
        for key, state in states.items():
            live = queue.get(key)
            if live is not None and live.job_id == state.job_id:
                # slurmctld is the live truth; slurmdbd lags behind it
                state.state, state.reason = live.state, live.reason or state.reason
                state.node = live.node or state.node
                if state.job_history[-1:] != [live.state]:
                    state.job_history.append(live.state)
            elif state.active and (live is None or _array(live.job_id) < _array(state.job_id)):
                # accounting still says queued or running, the controller no longer has it: the task
                # ended a moment ago; the disk says how
                state.state = ENDED
        for key, live in queue.items():
            if key not in states or _array(states[key].job_id) < _array(live.job_id):
                live.history = (states[key].history if key in states else []) + live.history
                states[key] = live
    return States(states, "sacct", note, squeue_ok, records)


def task_records(store: RunStore) -> list[TaskRecord]:
    """Every run of every task of the run from sacct (raises cluster.SlurmError without accounting)."""
    pieces = _pieces(store)
    if not pieces:
        return []
    return _records(_sacct(_job_ids(pieces)), pieces)


def run_accounting(store: RunStore, *, settle_tries: int = 6, settle_seconds: float = 2.0) -> dict | None:
    """What the merge's run summary needs from SLURM: every task run with its elapsed seconds and
    GPUs. None where accounting is unavailable (the summary then falls back to the disk)."""
    if not accounting_available():
        return None
    try:
        for _ in range(settle_tries):
            records = task_records(store)
            # The merge runs after every task ended, but slurmdbd may not have the last end times
            # yet (a task still RUNNING there counts its elapsed time up to now): give it a moment.
            if not any(r.state in ACTIVE for r in records if r.stage != MERGE):
                break
            time.sleep(settle_seconds)
    except cluster.SlurmError:
        return None
    return summary_accounting(records)


def summary_accounting(records: list[TaskRecord]) -> dict:
    """The run summary's accounting (run_summary.Accounting's result) from sacct's task records."""
    return {"source": "sacct", "records": [r.as_dict() for r in records if r.stage != MERGE]}
