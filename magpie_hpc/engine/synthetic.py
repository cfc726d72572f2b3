"""A deterministic stand-in engine for orchestration tests (SLURM arrays, preemption, merge scale).

It honours the same interface and settings as vLLM (n, max_tokens truncation, finish reasons) and
writes text shaped like the real thing: research-style problems, with a share of the defects the
cleaning step must catch, and R1-style `<think>` responses ending in `\\boxed{}`. It can simulate
speed and inject failures or hangs for one shard.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence

from .base import Completion, EngineFault, Generator, PromptResult, Sampling, Scorer

_OBJECTS = [
    "finite group of order {a}", "Galois extension of degree {a} over $\\mathbb{{Q}}$",
    "compact Riemannian manifold of dimension {a}", "martingale bounded in $L^{a}$",
    "graph on {a} vertices with no $K_{b}$", "number field of discriminant {a}",
    "measurable function on $[0,{a}]$", "projective curve of genus {b}",
]
_GOALS = [
    "Prove that the number of Sylow {b}-subgroups is at most {a}.",
    "Determine the smallest $n$ such that the invariant equals {a}{b}.",
    "Compute the value of the associated sum for $n = {a}$.",
    "Show that the limit exists and find it when $k = {b}$.",
    "How many such objects exist up to isomorphism when $n = {a}$?",
]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def _instruction(rng: random.Random) -> str:
    a, b = rng.randint(3, 999), rng.randint(2, 9)
    text = f"Let $X$ be a {rng.choice(_OBJECTS).format(a=a, b=b)}. {rng.choice(_GOALS).format(a=a, b=b)}"
    roll = rng.random()
    if roll < 0.08:  # cut before its formula, as a newline stop did in the original
        return f"Let $X$ be a {rng.choice(_OBJECTS).format(a=a, b=b)}. Evaluate the following expression:"
    if roll < 0.14:  # the model went on to answer its own question
        return text + "\n\nSolution: We first note that the claim follows from a counting argument."
    if roll < 0.18:  # a low-entropy sample that repeats a common problem exactly
        return "Let $G$ be a finite group of order 12. How many Sylow 3-subgroups can $G$ have?"
    return text


def _response(rng: random.Random) -> str:
    steps = " ".join(f"Step {i}: we reduce the claim using lemma {rng.randint(1, 9)}." for i in range(rng.randint(2, 40)))
    answer = rng.choice(["12", "\\frac{1}{2}", "7", "12"])
    return f"<think>\n{steps}\n</think>\n\nBy the argument above the result holds. The answer is $\\boxed{{{answer}}}$."


class SyntheticGenerator(Generator):
    name = "synthetic"

    def __init__(self, *, seed: int, user_marker_ids: Sequence[int], tokens_per_second: float = 0.0,
                 fail: bool = False, hang: bool = False):
        self.seed = seed
        self.marker = tuple(user_marker_ids)
        self.tokens_per_second = tokens_per_second
        self.fail, self.hang = fail, hang
        self.calls = 0

    def generate(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[PromptResult]:
        if self.fail:
            raise EngineFault("synthetic engine: injected failure")
        while self.hang:  # a hung engine: never returns, never progresses
            time.sleep(3600)
        self.calls += 1
        results, produced = [], 0
        for p_index, prompt in enumerate(prompts):
            is_magpie = len(self.marker) > 0 and tuple(prompt[-len(self.marker):]) == self.marker
            completions = []
            for sample in range(sampling.n):
                rng = _rng(self.seed, self.calls, p_index, sample, tuple(prompt[-8:]), sampling.temperature)
                words = (_instruction(rng) if is_magpie else _response(rng)).split(" ")
                finish = "stop"
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
                results = self.generate(request.prompts, request.sampling)
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
