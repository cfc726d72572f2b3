"""What the planner sizes shards and GPU layouts from (`[sharding]`, `[throughput]`, `[hardware]`)."""

from __future__ import annotations

from pydantic import Field

from .base import StrictModel


class ShardingConfig(StrictModel):
    """Problems per shard (one array task) and per chunk (one checkpoint).

    A shard size left unset is derived from the throughput model so that one task runs about
    `target_task_hours` on one GPU: long enough to amortise the model load, short enough to fit the
    time limit and to lose little to a node failure."""

    instructions: int | None = Field(default=None, gt=0)
    responses: int | None = Field(default=None, gt=0)
    multi_responses: int | None = Field(default=None, gt=0)  # rewards use the same shards (aftercorr)
    target_task_hours: float = Field(default=1.5, gt=0)
    chunk_size: int = Field(default=256, gt=0, description="Problems per committed chunk.")
    max_shards: int = Field(
        default=100_000,
        gt=0,
        description=(
            "The most shards one stage of one domain may have; a plan above it is refused at launch "
            "(it would be held in memory), with the count and shard size that caused it."
        ),
    )


class ThroughputConfig(StrictModel):
    """Planning estimates (dry-run GPU-hours), not limits. Defaults: a 32B bf16 model on one A100
    80GB under vLLM batching; BENCHMARKS.md says how to measure your own."""

    generation_tokens_per_second: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Output tokens/s per GPU for every generation stage; unset: the roofline planner's figure per stage."
        ),
    )
    measured: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict,
        description=(
            "Measured output tokens/s per GPU by model, GPU type and stage (`python -m magpie_hpc calibrate "
            "RUN_DIR` prints them from a pilot run); used instead of the roofline where model and GPU match."
        ),
    )
    reward_tokens_per_second: float = Field(default=20000.0, gt=0, description="Scored tokens/s per GPU.")
    model_load_seconds: float = Field(default=240.0, ge=0, description="Per task, before the first chunk.")
    instruction_fill: float = Field(default=0.3, gt=0, le=1, description="Mean instruction length / max.")
    response_fill: float = Field(default=0.6, gt=0, le=1, description="Mean response length / max.")
    keep_rate: float = Field(default=0.7, gt=0, le=1, description="Share of Magpie samples kept by cleaning.")


class ArchitectureConfig(StrictModel):
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


class HardwareConfig(StrictModel):
    """The generation GPUs, for the memory and roofline planner (magpie_hpc/roofline.py)."""

    gpu: str = Field(
        default="A100-80GB",
        description=(
            "GPU type: A100-40GB, A100-80GB, H100-80GB, H200, L40S (magpie_hpc/hardware.py), or any name "
            "with gpu_memory_gib and memory_bandwidth_tbs."
        ),
    )
    gpu_memory_gib: float | None = Field(default=None, gt=0, description="Device memory; overrides the table.")
    memory_bandwidth_tbs: float | None = Field(
        default=None, gt=0, description="Peak memory bandwidth, TB/s; overrides the table."
    )
    gpus_per_node: int = Field(default=4, gt=0, description="GPUs on one node: the largest tensor-parallel group.")
    architecture: ArchitectureConfig | None = Field(
        default=None,
        description=("The model's sizes; unset: read from its config.json, or the menu table. Frozen at launch."),
    )
