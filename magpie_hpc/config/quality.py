"""Dataset-quality settings (`[quality]` in a run config): near-duplicate removal at select,
answer agreement and DPO pairs at merge, and the thresholds `python -m magpie_hpc report` flags."""

from __future__ import annotations

import os

from pydantic import Field, field_validator

from .base import StrictModel

# A problem "agrees" when its majority final answer is shared by at least this share of its
# responses (4 of 7). The report's agreement rate is the share of problems that agree.
AGREEMENT_LEVEL = 0.5


class QualityConfig(StrictModel):
    """What makes the dataset trainable without cleaning it first."""

    near_dedup: bool = Field(
        default=True,
        description="Drop near-duplicate instructions across the whole domain at select (false: exact dedup only).",
    )
    near_dup_threshold: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (character 5-grams, MinHash) at or above which an instruction "
        "is a near-duplicate of an earlier one. 1.0 drops only texts whose shingle sets are equal "
        "(they differ in spacing, case or punctuation); near_dedup = false turns it off.",
    )
    decontamination_files: list[str] = Field(
        default_factory=list,
        description="Local JSON, JSONL or Parquet files of evaluation-benchmark problems; instructions that "
        "reproduce one are dropped at select and replaced (relative paths are taken from the "
        "directory launch runs in; launch checks every file).",
    )
    decontamination_field: str = Field(
        default="problem",
        min_length=1,
        description="The field (column) of each benchmark record that holds the problem text.",
    )
    decontamination_ngram: int = Field(
        default=13,
        ge=1,
        le=100,
        description="An instruction that shares one word n-gram of this length with a benchmark problem is "
        "contaminated (13, as commonly used for math decontamination).",
    )
    decontamination_threshold: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="Also contaminated: estimated Jaccard similarity (character 5-grams, MinHash, as near-dedup) "
        "at or above this with a benchmark problem.",
    )
    answer_equivalence: bool = Field(
        default=True,
        description="Group each problem's final answers by mathematical equivalence (math-verify) for "
        "majority_answer, agreement and answers_agree; false: by normalised LaTeX strings only.",
    )
    equivalence_timeout_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="CPU-time limit of one answer parse and of one comparison (CPU time, so a busy node "
        "gives the same dataset); past it the answer is compared as a string (counted in "
        "dataset_info.json, answer_equivalence).",
    )
    equivalence_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Processes that check answer equivalence during the merge (0: the usable cores, at most 8).",
    )
    dpo_min_margin: float = Field(
        default=0.0,
        ge=0,
        description="Smallest reward margin (chosen - rejected) of a DPO pair; a pair also needs a margin > 0.",
    )
    drop_disagreeing: bool = Field(
        default=False,
        description="Leave out of the preference and DPO files the problems whose final answers never agree "
        "(no answer given by two responses); by default they are kept with answers_agree = false.",
    )
    max_truncation_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Report flag: share of preference responses cut off by max_tokens above this.",
    )
    max_duplicate_rate: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Report flag: share of clean instructions that were exact or near duplicates above this.",
    )
    min_agreement_rate: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=f"Report flag: share of problems whose majority answer has agreement >= {AGREEMENT_LEVEL} "
        "below this.",
    )

    @field_validator("decontamination_files")
    @classmethod
    def _absolute(cls, files: list[str]) -> list[str]:
        # Frozen into run.json as absolute paths, so compute nodes find them from any directory.
        return [os.path.abspath(os.path.expanduser(f)) for f in files]
