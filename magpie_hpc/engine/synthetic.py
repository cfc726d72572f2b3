"""A deterministic stand-in engine for orchestration tests (SLURM arrays, preemption, merge scale).

It honours the same interface and settings as vLLM (n, max_tokens truncation, finish reasons) and
writes text shaped like the real thing: research-style problems, with a share of the defects the
cleaning step must catch, and R1-style `<think>` responses ending in `\\boxed{}`. It can simulate
speed and inject failures or hangs for one shard.

Seeds follow vLLM on a GPU (v1/engine/parallel_sampling.py): sample k of a prompt with seed S is
seeded S + k, and a sample's text is a function of the prompt ids, its own seed and the sampling
settings only: the same prompt with the same seed gives the same text, whatever else is in the
batch. Without a per-request seed (Sampling.seed None, or `request_seeds=False`, which models
vLLM's CPU build: it drops per-request seeds) the engine-level seed and the call order decide.
At temperature 0 the text depends on the prompt alone, and n > 1 is refused, as vLLM does.

`Misbehaviour` makes it fail the way real models do, at rates a test sets: samples cut at
max_tokens, loops stopped by repetition detection, responses that never close `</think>`, repeated
samples, and final answers that agree or differ across a prompt's n responses.
"""

from __future__ import annotations

import hashlib
import random
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Completion, EngineFault, Generator, PromptResult, Sampling, Scorer, prompt_seeds

_OBJECTS = [
    "finite group of order {a}",
    "Galois extension of degree {a} over $\\mathbb{{Q}}$",
    "compact Riemannian manifold of dimension {a}",
    "martingale bounded in $L^{a}$",
    "graph on {a} vertices with no $K_{b}$",
    "number field of discriminant {a}",
    "measurable function on $[0,{a}]$",
    "projective curve of genus {b}",
]
_GOALS = [
    "Prove that the number of Sylow {b}-subgroups is at most {a}.",
    "Determine the smallest $n$ such that the invariant equals {a}{b}.",
    "Compute the value of the associated sum for $n = {a}$.",
    "Show that the limit exists and find it when $k = {b}$.",
    "How many such objects exist up to isomorphism when $n = {a}$?",
]
# A low-entropy sample: the common problem a model writes again and again.
STOCK_PROBLEM = "Let $G$ be a finite group of order 12. How many Sylow 3-subgroups can $G$ have?"
# Answers a prompt's responses converge on; answers that disagree are numbers outside this range.
_CONSENSUS = ["12", "\\frac{1}{2}", "7", "\\sqrt{2}", "0", "3"]
# What a looping sample repeats at its tail, instruction and response alike.
_LOOPS = ["Wait, let me recompute the sum.", "Compute the value of the sum again.", "So $n = 3$ and so"]
LOOP_REPEATS = (4, 12)  # times a loop's pattern repeats before repetition detection stops it
_GREEDY_EPS = 1e-5  # vLLM's _SAMPLING_EPS: a lower temperature is greedy decoding


@dataclass(frozen=True)
class Misbehaviour:
    """Rates (0..1) of the ways real models fail; config.EngineConfig's synthetic_* fields.

    A sample's kind is drawn once: length-cut, loop, no `</think>` (responses only), duplicate,
    else a regular sample (whose instruction may still carry one of the planted cleaning defects:
    8% cut before a formula, 6% with an answer appended). The rates must add up to at most 1."""

    length_rate: float = 0.0
    loop_rate: float = 0.0
    no_think_rate: float = 0.0
    duplicate_rate: float = 0.04
    answer_agreement: float = 0.5

    def kind(self, roll: float, response: bool) -> str:
        for name, rate in (
            ("length", self.length_rate),
            ("loop", self.loop_rate),
            ("no_think", self.no_think_rate if response else 0.0),
            ("duplicate", self.duplicate_rate),
        ):
            if roll < rate:
                return name
            roll -= rate
        return "regular"


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def _prompt_key(prompt: Sequence[int]) -> str:
    """The whole prompt, not its tail: response prompts differ only in the instruction."""
    return hashlib.blake2b(array("q", prompt).tobytes(), digest_size=8).hexdigest()


def _instruction(rng: random.Random) -> str:
    a, b = rng.randint(3, 999), rng.randint(2, 9)
    text = f"Let $X$ be a {rng.choice(_OBJECTS).format(a=a, b=b)}. {rng.choice(_GOALS).format(a=a, b=b)}"
    roll = rng.random()
    if roll < 0.08:  # cut before its formula, as a newline stop did in the original
        return f"Let $X$ be a {rng.choice(_OBJECTS).format(a=a, b=b)}. Evaluate the following expression:"
    if roll < 0.14:  # the model went on to answer its own question
        return text + "\n\nSolution: We first note that the claim follows from a counting argument."
    return text


def _steps(rng: random.Random, count: int) -> str:
    return " ".join(f"Step {i}: we reduce the claim using lemma {rng.randint(1, 9)}." for i in range(count))


def _response(rng: random.Random, answer: str) -> str:
    # No opening <think>: the R1 templates end the generation prompt with "<think>\n" themselves, so
    # a real model's text starts inside its reasoning and only closes it.
    return (
        f"{_steps(rng, rng.randint(2, 40))}\n</think>\n\n"
        f"By the argument above the result holds. The answer is $\\boxed{{{answer}}}$."
    )


def _run_on(rng: random.Random, start: str, words: int) -> str:
    """`start` continued past `words` words: a sample that max_tokens will cut mid-way."""
    parts, length = [start], len(start.split(" "))
    while length <= words:
        k = rng.randint(2, 9)
        part = f"Moreover, for every $k \\le {k}$ the term $a_{{k}} = \\sum_{{j=1}}^{{k}} j^{k}$ satisfies the bound"
        parts.append(part)
        length += len(part.split(" "))
    return " ".join(parts)


def _loop(rng: random.Random, start: str, max_tokens: int | None = None) -> str:
    """`start`, then one pattern repeated: what repetition detection stops after a few laps. With
    `max_tokens` (detection off) the loop runs on past it, as a real one does, for max_tokens to cut."""
    pattern = rng.choice(_LOOPS)
    laps = rng.randint(*LOOP_REPEATS)
    if max_tokens is not None:
        laps = max(laps, max_tokens // max(1, len(pattern.split(" "))) + 1)
    return " ".join([start, *[pattern] * laps])


class SyntheticGenerator(Generator):
    name = "synthetic"

    def __init__(
        self,
        *,
        seed: int,
        user_marker_ids: Sequence[int],
        tokens_per_second: float = 0.0,
        fail: bool = False,
        hang: bool = False,
        misbehaviour: Misbehaviour | None = None,
        request_seeds: bool = True,
    ):
        self.seed = seed
        self.marker = tuple(user_marker_ids)
        self.tokens_per_second = tokens_per_second
        self.fail, self.hang = fail, hang
        self.misbehaviour = misbehaviour or Misbehaviour()
        self.request_seeds = request_seeds
        self.calls = 0

    def _sample_rng(self, key: str, seed: int | None, p_index: int, sample: int, sampling: Sampling) -> random.Random:
        if sampling.temperature < _GREEDY_EPS:
            return _rng("greedy", key)
        if seed is not None and self.request_seeds:  # vLLM on GPU: its own generator, seeded seed + k
            return _rng("seeded", key, seed + sample, sampling.temperature, sampling.top_p)
        # The engine-level generator: what a sample gets depends on everything drawn before it.
        return _rng("engine", self.seed, self.calls, p_index, sample, key, sampling.temperature)

    def _text(
        self, rng: random.Random, key: str, is_magpie: bool, max_tokens: int, detect_loops: bool = True
    ) -> tuple[str, str]:
        """(text, how it ends) of one sample: "stop", "length" (run past max_tokens) or "repetition"."""
        m = self.misbehaviour
        kind = m.kind(rng.random(), response=not is_magpie)
        consensus = _rng("consensus", key).choice(_CONSENSUS)
        if kind == "duplicate":  # the same text as every other duplicate of this prompt
            return (STOCK_PROBLEM if is_magpie else _response(_rng("mode", key), consensus)), "stop"
        if is_magpie:
            start = _instruction(rng)
        else:
            answer = consensus if rng.random() < m.answer_agreement else str(rng.randint(100, 10**6))
            start = _response(rng, answer)
        if kind == "length":  # a response is cut in its reasoning, or after </think> in its answer
            head = start if is_magpie else _steps(rng, 3)
            if not is_magpie and rng.random() < 0.5:
                head += "\n</think>\n\nBy the argument above the answer is $\\boxed{" + consensus + "}$, and"
            return _run_on(rng, head, max_tokens), "length"
        if kind == "loop":
            head = start if is_magpie else _steps(rng, rng.randint(1, 5))
            if not detect_loops:  # vLLM without repetition_detection: the loop runs to max_tokens
                return _loop(rng, head, max_tokens), "length"
            return _loop(rng, head), "repetition"
        if kind == "no_think":  # ends inside its reasoning: no `</think>`, no answer part
            return f"{_steps(rng, rng.randint(2, 20))} So the answer should be {consensus}.", "stop"
        return start, "stop"

    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: Sampling, seeds: Sequence[int] | None = None
    ) -> list[PromptResult]:
        if self.fail:
            raise EngineFault("synthetic engine: injected failure")
        while self.hang:  # a hung engine: never returns, never progresses
            time.sleep(3600)
        if sampling.temperature < _GREEDY_EPS and sampling.n > 1:
            raise ValueError(f"n must be 1 when using greedy sampling, got {sampling.n}.")  # vLLM's words
        self.calls += 1
        results, produced = [], 0
        for p_index, (prompt, seed) in enumerate(zip(prompts, prompt_seeds(prompts, sampling, seeds))):
            is_magpie = len(self.marker) > 0 and tuple(prompt[-len(self.marker) :]) == self.marker
            key = _prompt_key(prompt)
            completions = []
            for sample in range(sampling.n):
                rng = self._sample_rng(key, seed, p_index, sample, sampling)
                text, finish = self._text(
                    rng, key, is_magpie, sampling.max_tokens, detect_loops=sampling.repetition_detection is not None
                )
                words = text.split(" ")
                if len(words) > sampling.max_tokens:
                    words, finish = words[: sampling.max_tokens], "length"
                produced += len(words)
                completions.append(Completion(" ".join(words), len(words), finish))
            results.append(PromptResult(prompt_tokens=len(prompt), completions=completions))
        if self.tokens_per_second > 0:
            time.sleep(produced / self.tokens_per_second)
        return results

    def generate_stream(self, requests, on_finished=None):
        """Like vLLM's stream for the journal: the prompts of a request finish one after another,
        each after its own tokens' time, so a kill mid-chunk leaves some finished and some not."""
        for ordinal, request in enumerate(requests):
            speed, self.tokens_per_second = self.tokens_per_second, 0.0
            try:
                results = self.generate(request.prompts, request.sampling, request.seeds)
            finally:
                self.tokens_per_second = speed
            for i, result in enumerate(results):
                if speed > 0:
                    time.sleep(sum(c.output_tokens for c in result.completions) / speed)
                if on_finished is not None:
                    on_finished(ordinal, i, result)
            yield results


class SyntheticScorer(Scorer):
    name = "synthetic"

    def __init__(self, *, fail: bool = False, hang: bool = False):
        self.fail, self.hang = fail, hang

    def score(self, conversations: Sequence[list[dict[str, str]]]) -> list[float]:
        if self.fail:
            raise EngineFault("synthetic scorer: injected failure")
        while self.hang:
            time.sleep(3600)
        return [_rng(conv[-1]["content"]).uniform(-1.0, 1.0) for conv in conversations]
