"""Steering a submitted run: `cancel` its jobs and read the `logs` of its tasks.

Both work from the run's own records (jobs.jsonl: every submission with its shards) and what SLURM
says now (`accounting.shard_states`), so they touch only this run's jobs, never another user's or
another run's. Nothing on disk is changed by `cancel`: committed chunks stay, and `resubmit` later
runs exactly what is neither done nor queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..pipeline import MERGE, MERGE_KEY
from ..store import RunStore, RunView
from . import accounting, cluster, states as slurm_states
from .logs import task_paths, tasks_that_ran

Key = tuple[str, str, int]


@dataclass
class Cancellation:
    """What `cancel` did: the SLURM task ids it cancelled, by shard."""

    cancelled: dict[Key, str] = field(default_factory=dict)
    local: bool = False

    def lines(self) -> list[str]:
        if self.local:
            return ["nothing to cancel: this run uses the local executor (stop its process with Ctrl-C)"]
        if not self.cancelled:
            return ["nothing to cancel: no job of this run that matches is queued or running"]
        out = [
            f"cancelled {stage} {domain} shard {shard} (job {job_id})"
            for (stage, domain, shard), job_id in sorted(self.cancelled.items())
        ]
        out.append(
            f"{len(self.cancelled)} task(s) cancelled; committed chunks are kept. "
            "Finish the run with: python -m magpie_hpc resubmit RUN_DIR"
        )
        return out


def _store(run_dir: Path | str) -> RunStore:
    store = RunStore(Path(run_dir))
    if not store.is_run_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no run.json); pass the folder `launch` printed")
    return store


def _is_local(store: RunStore) -> bool:
    return not store.jobs_path.exists()


def _matches(key: Key, stage: str | None, domain: str | None) -> bool:
    return (stage is None or key[0] == stage) and (domain is None or key[1] in (domain, "all"))


def cancel_run(run_dir: Path | str, *, stage: str | None = None, domain: str | None = None) -> Cancellation:
    """Cancel every queued or running task of the run that matches `stage` and `domain`.

    The merge job is cancelled along with any other task: a merge waiting on a cancelled task could
    only fail (the run is incomplete); `resubmit` submits it again with what is left. Idempotent: a
    second call finds nothing active and cancels nothing."""
    store = _store(run_dir)
    if _is_local(store):
        return Cancellation(local=True)
    states = accounting.shard_states(store).shards
    chosen = {
        key: st.job_id for key, st in states.items() if st.active and key[0] != MERGE and _matches(key, stage, domain)
    }
    merge = states.get(MERGE_KEY)
    if merge is not None and merge.active and (chosen or stage in (None, MERGE)):
        chosen[MERGE_KEY] = merge.job_id
    cluster.scancel(sorted(set(chosen.values())))
    return Cancellation(cancelled=chosen)


@dataclass
class TaskLog:
    """One task's logs and what SLURM and the disk say about its last run."""

    key: Key
    job_id: str | None
    state: str | None
    exit_code: str | None
    node: str | None
    attempt: int
    stderr: Path | None
    stdout: Path | None

    def header(self) -> str:
        stage, domain, shard = self.key
        return (
            f"== {stage} {domain} shard {shard}: job {self.job_id or '-'}, state {self.state or '-'}, "
            f"exit {self.exit_code or '-'}, node {self.node or '-'}, attempt {self.attempt}"
        )


def task_logs(run_dir: Path | str, *, failed: bool = False, key: Key | None = None) -> list[TaskLog]:
    """The tasks `logs` shows: one shard (`key`), the failed ones (`failed`), else every submitted one."""
    store = _store(run_dir)
    if _is_local(store):
        raise ConfigError(f"{run_dir}: a local run has no SLURM task logs; its messages went to the terminal")
    states = accounting.shard_states(store).shards
    view = RunView(store)
    keys = [key] if key is not None else sorted(view.submitted())
    out = []
    for k in keys:
        st = states.get(k)
        ids = tasks_that_ran(store, k, st.job_id if st is not None else None)
        if not ids:
            raise ConfigError(
                f"logs: {k[0]} {k[1]} shard {k[2]} was never submitted in this run; "
                "see `status RUN_DIR` for the shards it has"
            )
        disk = view.shard(*k, progress=False)
        if failed and not _failed(st, disk):
            continue
        task = ids[0]
        paths = task_paths(store, task)
        out.append(
            TaskLog(
                key=k,
                job_id=task,
                state=st.state if st else None,
                exit_code=(st.exit_code or None) if st else None,
                node=(st.node or None) if st else None,
                attempt=len(disk.starts),
                stderr=paths.stderr if paths.stderr.exists() else None,
                stdout=paths.stdout if paths.stdout.exists() else None,
            )
        )
    return out


def _failed(st, disk) -> bool:
    if disk.done is not None:
        return False
    if st is not None and st.state in slurm_states.FAILED:
        return True
    return disk.last_error is not None and (st is None or not st.active)


def tail(path: Path | None, lines: int) -> list[str]:
    if path is None:
        return ["(no log file yet)"]
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(0, fh.tell() - max(16384, 256 * lines)))
        text = fh.read().decode(errors="replace")
    return text.splitlines()[-lines:]
