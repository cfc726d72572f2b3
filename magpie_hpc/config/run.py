"""RunConfig: every section together, the domains chosen and their settings; frozen into run.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .. import registry
from .base import StrictModel
from .engine import EngineConfig, ModelEntry
from .fault_tolerance import FaultToleranceConfig
from .names import check_name, check_no_control
from .planning import HardwareConfig, ShardingConfig, ThroughputConfig
from .quality import QualityConfig
from .slurm import SlurmConfig
from .stages import InstructionStageConfig, MultiResponseStageConfig, ResponseStageConfig, RewardStageConfig

# The most problems one domain may ask for: the plan is a list of shards, and a count of 10^12
# would otherwise fill the memory (sharding.max_shards bounds the shards of one stage too).
MAX_COUNT = 100_000_000


class DomainConfig(StrictModel):
    """One math domain: how many problems and how to sample them."""

    count: int = Field(
        gt=0, le=MAX_COUNT, description=f"Problems delivered for this domain (exact; at most {MAX_COUNT:,})."
    )
    instruction_temperature: float = Field(ge=0)
    response_temperature: float = Field(ge=0)
    max_tokens_instruction: int = Field(default=1024, gt=0)
    max_tokens_response: int = Field(default=4096, gt=0)
    description: str
    focus: str


def _default_domains() -> dict[str, DomainConfig]:
    return {name: DomainConfig(**preset) for name, preset in registry.DOMAIN_PRESETS.items()}


def _default_models() -> dict[str, ModelEntry]:
    return {key: ModelEntry(**entry) for key, entry in registry.MODEL_MENU.items()}


class RunConfig(StrictModel):
    """Everything a run needs, frozen into run.json at launch."""

    model: str = Field(default="1", description="Menu key, local path or hub id.")
    reward_model: str = registry.ARMORM
    domains: list[str] = Field(default_factory=lambda: list(registry.DOMAIN_PRESETS))
    domain_settings: dict[str, DomainConfig] = Field(default_factory=_default_domains)
    models: dict[str, ModelEntry] = Field(default_factory=_default_models)
    output_root: Path = Path("data")
    seed: int = 0
    executor: Literal["local", "slurm"] | None = Field(
        default=None, description="Default: slurm where sbatch is on PATH, else local."
    )
    engine: EngineConfig = Field(default_factory=EngineConfig)
    instructions: InstructionStageConfig = Field(default_factory=InstructionStageConfig)
    responses: ResponseStageConfig = Field(default_factory=ResponseStageConfig)
    multi_responses: MultiResponseStageConfig = Field(default_factory=MultiResponseStageConfig)
    rewards: RewardStageConfig = Field(default_factory=RewardStageConfig)
    sharding: ShardingConfig = Field(default_factory=ShardingConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    throughput: ThroughputConfig = Field(default_factory=ThroughputConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    fault_tolerance: FaultToleranceConfig = Field(default_factory=FaultToleranceConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)

    @field_validator("domains", mode="before")
    @classmethod
    def _expand_all(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and value == ["all"]:
            return list(registry.DOMAIN_PRESETS)
        if isinstance(value, list) and "all" in value:
            raise ValueError("domains: 'all' already means every domain; pass --domains all alone, or list the domains")
        return value

    @field_validator("domains")
    @classmethod
    def _domain_names(cls, value: list[str]) -> list[str]:
        for name in value:
            check_name(name, "domains")
        return value

    @field_validator("domain_settings")
    @classmethod
    def _domain_setting_names(cls, value: dict[str, DomainConfig]) -> dict[str, DomainConfig]:
        for name in value:
            check_name(name, "domain_settings")
        return value

    @field_validator("output_root")
    @classmethod
    def _output_root(cls, value: Path) -> Path:
        check_no_control(str(value), "output_root")
        return value

    @model_validator(mode="after")
    def _check_domains(self) -> "RunConfig":
        if not self.domains:
            raise ValueError("domains: none chosen; use --domains all or e.g. algebra,geometry")
        unknown = [d for d in self.domains if d not in self.domain_settings]
        if unknown:
            known = ",".join(self.domain_settings)
            raise ValueError(f"domains: unknown domain {unknown[0]!r}; choose from all,{known}")
        if len(set(self.domains)) != len(self.domains):
            raise ValueError("domains: a domain is listed twice")
        return self

    def domain(self, name: str) -> DomainConfig:
        return self.domain_settings[name]

    @property
    def total_problems(self) -> int:
        return sum(self.domain(d).count for d in self.domains)
