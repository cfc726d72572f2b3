"""Typed configuration: the single source of every default.

Precedence: built-in defaults < cluster profile < TOML file (`--config`) < CLI flags. `load_config`
does the merge and turns any validation failure into one `ConfigError` line that names the field.
Each section's model lives in its own module here; this package exports them all.
"""

from .engine import EngineConfig, ModelEntry
from .fault_tolerance import FaultToleranceConfig
from .load import check_plan_size, load_config, parse_counts, profile_path, shipped_profiles
from .names import (
    NAME_PATTERN,
    RESERVED_NAMES,
    SAFE_PATH,
    SLURM_CONSTRAINT,
    SLURM_NAME,
    SLURM_NAME_LIST,
    check_name,
    check_no_control,
)
from .planning import ArchitectureConfig, HardwareConfig, ShardingConfig, ThroughputConfig
from .quality import AGREEMENT_LEVEL, QualityConfig
from .run import MAX_COUNT, DomainConfig, RunConfig
from .slurm import MAIL_TYPES, SlurmConfig, SlurmStageResources
from .stages import (
    InstructionStageConfig,
    MultiResponseStageConfig,
    RepetitionDetectionConfig,
    ResponseStageConfig,
    RewardStageConfig,
)

__all__ = [
    "AGREEMENT_LEVEL",
    "MAIL_TYPES",
    "MAX_COUNT",
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "SAFE_PATH",
    "SLURM_CONSTRAINT",
    "SLURM_NAME",
    "SLURM_NAME_LIST",
    "ArchitectureConfig",
    "DomainConfig",
    "EngineConfig",
    "FaultToleranceConfig",
    "HardwareConfig",
    "InstructionStageConfig",
    "ModelEntry",
    "MultiResponseStageConfig",
    "QualityConfig",
    "RepetitionDetectionConfig",
    "ResponseStageConfig",
    "RewardStageConfig",
    "RunConfig",
    "ShardingConfig",
    "SlurmConfig",
    "SlurmStageResources",
    "ThroughputConfig",
    "check_name",
    "check_no_control",
    "check_plan_size",
    "load_config",
    "parse_counts",
    "profile_path",
    "shipped_profiles",
]
