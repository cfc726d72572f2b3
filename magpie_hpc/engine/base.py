"""The engine interface: the only seam between the pipeline and what runs a model.

Stages hand over whole batches of token-id prompts and get text, token counts and finish reasons
back; they never see vLLM or transformers. Tests swap in the synthetic engine at this seam only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field


# Why a completion ended, in vLLM's words; the stages handle each.
FINISH_STOP = "stop"  # a stop token or string: the model finished
FINISH_LENGTH = "length"  # max_tokens (or the context) cut it off
FINISH_REPETITION = "repetition"  # the engine saw its tail loop and stopped it (RepetitionDetection)
FINISH_REASONS = (FINISH_STOP, FINISH_LENGTH, FINISH_REPETITION)


@dataclass(frozen=True)
class RepetitionDetection:
    """Stop a completion whose last `min_count` blocks of one size in
    [`min_pattern_size`, `max_pattern_size`] tokens are identical (vLLM's RepetitionDetectionParams;
    defaults and why in config.RepetitionDetectionConfig)."""

    max_pattern_size: int
    min_pattern_size: int
    min_count: int

    @staticmethod
    def from_settings(settings) -> "RepetitionDetection | None":
        """From a stage's `repetition_detection` config section; None when it is turned off."""
        if not settings.enabled:
            return None
        return RepetitionDetection(settings.max_pattern_size, settings.min_pattern_size, settings.min_count)


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int
    n: int = 1
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    repetition_penalty: float = 1.0
    # Per-request seed, where the engine supports one. vLLM gives sample k of a request the seed
    # `seed + k` with a generator of its own (v1/engine/parallel_sampling.py): two requests with the
    # same prompt and seed return the same n texts. Per-prompt seeds: `Request.seeds`.
    seed: int | None = None
    repetition_detection: RepetitionDetection | None = None  # None: run loops on to max_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    output_tokens: int
    # "stop": finished; "length": cut off at max_tokens; "repetition": stopped by the engine as a
    # loop (only when Sampling.repetition_detection is set). Neither of the last two is an answer.
    finish_reason: str


@dataclass(frozen=True)
class PromptResult:
    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """One chunk's prompts and their sampling settings."""

    prompts: Sequence[Sequence[int]]
    sampling: Sampling
    # One seed per prompt in place of `sampling.seed`, so that identical prompts (every Magpie
    # request) get non-overlapping seed ranges: prompt p's sample k is seeded seeds[p] + k.
    seeds: Sequence[int] | None = None


def prompt_seeds(prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int] | None) -> list[int | None]:
    """The seed of each prompt's first sample: `seeds` where given, else `sampling.seed` for all."""
    if seeds is None:
        return [sampling.seed] * len(prompts)
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts: give one per prompt")
    return list(seeds)


# (request ordinal in the stream, prompt position in the request, its result)
OnFinished = Callable[[int, int, PromptResult], None]


class Generator(ABC):
    """A loaded generator model. Built once per task; fed whole chunks."""

    name: str = "generator"
    load_seconds: float = 0.0

    @abstractmethod
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[PromptResult]:
        """One result per prompt, in order, each with `sampling.n` completions; `seeds`: as
        `Request.seeds`."""

    def generate_stream(
        self, requests: Iterable[Request], on_finished: OnFinished | None = None
    ) -> Iterator[list[PromptResult]]:
        """Each request's results, in request order, as soon as that request is complete. `requests`
        is pulled lazily: an engine that can takes the next one before the current one is done, so
        it never drains at a chunk boundary nor idles while the caller commits. `on_finished(r, i,
        result)` is called as prompt i of the r-th request finishes (the per-request journal). This
        default runs them one after another."""
        for ordinal, request in enumerate(requests):
            results = self.generate(request.prompts, request.sampling, request.seeds)
            for i, result in enumerate(results):
                if on_finished is not None:
                    on_finished(ordinal, i, result)
            yield results

    def close(self) -> None:
        """Release the model (GPU memory) before another one is loaded in this process."""


class Scorer(ABC):
    """A loaded reward model."""

    name: str = "scorer"
    load_seconds: float = 0.0

    @abstractmethod
    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        """One scalar per (user, assistant) conversation, in order."""

    def close(self) -> None:
        pass


class EngineFault(RuntimeError):
    """An injected or detected engine failure."""
