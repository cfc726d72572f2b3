"""The engine interface: the only seam between the pipeline and what runs a model.

Stages hand over whole batches of token-id prompts and get text, token counts and finish reasons
back; they never see vLLM or transformers. Tests swap in the synthetic engine at this seam only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sampling:
    temperature: float
    top_p: float
    max_tokens: int
    n: int = 1
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    repetition_penalty: float = 1.0
    seed: int | None = None  # per-request seed, where the engine supports one


@dataclass(frozen=True)
class Completion:
    text: str
    output_tokens: int
    finish_reason: str  # "stop" or "length" (vLLM's words)


@dataclass(frozen=True)
class PromptResult:
    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """One chunk's prompts and their sampling settings."""

    prompts: Sequence[Sequence[int]]
    sampling: Sampling


# (request ordinal in the stream, prompt position in the request, its result)
OnFinished = Callable[[int, int, PromptResult], None]


class Generator(ABC):
    """A loaded generator model. Built once per task; fed whole chunks."""

    name: str = "generator"
    load_seconds: float = 0.0

    @abstractmethod
    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[PromptResult]:
        """One result per prompt, in order, each with `sampling.n` completions."""

    def generate_stream(self, requests: Iterable[Request], on_finished: OnFinished | None = None
                        ) -> Iterator[list[PromptResult]]:
        """Each request's results, in request order, as soon as that request is complete. `requests`
        is pulled lazily: an engine that can takes the next one before the current one is done, so
        it never drains at a chunk boundary nor idles while the caller commits. `on_finished(r, i,
        result)` is called as prompt i of the r-th request finishes (the per-request journal). This
        default runs them one after another."""
        for ordinal, request in enumerate(requests):
            results = self.generate(request.prompts, request.sampling)
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
