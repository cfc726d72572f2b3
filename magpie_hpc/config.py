"""Typed configuration: the single source of every default.

Precedence: built-in defaults < TOML file (`--config`) < CLI flags. `load_config` does the merge
and turns any validation failure into one `ConfigError` line that names the field.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import registry
from .errors import ConfigError
from .quality.settings import QualityConfig

STAGES = ("instructions", "select", "responses", "multi_responses", "rewards", "merge")
GPU_STAGES = ("instructions", "responses", "multi_responses", "rewards")


# Every name that becomes a path, a SLURM job name or a log file name (domains, stages, run
# labels) matches this: lower-case letters, digits and underscores, starting with a letter, at most
# 32 characters. Checked when the config is loaded, so no name can lead a write outside the run.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# The most problems one domain may ask for, and (sharding.max_shards) the most shards one stage
# may have: the plan is a list of shards, and a count of 10^12 would otherwise fill the memory.
MAX_COUNT = 100_000_000
# SLURM's own syntax for the values that reach `#SBATCH` lines: names of partitions, accounts and
# QOS are letters, digits, `_`, `.`, `-` (partition and qos also as comma lists); a constraint is
# a feature expression (`a100&ib`, `[rack1|rack2]`, `gpu*2`). Nothing else, no control character.
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
SLURM_NAME_LIST = re.compile(r"^[A-Za-z0-9_.\-]+(,[A-Za-z0-9_.\-]+)*$")
SLURM_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.\-&|,*\[\]():!]+$")
# A path the batch script runs (slurm.python): no spaces or shell metacharacters.
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@%=:,\-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# Names a domain cannot take: folders of the run directory itself, and the merge's domain `all`.
RESERVED_NAMES = {"all", "work", "logs", "plots", "tokenizer"}  # folders of the run directory


def check_name(value: str, field: str) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise ValueError(f"{field}: {value!r} is not a valid name; use lower-case letters, digits and _ "
                         f"(starting with a letter, at most 32 characters: {NAME_PATTERN.pattern})")
    if value in RESERVED_NAMES:
        raise ValueError(f"{field}: {value!r} is reserved ({', '.join(sorted(RESERVED_NAMES))}); choose another name")
    return value


def check_no_control(value: str, field: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{field}: {value!r} contains a control character (newline, tab, ...); remove it")
    return value


class _Strict(BaseModel):
    # allow_inf_nan=False: TOML can spell inf and nan, and a temperature of inf would only fail
    # inside a running task, after the queue wait.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DomainConfig(_Strict):
    """One math domain: how many problems and how to sample them."""

    count: int = Field(gt=0, le=MAX_COUNT, description=f"Problems delivered for this domain (exact; at most {MAX_COUNT:,}).")
    instruction_temperature: float = Field(ge=0)
    response_temperature: float = Field(ge=0)
    max_tokens_instruction: int = Field(default=1024, gt=0)
    max_tokens_response: int = Field(default=4096, gt=0)
    description: str
    focus: str


class ModelEntry(_Strict):
    """A menu model: its hub id and the Magpie template family it speaks."""

    hub_id: str
    family: Literal["deepseek_r1", "chatml", "llama3", "llama3_1"]
    description: str = ""
    stop_token_ids: list[int] = Field(default_factory=list)
    tensor_parallel_size: int | None = Field(default=None, gt=0, description=(
        "GPUs the model is split over; unset: the planner's choice for hardware.gpu (magpie_hpc/roofline.py)."))
    max_model_len: int = Field(default=8192, gt=0)
    max_position_embeddings: int | None = Field(default=None, gt=0, description=(
        "The model's context (config.json). Launch refuses a larger max_model_len; the cached "
        "config.json, where present, is the authority."))


class EngineConfig(_Strict):
    """How generation and scoring run. `synthetic` is the test engine for orchestration tests."""

    kind: Literal["vllm", "synthetic"] = "vllm"
    reward_kind: Literal["transformers", "synthetic"] = "transformers"
    # What vLLM and torch both accept; anything else would only fail on the compute node.
    dtype: Literal["auto", "bfloat16", "float16", "float32", "half", "float"] = "bfloat16"
    gpu_memory_utilization: float = Field(default=0.95, gt=0, le=1)
    enable_prefix_caching: bool = True  # every Magpie prompt shares one prefix
    enforce_eager: bool = False
    compile_cache: Literal["shared", "private"] = Field(default="shared", description=(
        "torch.compile caches of SLURM tasks, inside the run directory (RUN_DIR/cache/compile): \"shared\": "
        "one per (model, vLLM version, GPU type), built by the first task under a lock and read by the "
        "others (magpie_hpc/compile_cache.py); \"private\": every task compiles its own."))
    max_model_len: int | None = Field(default=None, gt=0, description="Overrides the model entry.")
    tensor_parallel_size: int | None = Field(default=None, gt=0)
    allow_untested_engine: bool = Field(default=False, description=(
        "Run on a vLLM outside the release line the tests run (engine_version.TESTED_VLLM); launch "
        "and every task refuse one otherwise. Recorded in run.json."))
    max_num_seqs: int | None = Field(default=None, gt=0, description=(
        "vLLM's max_num_seqs (sequences decoded at once); unset: what fits the KV cache at the stage's "
        "expected lengths, by the planner (magpie_hpc/roofline.py)."))
    # Synthetic engine only: simulated speed and injected faults ("stage:domain:shard").
    synthetic_tokens_per_second: float = Field(default=0.0, ge=0)
    synthetic_fail: list[str] = Field(default_factory=list)
    synthetic_hang: list[str] = Field(default_factory=list)
    # Synthetic engine only: how it misbehaves like a real model (engine/synthetic.py, Misbehaviour).
    # Each sample draws one kind; the four rates add up to at most 1.
    synthetic_length_rate: float = Field(default=0.0, ge=0, le=1, description=(
        "Share of samples (instructions and responses) that run on past max_tokens: cut mid-way, "
        "finish_reason 'length'."))
    synthetic_loop_rate: float = Field(default=0.0, ge=0, le=1, description=(
        "Share of samples that fall into a loop: the tail repeats one phrase until vLLM's repetition "
        "detection stops it (finish_reason 'repetition'), or max_tokens does first ('length')."))
    synthetic_no_think_rate: float = Field(default=0.0, ge=0, le=1, description=(
        "Share of responses that stop without closing </think> (no answer part)."))
    synthetic_duplicate_rate: float = Field(default=0.04, ge=0, le=1, description=(
        "Share of samples that repeat a common text exactly: an instruction a stock problem, a response "
        "the one most likely response of its prompt."))
    synthetic_answer_agreement: float = Field(default=0.5, ge=0, le=1, description=(
        "Chance that a response boxes its prompt's consensus answer; otherwise it boxes an answer of its "
        "own (0: a prompt's answers never agree, 1: they always do)."))
    synthetic_request_seeds: bool = Field(default=True, description=(
        "Honour per-request seeds as vLLM does on a GPU (same prompt and seed, same text); false: drop them "
        "as vLLM's CPU build does, so the engine-level seed and call order decide."))

    @model_validator(mode="after")
    def _synthetic_rates(self) -> "EngineConfig":
        total = (self.synthetic_length_rate + self.synthetic_loop_rate + self.synthetic_no_think_rate
                 + self.synthetic_duplicate_rate)
        if total > 1:
            raise ValueError(f"engine: the synthetic_*_rate fields add up to {total:g}; they must add up to at most 1")
        return self


class RepetitionDetectionConfig(_Strict):
    """vLLM's in-scheduler loop stop (`SamplingParams.repetition_detection`, vLLM >= 0.17): a request
    whose output tail is one token pattern of `min_pattern_size`..`max_pattern_size` tokens repeated
    `min_count` times in a row ends at once with finish reason "repetition" instead of running on to
    `max_tokens`. Reasoning models at the seed's temperatures (0.0-0.05, below DeepSeek's 0.5-0.7 for
    R1 "to prevent endless repetitions") repeat one paragraph until `max_tokens`; every such token is
    GPU time for a response that is then thrown away (BENCHMARKS.md, loop stopping).

    Why these defaults: a pattern of period p also repeats with period 2p, 3p..., so what triggers is
    a tail of at least `min_count` identical blocks of `min_pattern_size` tokens or more. Legitimate
    mathematics repeats, but not like that: an enumeration, a table of values or "Wait, let me
    check" openings differ in their numbers or in what follows, and a matrix of zeros repeats its row
    only as often as it has rows. `min_count` 12 leaves every zero matrix up to 11 rows alone (and,
    with `min_pattern_size` 8, any run of one or two repeated tokens shorter than 96), while a loop
    of a 100-token paragraph is stopped after 1,200 tokens of it. `max_pattern_size` bounds the
    loops it can see (longer paragraphs repeat unnoticed) and its cost: vLLM checks every pattern
    size at every step of every request in Python, about 0.25 us per size (121 sizes: ~30 us per
    request and step), overlapped with the GPU's next step by vLLM's async scheduling (on by default
    on GPU). tests/test_repetition_defaults.py checks these cases with vLLM's own check."""

    enabled: bool = Field(default=True, description=(
        "Stop looping requests inside vLLM (finish reason \"repetition\"); false turns the check off "
        "(then only the after-the-fact count of cut-off responses ending in a loop remains)."))
    max_pattern_size: int = Field(default=128, gt=0, description=(
        "Longest repeated token block looked for; longer loops go unnoticed, and each extra size costs "
        "scheduler time at every step."))
    min_pattern_size: int = Field(default=8, gt=0, description=(
        "Shortest block: shorter periods count only through their multiples of at least this size."))
    min_count: int = Field(default=12, ge=2, description=(
        "Repeats in a row that make a loop: above the rows of any zero matrix written out in full."))

    @model_validator(mode="after")
    def _sizes(self) -> "RepetitionDetectionConfig":
        if self.min_pattern_size > self.max_pattern_size:
            raise ValueError("repetition_detection.min_pattern_size: must not exceed max_pattern_size")
        return self


class InstructionStageConfig(_Strict):
    top_p: float = Field(default=1.0, gt=0, le=1)
    samples_per_prompt: int = Field(default=16, gt=0, description="vLLM n per Magpie request.")
    oversample: float = Field(
        default=0.3, ge=0, description="Extra clean instructions a shard keeps, for cleaning losses."
    )
    max_rounds: int = Field(default=20, gt=0, description=(
        "Rounds a shard may sample before it fails, naming its keep rate and drop reasons; a round is what "
        "its target needs at throughput.keep_rate (so 20 lets a keep rate down to about a twentieth of "
        "the planned one through)."))
    max_difficulty: bool = True
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage.")


class ResponseStageConfig(_Strict):
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, gt=0)
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage.")


class MultiResponseStageConfig(_Strict):
    num_responses: int = Field(default=7, ge=2)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=4096, gt=0)
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage.")


class RewardStageConfig(_Strict):
    max_length: int = Field(default=8192, gt=0, description="ArmoRM's context; longer is cut.")
    batch_tokens: int = Field(default=32768, gt=0, description="Padded tokens per forward pass.")
    score_reasoning: bool = Field(
        default=False, description="Score reasoning + answer; default scores the answer only."
    )


class ShardingConfig(_Strict):
    """Problems per shard (one array task) and per chunk (one checkpoint).

    A shard size left unset is derived from the throughput model so that one task runs about
    `target_task_hours` on one GPU: long enough to amortise the model load, short enough to fit the
    time limit and to lose little to a node failure."""

    instructions: int | None = Field(default=None, gt=0)
    responses: int | None = Field(default=None, gt=0)
    multi_responses: int | None = Field(default=None, gt=0)  # rewards use the same shards (aftercorr)
    target_task_hours: float = Field(default=1.5, gt=0)
    chunk_size: int = Field(default=256, gt=0, description="Problems per committed chunk.")
    max_shards: int = Field(default=100_000, gt=0, description=(
        "The most shards one stage of one domain may have; a plan above it is refused at launch "
        "(it would be held in memory), with the count and shard size that caused it."))


class ThroughputConfig(_Strict):
    """Planning estimates (dry-run GPU-hours), not limits. Defaults: a 32B bf16 model on one A100
    80GB under vLLM batching; BENCHMARKS.md says how to measure your own."""

    generation_tokens_per_second: float | None = Field(default=None, gt=0, description=(
        "Output tokens/s per GPU for every generation stage; unset: the roofline planner's figure per stage."))
    measured: dict[str, dict[str, dict[str, float]]] = Field(default_factory=dict, description=(
        "Measured output tokens/s per GPU by model, GPU type and stage (`python -m magpie_hpc calibrate "
        "RUN_DIR` prints them from a pilot run); used instead of the roofline where model and GPU match."))
    reward_tokens_per_second: float = Field(default=20000.0, gt=0, description="Scored tokens/s per GPU.")
    model_load_seconds: float = Field(default=240.0, ge=0, description="Per task, before the first chunk.")
    instruction_fill: float = Field(default=0.3, gt=0, le=1, description="Mean instruction length / max.")
    response_fill: float = Field(default=0.6, gt=0, le=1, description="Mean response length / max.")
    keep_rate: float = Field(default=0.7, gt=0, le=1, description="Share of Magpie samples kept by cleaning.")


class ArchitectureConfig(_Strict):
    """A model's sizes as the planner uses them (magpie_hpc/hardware.py ModelArch); frozen into
    run.json at launch so that every task plans the same shards."""

    layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    attention_heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    parameters: int = Field(gt=0)
    dtype_bytes: int = Field(default=2, gt=0)
    max_position_embeddings: int | None = None


class HardwareConfig(_Strict):
    """The generation GPUs, for the memory and roofline planner (magpie_hpc/roofline.py)."""

    gpu: str = Field(default="A100-80GB", description=(
        "GPU type: A100-40GB, A100-80GB, H100-80GB, H200, L40S (magpie_hpc/hardware.py), or any name "
        "with gpu_memory_gib and memory_bandwidth_tbs."))
    gpu_memory_gib: float | None = Field(default=None, gt=0, description="Device memory; overrides the table.")
    memory_bandwidth_tbs: float | None = Field(default=None, gt=0, description="Peak memory bandwidth, TB/s; overrides the table.")
    gpus_per_node: int = Field(default=4, gt=0, description="GPUs on one node: the largest tensor-parallel group.")
    architecture: ArchitectureConfig | None = Field(default=None, description=(
        "The model's sizes; unset: read from its config.json, or the menu table. Frozen at launch."))


class FaultToleranceConfig(_Strict):
    """How tasks survive preemption, dead nodes and hung engines."""

    max_attempts: int = Field(default=3, gt=0, description=(
        "Failed starts per shard (requeues + resubmits) before it is failed for good; starts that a "
        "signal stopped (preemption, time limit, scancel) do not count."))
    time_limit_requeues: int = Field(default=3, ge=0, description=(
        "Times one SLURM task requeues itself at its time limit (it resumes after its last committed "
        "chunk); past that it ends and the shard is left for `resubmit`."))
    lock: bool = Field(default=True, description="One writer per shard (off only to test that chunks alone keep records once).")
    heartbeat_seconds: float = Field(default=30.0, gt=0, description="How often a task refreshes its lock's owner record.")
    stale_seconds: float = Field(default=300.0, gt=0, description="An owner silent this long is dead; its lock is taken over.")
    stall_seconds: float = Field(default=1800.0, gt=0, description="No committed chunk for this long: the engine hung; exit.")
    start_jitter_seconds: float = Field(default=10.0, ge=0, description="Random delay before a task starts: no stampede.")
    wait_for_holder: bool = Field(default=True, description="A second task on a busy shard waits for it instead of exiting.")

    @model_validator(mode="after")
    def _stale_after_heartbeat(self) -> "FaultToleranceConfig":
        if self.stale_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError("fault_tolerance.stale_seconds: must exceed twice heartbeat_seconds, or live owners look dead")
        return self


class SlurmStageResources(_Strict):
    gpus: int = Field(default=1, ge=0)
    cpus: int = Field(default=8, gt=0)
    mem_gb: int = Field(default=64, gt=0)
    time_min: int = Field(default=240, gt=0)
    signal_delay_s: int = Field(default=120, gt=0, description=(
        "SLURM sends USR2 this long before time_min runs out; the task then requeues itself. Only the "
        "chunk in flight is lost, so this needs no more than a commit and a margin for SLURM's check."))

    @model_validator(mode="after")
    def _signal_before_limit(self) -> "SlurmStageResources":
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(f"{self.signal_delay_s}s leaves no working time in time_min={self.time_min}; "
                             "lower signal_delay_s or raise time_min")
        return self


# sbatch --mail-type values (SLURM 22.05 and later).
MAIL_TYPES = {"NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT",
              "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS"}


class SlurmConfig(_Strict):
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = Field(default=64, gt=0, description="The %k throttle of each array.")
    stage_array_parallelism: dict[str, int] = Field(default_factory=dict, description="Per-stage %k.")
    profile: str | None = Field(default=None, description="A cluster profile in slurm_templates/.")
    setup: list[str] = Field(default_factory=list, description="Shell lines run before each task.")
    python: str | None = Field(default=None, description="Python on compute nodes.")
    mail_user: str | None = Field(default=None, description=(
        "Address SLURM mails (sbatch --mail-user) when the merge job ends: the dataset is ready, or "
        "it failed. None: no mail."))
    mail_type: str = Field(default="END,FAIL", description="sbatch --mail-type for the mailed jobs.")
    mail_every_array: bool = Field(default=False, description=(
        "Also mail for every stage's array (one mail per array, not per task), not only the merge."))

    @model_validator(mode="after")
    def _check_mail(self) -> "SlurmConfig":
        # Both reach the sbatch script as #SBATCH lines: one address, known words, nothing else.
        if self.mail_user is not None and not re.fullmatch(r"[\w.+-]+(@[\w.-]+)?", self.mail_user):
            raise ValueError(f"slurm.mail_user: {self.mail_user!r} is not one mail address; give e.g. name@site.org")
        bad = [t for t in self.mail_type.split(",") if t.strip().upper() not in MAIL_TYPES]
        if bad:
            raise ValueError(f"slurm.mail_type: {bad[0]!r} is not a SLURM mail type; use e.g. END,FAIL "
                             f"(one of {','.join(sorted(MAIL_TYPES))})")
        return self

    @field_validator("partition", "qos")
    @classmethod
    def _slurm_name_list(cls, value: str | None, info) -> str | None:
        if value is not None and not SLURM_NAME_LIST.fullmatch(value):
            check_no_control(value, f"slurm.{info.field_name}")
            raise ValueError(f"slurm.{info.field_name}: {value!r} is not a SLURM {info.field_name} name "
                             "(letters, digits, _ . -, comma-separated)")
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
            raise ValueError(f"slurm.constraint: {value!r} is not a SLURM feature expression "
                             "(features joined by & | , with [ ] ( ) and *N)")
        return value

    @field_validator("python")
    @classmethod
    def _python_path(cls, value: str | None) -> str | None:
        if value is not None and not SAFE_PATH.fullmatch(value):
            check_no_control(value, "slurm.python")
            raise ValueError(f"slurm.python: {value!r} is not a plain path (no spaces or shell characters); "
                             "use a path such as /opt/env/bin/python")
        return value

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | None) -> str | None:
        return value if value is None else check_no_control(value, "slurm.profile")

    @field_validator("stage_array_parallelism")
    @classmethod
    def _known_stages(cls, value: dict[str, int]) -> dict[str, int]:
        for stage in value:
            if stage not in STAGES:
                raise ValueError(f"slurm.stage_array_parallelism: unknown stage {stage!r}; choose from {','.join(STAGES)}")
        return value
    gpu_memory_gb: float | None = Field(default=None, gt=0, description=(
        "Memory of one GPU of the partition's nodes, for preflight's does-the-model-fit check; unset: "
        "read from sinfo (a feature like `80gb`, or the gres type; an A100 with no memory feature "
        "counts as 40 GB, since an `a100` constraint also matches the 40 GB nodes)."))
    gpu_stage: SlurmStageResources = Field(default_factory=SlurmStageResources)
    cpu_stage: SlurmStageResources = Field(
        default_factory=lambda: SlurmStageResources(gpus=0, cpus=2, mem_gb=16, time_min=60)
    )


def _default_domains() -> dict[str, DomainConfig]:
    return {name: DomainConfig(**preset) for name, preset in registry.DOMAIN_PRESETS.items()}


def _default_models() -> dict[str, ModelEntry]:
    return {key: ModelEntry(**entry) for key, entry in registry.MODEL_MENU.items()}


class RunConfig(_Strict):
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


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith(f"{field}:") or ":" in msg.split(" ")[0]:
        return msg
    return f"{field}: {msg} (got {err.get('input')!r})"


PROFILES_DIR = Path(__file__).resolve().parent.parent / "slurm_templates"


def profile_path(name: str) -> Path:
    """A cluster profile: a path, or a name in slurm_templates/ (`a100` -> slurm_templates/a100.toml)."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    return PROFILES_DIR / f"{name}.toml"


def _read_toml(path: Path, flag: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{flag}: no such file {path}; pass an existing TOML file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{flag}: {path} is not valid TOML ({exc}); fix the file") from exc


def load_config(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
    count: int | None = None,
    profile: str | None = None,
) -> RunConfig:
    """Defaults < cluster profile < TOML file < CLI overrides. `count` sets every chosen domain,
    `counts` some."""
    data: dict[str, Any] = RunConfig().model_dump(mode="python")
    if profile is not None:
        data = _deep_merge(data, _read_toml(profile_path(profile), "--profile"))
    if config_file is not None:
        data = _deep_merge(data, _read_toml(Path(config_file), "--config"))
    data = _deep_merge(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        chosen = RunConfig.model_validate({**data, "domain_settings": data["domain_settings"]}).domains
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    for name, value in counts.items() if counts else ():
        if name not in data["domain_settings"]:
            raise ConfigError(f"--counts: unknown domain {name!r}; choose from {','.join(data['domain_settings'])}")
        if name not in chosen:
            raise ConfigError(f"--counts: {name} is not among --domains {','.join(chosen)}; add it there")
    for name in chosen:
        new = count if count is not None else (counts or {}).get(name)
        if new is not None:
            if new <= 0:
                raise ConfigError(f"count: must be > 0 for {name} (got {new}); pass a positive --count")
            data["domain_settings"][name] = {**data["domain_settings"][name], "count": new}
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None
    check_plan_size(cfg)
    return cfg


def check_plan_size(cfg: RunConfig) -> None:
    """Refuse a plan of more than sharding.max_shards shards per stage, counted arithmetically
    (the plan itself is a list of every shard)."""
    from .plan import STAGE_SHARDING, shard_size

    for domain in cfg.domains:
        count = cfg.domain(domain).count
        for key in sorted({k for k in STAGE_SHARDING.values() if k}):
            size = shard_size(cfg, key, domain)
            shards = math.ceil(count / size)
            if shards > cfg.sharding.max_shards:
                raise ConfigError(
                    f"sharding.max_shards: {domain} {key} would have {shards:,} shards ({count:,} problems, {size:,} "
                    f"per shard), above {cfg.sharding.max_shards:,}; raise sharding.{key} or lower the count")


def parse_counts(text: str) -> dict[str, int]:
    """`algebra=100,geometry=50` -> {"algebra": 100, "geometry": 50}."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            number = int(value)
        except ValueError:
            raise ConfigError(f"--counts: {item!r} is not DOMAIN=N; write e.g. algebra=100,geometry=50") from None
        if name.strip() in counts:
            raise ConfigError(f"--counts: {name.strip()} is given twice; give each domain once")
        counts[name.strip()] = number
    return counts
