"""Preference pairs for DPO from one problem's scored responses (a pure function).

The rule, in full:

* only complete responses compete (finished with "stop": neither cut off at max_tokens, "length",
  nor stopped by the engine as a loop, "repetition"; with an answer part) whose score is a finite
  number;
* chosen = the highest-scored of them (the first on a tie);
* rejected = the lowest-scored of them whose text (stripped) differs from the chosen text
  (the first on a tie);
* no pair when fewer than two distinct complete texts exist (``"no_pair"``), when the two
  scores are equal (``"tie"``: a margin of 0 teaches nothing), or when the margin is below
  ``min_margin`` (``"margin"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DpoPair", "SKIP_REASONS", "choose_pair", "dpo_record"]

SKIP_REASONS = ("no_pair", "tie", "margin")


@dataclass(frozen=True)
class DpoPair:
    chosen: int  # index into the problem's responses
    rejected: int
    score_chosen: float
    score_rejected: float

    @property
    def margin(self) -> float:
        return self.score_chosen - self.score_rejected


def choose_pair(
    responses: Sequence[str], scores: Sequence[float], complete: Sequence[bool], min_margin: float = 0.0
) -> tuple[DpoPair | None, str | None]:
    """(pair, None), or (None, reason) with reason one of SKIP_REASONS (see the module doc)."""
    if not len(responses) == len(scores) == len(complete):
        raise ValueError(f"{len(responses)} responses, {len(scores)} scores, {len(complete)} complete flags")
    eligible = [
        i
        for i in range(len(responses))
        if complete[i] and isinstance(responses[i], str) and scores[i] is not None and math.isfinite(scores[i])
    ]
    if not eligible:
        return None, "no_pair"
    chosen = max(eligible, key=lambda i: scores[i])  # max/min keep the first of equal keys
    text = responses[chosen].strip()
    others = [i for i in eligible if responses[i].strip() != text]
    if not others:
        return None, "no_pair"
    rejected = min(others, key=lambda i: scores[i])
    pair = DpoPair(chosen, rejected, float(scores[chosen]), float(scores[rejected]))
    if not pair.margin > 0:
        return None, "tie"
    if pair.margin < min_margin:
        return None, "margin"
    return pair, None


def dpo_record(problem_id: str, instruction: str, responses: Sequence[str], pair: DpoPair) -> dict:
    """One row of TRL DPOTrainer's conversational preference format (plus scores and provenance)."""
    return {
        "id": problem_id,
        "prompt": [{"role": "user", "content": instruction}],
        "chosen": [{"role": "assistant", "content": responses[pair.chosen]}],
        "rejected": [{"role": "assistant", "content": responses[pair.rejected]}],
        "score_chosen": pair.score_chosen,
        "score_rejected": pair.score_rejected,
        "margin": pair.margin,
        "chosen_index": pair.chosen,
        "rejected_index": pair.rejected,
    }
