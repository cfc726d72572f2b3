"""SLURM's job states, sorted once into the classes the package acts on.

accounting (which shards are still queued), status (how each shard is classified and why it
ended), the run summary (which runs count as preemptions, which were cut short) and `logs --failed`
all ask these sets; none keeps a list of its own.
"""

from __future__ import annotations

# A task in one of these will still run or is running: its shard is not resubmitted.
ACTIVE = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "CONFIGURING",
        "COMPLETING",
        "RESIZING",
        "SUSPENDED",
        "SIGNALING",
        "STAGE_OUT",
        "PREEMPTED",
    }
)
# Of the active ones, those in which the task holds its allocation now.
RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SIGNALING", "RESIZING"})
# After these SLURM runs the task again by itself (requeue).
REQUEUE = frozenset({"PREEMPTED", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "NODE_FAIL"})
# A run in one of these counts as a preemption in status and the run summary: the cluster took the
# task away (preemption, a requeue, a dead node), nothing about the shard itself.
PREEMPTED = frozenset({"PREEMPTED", "NODE_FAIL", "REQUEUED"})
# The task's own run went wrong: with a done marker on disk, status reports the disagreement; without
# one, `logs --failed` shows the task.
FAILED = frozenset({"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"})
# A run that did not finish its work: a preemption, a kill, a time limit, a dead node or a failure cut
# it short, and its GPU time bought only the chunks it committed.
CUT_SHORT = frozenset(
    {"PREEMPTED", "NODE_FAIL", "REQUEUED", "TIMEOUT", "CANCELLED", "FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
PENDING = "PENDING"

# Not SLURM's: what accounting says of a task when SLURM no longer tells how it ended. ENDED: sacct
# still had it queued or running, the controller no longer has it (it ended a moment ago); UNKNOWN:
# a record without a state. Either way the disk decides.
ENDED = "ENDED"
UNKNOWN = "UNKNOWN"
UNTOLD = frozenset({ENDED, UNKNOWN})

# What slurmctld itself gives as the reason of a job that ended so (sacct's Reason column keeps the
# last pending reason, e.g. "Dependency", which says nothing about why a task ended).
END_REASONS = {
    "FAILED": "NonZeroExitCode",
    "TIMEOUT": "TimeLimit",
    "OUT_OF_MEMORY": "OutOfMemory",
    "NODE_FAIL": "NodeFail",
    "BOOT_FAIL": "BootFail",
    "DEADLINE": "Deadline",
    "PREEMPTED": "Preempted",
    "CANCELLED": "Cancelled",
}
# Reasons left over from the task's time in the queue: no reason it ended.
QUEUE_REASONS = frozenset({"", "None", "Dependency", "JobArrayTaskLimit", "BeginTime", "Priority", "Resources"})


def end_reason(state: str | None, reason: str | None) -> str | None:
    """The reason to show for a task in `state`: SLURM's own, except that a task that ended keeps
    the reason it ended for in place of a stale queue reason."""
    if state is None:
        return None
    if state not in ACTIVE and state not in UNTOLD and (reason is None or reason in QUEUE_REASONS):
        return END_REASONS.get(state)
    return None if reason in (None, "", "None") else reason
