"""Property-based tests (hypothesis) of the pure functions whose bugs lose or corrupt data: shard
ranges, instruction chunk plans, instruction cleaning and DPO pair choice."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from magpie_hpc.plan import shard_ranges
from magpie_hpc.quality.cleaning import Cleaned, clean_instruction, normalize_for_dedup
from magpie_hpc.quality.dpo import SKIP_REASONS, choose_pair, dpo_record
from magpie_hpc.stages.instructions import MARGIN, MAX_CHUNK_FACTOR, plan_chunk

FAST = settings(max_examples=200, deadline=None)


@FAST
@given(count=st.integers(0, 20_000), size=st.integers(1, 3_000))
@example(count=10, size=4)
@example(count=0, size=1)
def test_shard_ranges_cover_every_index_exactly_once(count, size):
    ranges = shard_ranges(count, size)
    assert [r.shard for r in ranges] == list(range(len(ranges)))
    assert len(ranges) == max(1, math.ceil(count / size))
    # Contiguous from 0 to count: every index in exactly one shard, in order.
    assert ranges[0].start == 0 and ranges[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))
    assert sum(r.size for r in ranges) == count
    assert all(0 <= r.size <= size for r in ranges)
    # Balanced: sizes differ by at most one, larger ones first.
    sizes = [r.size for r in ranges]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@FAST
@given(
    missing=st.integers(1, 5_000),
    keep_rate=st.floats(0.05, 1.0),
    chunk_size=st.integers(1, 512),
    per_prompt=st.integers(1, 32),
)
@example(missing=167, keep_rate=0.7, chunk_size=256, per_prompt=16)
def test_chunk_plans_stay_within_the_cap_in_whole_requests(missing, keep_rate, chunk_size, per_prompt):
    samples = plan_chunk(missing, keep_rate, chunk_size, per_prompt)
    cap = max(1, math.floor(chunk_size * MAX_CHUNK_FACTOR))
    whole_cap = cap - cap % per_prompt if cap >= per_prompt else cap
    need = math.ceil(missing / keep_rate * MARGIN)
    assert 1 <= samples <= whole_cap
    if cap >= per_prompt:
        assert samples % per_prompt == 0  # no completion generated only to be thrown away
    # A need under 1.5 chunks is one chunk, enough for all of it where the cap allows; never a
    # sliver otherwise.
    if need < 1.5 * chunk_size and need <= whole_cap:
        assert samples >= need
    assert samples >= min(need, chunk_size // 2)


@FAST
@given(
    missing=st.integers(1, 3_000),
    keep_rate=st.floats(0.05, 1.0),
    chunk_size=st.integers(1, 256),
    per_prompt=st.integers(1, 16),
)
def test_chunk_plans_reach_the_target_in_bounded_rounds(missing, keep_rate, chunk_size, per_prompt):
    # At the planned keep rate, each round but the last asks at least half a chunk: the shard gets
    # its instructions in a number of rounds bounded by its need (whole instructions only: the
    # floor may lose up to half of a small round's expected yield, hence the factor 2).
    need = math.ceil(missing / keep_rate * MARGIN)
    kept, rounds = 0, 0
    while kept < missing:
        samples = plan_chunk(missing - kept, keep_rate, chunk_size, per_prompt)
        kept += max(1, math.floor(samples * keep_rate))
        rounds += 1
        assert rounds <= 2 * math.ceil(need / max(1, chunk_size // 2)) + 2


_FRAGMENTS = [
    "Let $G$ be a finite group of order $12$.",
    "Prove that $f$ is continuous.",
    "Compute $\\int_0^1 x^2\\,dx$.",
    "How many subgroups are there?",
    "Show that",
    "the following",
    "defined by",
    ":",
    ",",
    "?",
    ".",
    "=",
    "$",
    "$$",
    "\\[",
    "\\]",
    "\\(",
    "\\)",
    "\\begin{align}",
    "\\end{align}",
    "x^2 + 1",
    "\n",
    "\n\n",
    " ",
    "Solution:",
    "**Answer:**",
    "Proof.",
    "Step 1:",
    "To solve this",
    "The answer is",
    "Okay, so I",
    "<think>",
    "</think>",
    "Assistant:",
    "<|im_start|>assistant",
    "[INST]",
    "### Response:",
    "<｜Assistant｜>",
    "Is my proof correct?",
    "Find all $n$ such that",
    "Ｐｒｏｖｅ",
    "a bond pays $5",
    "What is it?",
]
texts = st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=12)), max_size=14).map("".join)
REASONS = {"empty", "truncated", "special_tokens", "dangling", "too_short"}


@settings(max_examples=400, deadline=None)
@given(text=texts, finish=st.sampled_from(["stop", "length", None]))
@example(text="Prove that $f$ is continuous.\n\nSolution: Let $\\epsilon > 0$.", finish="stop")
def test_cleaning_is_idempotent_and_never_rewrites(text, finish):
    cleaned = clean_instruction(text, finish)
    if cleaned.text is None:
        assert cleaned.dropped in REASONS
        if finish == "length" and text.strip():
            assert cleaned.dropped == "truncated"
        return
    assert finish != "length" and cleaned.dropped is None
    # A kept text is the input stripped, or the part before an appended answer: never rewritten.
    assert text.strip().startswith(cleaned.text) and cleaned.text == cleaned.text.strip()
    assert cleaned.answer_cut == (cleaned.text != text.strip())
    # Cleaning what cleaning kept changes nothing.
    assert clean_instruction(cleaned.text, "stop") == Cleaned(cleaned.text, None, False)


@FAST
@given(text=texts)
def test_dedup_key_is_idempotent(text):
    key = normalize_for_dedup(text)
    assert normalize_for_dedup(key) == key
    assert normalize_for_dedup("  " + text + " \n\t") == key  # surrounding whitespace never matters


scores = st.one_of(
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from([0.0, 1.0, -1.0]),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), None]),
)


@st.composite
def problems(draw):
    n = draw(st.integers(0, 8))
    responses = draw(st.lists(st.sampled_from(["A", "A ", " B", "B", "C", "", "D\n"]), min_size=n, max_size=n))
    return (
        responses,
        draw(st.lists(scores, min_size=n, max_size=n)),
        draw(st.lists(st.booleans(), min_size=n, max_size=n)),
    )


@settings(max_examples=300, deadline=None)
@given(problem=problems(), min_margin=st.sampled_from([0.0, 0.1, 0.5, 2.0]))
def test_dpo_pairs_obey_their_rules(problem, min_margin):
    responses, score, complete = problem
    pair, reason = choose_pair(responses, score, complete, min_margin)
    eligible = [i for i in range(len(responses)) if complete[i] and score[i] is not None and math.isfinite(score[i])]
    if pair is None:
        assert reason in SKIP_REASONS
        texts_left = {responses[i].strip() for i in eligible}
        if reason == "no_pair":
            assert len(texts_left) <= 1
        else:
            assert len(texts_left) >= 2
            best = max(score[i] for i in eligible)
            chosen_text = responses[next(i for i in eligible if score[i] == best)].strip()
            worst = min(score[i] for i in eligible if responses[i].strip() != chosen_text)
            assert (best - worst == 0) if reason == "tie" else (0 < best - worst < min_margin)
        return
    assert reason is None
    c, r = pair.chosen, pair.rejected
    assert c in eligible and r in eligible  # both sides complete, with finite scores
    assert responses[c].strip() != responses[r].strip()
    # Chosen: the best score, the first of equals; rejected: the worst of the other texts, first of equals.
    best = max(score[i] for i in eligible)
    assert c == next(i for i in eligible if score[i] == best)
    others = [i for i in eligible if responses[i].strip() != responses[c].strip()]
    worst = min(score[i] for i in others)
    assert r == next(i for i in others if score[i] == worst)
    assert pair.margin == score[c] - score[r] > 0 and pair.margin >= min_margin
    record = dpo_record("d-0", "Q?", responses, pair)
    assert record["chosen"][0]["content"] == responses[c] and record["rejected"][0]["content"] == responses[r]
    assert record["margin"] == pair.margin and (record["chosen_index"], record["rejected_index"]) == (c, r)
