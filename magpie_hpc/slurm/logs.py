"""Where a task's log files are: submitit's own `JobPaths` names them, so nothing here re-derives
its file names; `logs` and `status` both look through here."""

from __future__ import annotations

from submitit.core.utils import JobPaths

from ..store import RunStore, RunView
from ..store.view import Key


def task_paths(store: RunStore, task_id: str) -> JobPaths:
    # The executor's folder is logs/%j; submitit resolves %j to the task id of an array task.
    return JobPaths(store.logs / "%j", job_id=task_id, task_id=0)


def tasks_that_ran(store: RunStore, key: Key, current: str | None = None) -> list[str]:
    """SLURM task ids that ran `key`: `current` (the task SLURM last reported for it) first when it
    is one of them, then the others, newest submission first."""
    ids = RunView(store).task_ids(key)
    return [current, *(i for i in ids if i != current)] if current in ids else ids
