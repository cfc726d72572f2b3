"""DPO pair choice (magpie_hpc.quality.dpo): hand-made response sets, then random ones against
the rule's invariants."""

from __future__ import annotations

import math
import random

import pytest

from magpie_hpc.quality.dpo import SKIP_REASONS, choose_pair, dpo_record


def test_highest_and_lowest_complete():
    responses = ["a", "b", "c", "d"]
    scores = [0.2, 0.9, -0.5, 0.4]
    pair, reason = choose_pair(responses, scores, [True] * 4)
    assert reason is None
    assert (pair.chosen, pair.rejected) == (1, 2)
    assert (pair.score_chosen, pair.score_rejected) == (0.9, -0.5)
    assert pair.margin == pytest.approx(1.4)


def test_truncated_and_incomplete_never_chosen_nor_rejected():
    # The best score is truncated, the worst has no answer: both are out.
    responses = ["cut off", "good", "ok", "no answer"]
    scores = [5.0, 0.8, 0.1, -3.0]
    pair, reason = choose_pair(responses, scores, [False, True, True, False])
    assert reason is None and (pair.chosen, pair.rejected) == (1, 2)


def test_rejected_text_differs_from_chosen():
    # A lower-scored copy of the chosen text is not a rejected answer; whitespace does not make it new.
    responses = ["same answer", "other", " same answer\n"]
    scores = [0.9, 0.5, 0.1]
    pair, _ = choose_pair(responses, scores, [True, True, True])
    assert (pair.chosen, pair.rejected) == (0, 1)
    assert responses[pair.chosen].strip() != responses[pair.rejected].strip()


@pytest.mark.parametrize(
    "responses, scores, complete",
    [
        (["x", "x", "x"], [0.9, 0.1, 0.5], [True, True, True]),  # one distinct text
        (["x", "y", "z"], [0.9, 0.1, 0.5], [True, False, False]),  # one complete response
        (["x", "y"], [0.9, 0.1], [False, False]),  # none complete
        (["x", "y"], [0.9, float("nan")], [True, True]),  # a score that is not a number does not compete
        ([], [], []),
    ],
)
def test_no_pair(responses, scores, complete):
    assert choose_pair(responses, scores, complete) == (None, "no_pair")


def test_tie_gives_no_pair():
    assert choose_pair(["x", "y", "z"], [0.3, 0.3, 0.3], [True] * 3) == (None, "tie")
    # min_margin 0 still needs a strictly positive margin.
    assert choose_pair(["x", "y"], [-1.0, -1.0], [True, True], min_margin=0.0) == (None, "tie")


def test_min_margin_is_inclusive():
    responses, scores = ["x", "y"], [0.75, 0.25]
    assert choose_pair(responses, scores, [True, True], min_margin=0.6) == (None, "margin")
    pair, reason = choose_pair(responses, scores, [True, True], min_margin=0.5)
    assert reason is None and pair.margin == 0.5


def test_ties_break_to_the_first_index():
    pair, _ = choose_pair(["a", "b", "c", "d"], [0.5, 0.5, -0.5, -0.5], [True] * 4)
    assert (pair.chosen, pair.rejected) == (0, 2)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        choose_pair(["a", "b"], [0.1], [True, True])
    with pytest.raises(ValueError):
        choose_pair(["a", "b"], [0.1, 0.2], [True])
    with pytest.raises(ValueError):
        choose_pair(["a"], [0.1, 0.2], [True, True])
    with pytest.raises(ValueError):
        choose_pair(["a", "b"], [0.1], [True])
    with pytest.raises(ValueError):
        choose_pair(["a"], [0.1], [True, True])


def test_many_responses_are_not_a_mismatch():
    # Lengths past CPython's small-int cache: equal lengths compare by value, not identity.
    n = 300
    pair, reason = choose_pair([f"r{i}" for i in range(n)], [float(i) for i in range(n)], [True] * n)
    assert reason is None and (pair.chosen, pair.rejected) == (n - 1, 0)


def test_record_is_trl_conversational():
    pair, _ = choose_pair(["good", "bad"], [1.0, -1.0], [True, True])
    record = dpo_record("algebra-3", "What is 1+1?", ["good", "bad"], pair)
    assert record["prompt"] == [{"role": "user", "content": "What is 1+1?"}]
    assert record["chosen"] == [{"role": "assistant", "content": "good"}]
    assert record["rejected"] == [{"role": "assistant", "content": "bad"}]
    assert (record["id"], record["score_chosen"], record["score_rejected"], record["margin"]) == (
        "algebra-3",
        1.0,
        -1.0,
        2.0,
    )


def test_random_sets_keep_the_invariants():
    rng = random.Random(7)
    seen = {r: 0 for r in (None, *SKIP_REASONS)}
    for _ in range(2000):
        n = rng.randint(0, 7)
        responses = [rng.choice(["A", "B", "C", "A "]) for _ in range(n)]
        scores = [rng.choice([0.1, 0.2, 0.5, -0.3]) for _ in range(n)]
        complete = [rng.random() < 0.7 for _ in range(n)]
        min_margin = rng.choice([0.0, 0.2, 0.5])
        pair, reason = choose_pair(responses, scores, complete, min_margin)
        seen[reason] += 1
        distinct = {responses[i].strip() for i in range(n) if complete[i]}
        if pair is None:
            assert reason in SKIP_REASONS
            if reason == "no_pair":
                assert len(distinct) < 2
            continue
        assert complete[pair.chosen] and complete[pair.rejected]
        assert responses[pair.chosen].strip() != responses[pair.rejected].strip()
        assert pair.margin > 0 and pair.margin >= min_margin
        assert pair.score_chosen == max(s for s, ok in zip(scores, complete) if ok)
        assert pair.score_rejected == min(
            s for r, s, ok in zip(responses, scores, complete) if ok and r.strip() != responses[pair.chosen].strip()
        )
        assert math.isclose(pair.margin, scores[pair.chosen] - scores[pair.rejected])
    assert all(seen.values()), seen  # every outcome was exercised
