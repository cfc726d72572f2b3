"""Which SLURM task this process is: the one place that reads the SLURM_* variables.

The shard lock compares identities to know an earlier run of the same array task dead, the runner
records them with each attempt and done marker, the SLURM task logs them; outside SLURM every
field is None.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TaskIdentity:
    job_id: str | None
    array_job_id: str | None
    array_task: str | None
    restart_count: int | None  # 0 on a task's first run (SLURM leaves it unset then)

    @property
    def in_slurm(self) -> bool:
        return self.job_id is not None

    def record(self) -> dict:
        """The fields as attempts.jsonl, DONE.json and owner.json store them."""
        return asdict(self)


def slurm_task_identity() -> TaskIdentity:
    """Read at each call: a process may be handed another task's environment (tests do so)."""
    env = os.environ
    job = env.get("SLURM_JOB_ID")
    return TaskIdentity(
        job_id=job,
        array_job_id=env.get("SLURM_ARRAY_JOB_ID"),
        array_task=env.get("SLURM_ARRAY_TASK_ID"),
        restart_count=None if job is None else int(env.get("SLURM_RESTART_COUNT") or 0),
    )
