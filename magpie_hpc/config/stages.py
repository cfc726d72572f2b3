"""Per-stage sampling and scoring settings (`[instructions]`, `[responses]`, `[multi_responses]`,
`[rewards]`), with vLLM's loop stop that the generation stages share."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import StrictModel


class RepetitionDetectionConfig(StrictModel):
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

    enabled: bool = Field(
        default=True,
        description=(
            'Stop looping requests inside vLLM (finish reason "repetition"); false turns the check off '
            "(then only the after-the-fact count of cut-off responses ending in a loop remains)."
        ),
    )
    max_pattern_size: int = Field(
        default=128,
        gt=0,
        description=(
            "Longest repeated token block looked for; longer loops go unnoticed, and each extra size costs "
            "scheduler time at every step."
        ),
    )
    min_pattern_size: int = Field(
        default=8,
        gt=0,
        description=("Shortest block: shorter periods count only through their multiples of at least this size."),
    )
    min_count: int = Field(
        default=12,
        ge=2,
        description=("Repeats in a row that make a loop: above the rows of any zero matrix written out in full."),
    )

    @model_validator(mode="after")
    def _sizes(self) -> "RepetitionDetectionConfig":
        if self.min_pattern_size > self.max_pattern_size:
            raise ValueError("repetition_detection.min_pattern_size: must not exceed max_pattern_size")
        return self


class InstructionStageConfig(StrictModel):
    top_p: float = Field(default=1.0, gt=0, le=1)
    samples_per_prompt: int = Field(default=16, gt=0, description="vLLM n per Magpie request.")
    oversample: float = Field(
        default=0.3, ge=0, description="Extra clean instructions a shard keeps, for cleaning losses."
    )
    max_rounds: int = Field(
        default=20,
        gt=0,
        description=(
            "Rounds a shard may sample before it fails, naming its keep rate and drop reasons; a round is what "
            "its target needs at throughput.keep_rate (so 20 lets a keep rate down to about a twentieth of "
            "the planned one through)."
        ),
    )
    max_difficulty: bool = True
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage."
    )


class ResponseStageConfig(StrictModel):
    top_p: float = Field(default=1.0, gt=0, le=1)
    repetition_penalty: float = Field(default=1.0, gt=0)
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage."
    )


class MultiResponseStageConfig(StrictModel):
    num_responses: int = Field(default=7, ge=2)
    temperature: float = Field(default=0.8, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=4096, gt=0)
    repetition_detection: RepetitionDetectionConfig = Field(
        default_factory=RepetitionDetectionConfig, description="Loop stop inside vLLM for this stage."
    )


class RewardStageConfig(StrictModel):
    max_length: int = Field(default=8192, gt=0, description="ArmoRM's context; longer is cut.")
    batch_tokens: int = Field(default=32768, gt=0, description="Padded tokens per forward pass.")
    score_reasoning: bool = Field(
        default=False, description="Score reasoning + answer; default scores the answer only."
    )
