"""The model menu's entries and how the generation engine runs them (`[engine]`, `[models.KEY]`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import StrictModel


class ModelEntry(StrictModel):
    """A menu model: its hub id and the Magpie template family it speaks."""

    hub_id: str
    family: Literal["deepseek_r1", "chatml", "llama3", "llama3_1"]
    description: str = ""
    stop_token_ids: list[int] = Field(default_factory=list)
    tensor_parallel_size: int | None = Field(
        default=None,
        gt=0,
        description=(
            "GPUs the model is split over; unset: the planner's choice for hardware.gpu (magpie_hpc/roofline.py)."
        ),
    )
    max_model_len: int = Field(default=8192, gt=0)
    max_position_embeddings: int | None = Field(
        default=None,
        gt=0,
        description=(
            "The model's context (config.json). Launch refuses a larger max_model_len; the cached "
            "config.json, where present, is the authority."
        ),
    )


class EngineConfig(StrictModel):
    """How generation and scoring run. `synthetic` is the test engine for orchestration tests."""

    kind: Literal["vllm", "synthetic"] = "vllm"
    reward_kind: Literal["transformers", "synthetic"] = "transformers"
    # What vLLM and torch both accept; anything else would only fail on the compute node.
    dtype: Literal["auto", "bfloat16", "float16", "float32", "half", "float"] = "bfloat16"
    gpu_memory_utilization: float = Field(default=0.95, gt=0, le=1)
    enable_prefix_caching: bool = True  # every Magpie prompt shares one prefix
    enforce_eager: bool = False
    compile_cache: Literal["shared", "private"] = Field(
        default="shared",
        description=(
            'torch.compile caches of SLURM tasks, inside the run directory (RUN_DIR/cache/compile): "shared": '
            "one per (model, vLLM version, GPU type), built by the first task under a lock and read by the "
            'others (magpie_hpc/compile_cache.py); "private": every task compiles its own.'
        ),
    )
    max_model_len: int | None = Field(default=None, gt=0, description="Overrides the model entry.")
    tensor_parallel_size: int | None = Field(default=None, gt=0)
    allow_untested_engine: bool = Field(
        default=False,
        description=(
            "Run on a vLLM outside the release line the tests run (engine_version.TESTED_VLLM); launch "
            "and every task refuse one otherwise. Recorded in run.json."
        ),
    )
    max_num_seqs: int | None = Field(
        default=None,
        gt=0,
        description=(
            "vLLM's max_num_seqs (sequences decoded at once); unset: what fits the KV cache at the stage's "
            "expected lengths, by the planner (magpie_hpc/roofline.py)."
        ),
    )
    # Synthetic engine only: simulated speed and injected faults ("stage:domain:shard").
    synthetic_tokens_per_second: float = Field(default=0.0, ge=0)
    synthetic_fail: list[str] = Field(default_factory=list)
    synthetic_hang: list[str] = Field(default_factory=list)
    # Synthetic engine only: how it misbehaves like a real model (engine/synthetic.py, Misbehaviour).
    # Each sample draws one kind; the four rates add up to at most 1.
    synthetic_length_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Share of samples (instructions and responses) that run on past max_tokens: cut mid-way, "
            "finish_reason 'length'."
        ),
    )
    synthetic_loop_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description=(
            "Share of samples that fall into a loop: the tail repeats one phrase until vLLM's repetition "
            "detection stops it (finish_reason 'repetition'), or max_tokens does first ('length')."
        ),
    )
    synthetic_no_think_rate: float = Field(
        default=0.0, ge=0, le=1, description=("Share of responses that stop without closing </think> (no answer part).")
    )
    synthetic_duplicate_rate: float = Field(
        default=0.04,
        ge=0,
        le=1,
        description=(
            "Share of samples that repeat a common text exactly: an instruction a stock problem, a response "
            "the one most likely response of its prompt."
        ),
    )
    synthetic_answer_agreement: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Chance that a response boxes its prompt's consensus answer; otherwise it boxes an answer of its "
            "own (0: a prompt's answers never agree, 1: they always do)."
        ),
    )
    synthetic_request_seeds: bool = Field(
        default=True,
        description=(
            "Honour per-request seeds as vLLM does on a GPU (same prompt and seed, same text); false: drop them "
            "as vLLM's CPU build does, so the engine-level seed and call order decide."
        ),
    )

    @model_validator(mode="after")
    def _synthetic_rates(self) -> "EngineConfig":
        total = (
            self.synthetic_length_rate
            + self.synthetic_loop_rate
            + self.synthetic_no_think_rate
            + self.synthetic_duplicate_rate
        )
        if total > 1:
            raise ValueError(f"engine: the synthetic_*_rate fields add up to {total:g}; they must add up to at most 1")
        return self
