"""`[fault_tolerance]`: retries, shard locks and the stall watchdog, for both executors."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import StrictModel


class FaultToleranceConfig(StrictModel):
    """How tasks survive preemption, dead nodes and hung engines."""

    max_attempts: int = Field(
        default=3,
        gt=0,
        description=(
            "Failed starts per shard (requeues + resubmits) before it is failed for good; starts that a "
            "signal stopped (preemption, time limit, scancel) do not count."
        ),
    )
    time_limit_requeues: int = Field(
        default=3,
        ge=0,
        description=(
            "Times one SLURM task requeues itself at its time limit (it resumes after its last committed "
            "chunk); past that it ends and the shard is left for `resubmit`."
        ),
    )
    lock: bool = Field(
        default=True, description="One writer per shard (off only to test that chunks alone keep records once)."
    )
    heartbeat_seconds: float = Field(
        default=30.0, gt=0, description="How often a task refreshes its lock's owner record."
    )
    stale_seconds: float = Field(
        default=300.0, gt=0, description="An owner silent this long is dead; its lock is taken over."
    )
    stall_seconds: float = Field(
        default=1800.0, gt=0, description="No committed chunk for this long: the engine hung; exit."
    )
    start_jitter_seconds: float = Field(
        default=10.0, ge=0, description="Random delay before a task starts: no stampede."
    )
    wait_for_holder: bool = Field(
        default=True, description="A second task on a busy shard waits for it instead of exiting."
    )

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> "FaultToleranceConfig":
        if self.stale_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                "fault_tolerance.stale_seconds: must exceed twice heartbeat_seconds, or live owners look dead"
            )
        return self
