"""`[slurm]`: what reaches sbatch (partition, account, resources per stage kind, mail)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..pipeline import MERGE, STAGE_NAMES
from .base import StrictModel
from .names import SAFE_PATH, SLURM_CONSTRAINT, SLURM_NAME, SLURM_NAME_LIST, check_no_control


class SlurmStageResources(StrictModel):
    gpus: int = Field(default=1, ge=0)
    cpus: int = Field(default=8, gt=0)
    mem_gb: int = Field(default=64, gt=0)
    time_min: int = Field(default=240, gt=0)
    signal_delay_s: int = Field(
        default=120,
        gt=0,
        description=(
            "SLURM sends USR2 this long before time_min runs out. The task stops admitting requests, keeps "
            "journaling and committing what finishes for this long less a 15 s margin, then requeues itself: "
            "longer lets more of the requests in flight finish; the requests still running are what is lost."
        ),
    )

    @model_validator(mode="after")
    def _signal_before_limit(self) -> "SlurmStageResources":
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(
                f"{self.signal_delay_s}s leaves no working time in time_min={self.time_min}; "
                "lower signal_delay_s or raise time_min"
            )
        return self


# sbatch --mail-type values (SLURM 22.05 and later).
MAIL_TYPES = {
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "INVALID_DEPEND",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
}


class SlurmConfig(StrictModel):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = Field(default=64, gt=0, description="The %k throttle of each array.")
    stage_array_parallelism: dict[str, int] = Field(default_factory=dict, description="Per-stage %k.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before each task.")
    python: str | None = Field(default=None, description="Python on compute nodes.")
    mail_user: str | None = Field(
        default=None,
        description=(
            "Address SLURM mails (sbatch --mail-user) when the merge job ends: the dataset is ready, or "
            "it failed. None: no mail."
        ),
    )
    mail_type: str = Field(default="END,FAIL", description="sbatch --mail-type for the mailed jobs.")
    mail_every_array: bool = Field(
        default=False,
        description=("Also mail for every stage's array (one mail per array, not per task), not only the merge."),
    )
    gpu_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Memory of one GPU of the partition's nodes, for preflight's does-the-model-fit check; unset: "
            "read from sinfo (a feature like `80gb`, or the gres type; an A100 with no memory feature "
            "counts as 40 GB, since an `a100` constraint also matches the 40 GB nodes)."
        ),
    )
    gpu_stage: SlurmStageResources = Field(default_factory=SlurmStageResources)
    cpu_stage: SlurmStageResources = Field(
        default_factory=lambda: SlurmStageResources(gpus=0, cpus=2, mem_gb=16, time_min=60)
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_retired_profile(cls, data: Any) -> Any:
        # run.json files frozen before the unused slurm.profile field went hold "profile": null;
        # those runs must still resume. TOML has no null, so a profile set in a file stays an error.
        if isinstance(data, dict) and "profile" in data and data["profile"] is None:
            return {key: value for key, value in data.items() if key != "profile"}
        return data

    @model_validator(mode="after")
    def _check_mail(self) -> "SlurmConfig":
        # Both reach the sbatch script as #SBATCH lines: one address, known words, nothing else.
        if self.mail_user is not None and not re.fullmatch(r"[\w.+-]+(@[\w.-]+)?", self.mail_user):
            raise ValueError(f"slurm.mail_user: {self.mail_user!r} is not one mail address; give e.g. name@site.org")
        bad = [t for t in self.mail_type.split(",") if t.strip().upper() not in MAIL_TYPES]
        if bad:
            raise ValueError(
                f"slurm.mail_type: {bad[0]!r} is not a SLURM mail type; use e.g. END,FAIL "
                f"(one of {','.join(sorted(MAIL_TYPES))})"
            )
        return self

    @field_validator("partition", "qos")
    @classmethod
    def _slurm_name_list(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not SLURM_NAME_LIST.fullmatch(value):
            check_no_control(value, f"slurm.{info.field_name}")
            raise ValueError(
                f"slurm.{info.field_name}: {value!r} is not a SLURM {info.field_name} name "
                "(letters, digits, _ . -, comma-separated)"
            )
        return value

    @field_validator("account")
    @classmethod
    def _slurm_name(cls, value: str | None) -> str | None:
        if value is not None and not SLURM_NAME.fullmatch(value):
            check_no_control(value, "slurm.account")
            raise ValueError(f"slurm.account: {value!r} is not a SLURM account name (letters, digits, _ . -)")
        return value

    @field_validator("constraint")
    @classmethod
    def _slurm_constraint(cls, value: str | None) -> str | None:
        if value is not None and not SLURM_CONSTRAINT.fullmatch(value):
            check_no_control(value, "slurm.constraint")
            raise ValueError(
                f"slurm.constraint: {value!r} is not a SLURM feature expression "
                "(features joined by & | , with [ ] ( ) and *N)"
            )
        return value

    @field_validator("python")
    @classmethod
    def _python_path(cls, value: str | None) -> str | None:
        if value is not None and not SAFE_PATH.fullmatch(value):
            check_no_control(value, "slurm.python")
            raise ValueError(
                f"slurm.python: {value!r} is not a plain path (no spaces or shell characters); "
                "use a path such as /opt/env/bin/python"
            )
        return value

    @field_validator("stage_array_parallelism")
    @classmethod
    def _known_stages(cls, value: dict[str, int]) -> dict[str, int]:
        for stage in value:
            if stage not in (*STAGE_NAMES, MERGE):
                raise ValueError(
                    f"slurm.stage_array_parallelism: unknown stage {stage!r}; choose from "
                    f"{','.join((*STAGE_NAMES, MERGE))}"
                )
        return value
