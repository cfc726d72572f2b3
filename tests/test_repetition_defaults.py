"""The loop stop's defaults (config.RepetitionDetectionConfig) against vLLM's own check.

vLLM runs `check_sequence_repetition` on a request's output tokens after every generated token, so
each text is checked at every prefix, as the scheduler would: legitimate mathematics that repeats
(a zero matrix, an enumeration, a table of values, the same opening before different checks) must
pass every step, a real loop must be stopped, and soon. Tokens come from the tiny R1 tokenizer.
"""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from magpie_hpc.config import RepetitionDetectionConfig, RunConfig
from magpie_hpc.quality.loops import ends_in_loop

from vllm.sampling_params import RepetitionDetectionParams
from vllm.v1.core.sched import utils as vllm_utils  # the scheduler's own check, no engine started


def _zero_matrix(n: int) -> str:
    rows = " \\\\\n".join(" & ".join(["0"] * n) for _ in range(n))
    return f"The zero matrix is\n$$\\begin{{pmatrix}}\n{rows}\n\\end{{pmatrix}},$$ so its rank is 0."


LEGITIMATE = {
    "zero_matrix_11x11": _zero_matrix(11),
    "enumeration": "The divisors are " + ", ".join(f"$d_{{{i}}} = {i * 7}$" for i in range(1, 120)) + ".",
    "table": "| $n$ | $f(n)$ | $f(n) \\bmod 7$ |\n| --- | --- | --- |\n"
    + "\n".join(f"| {n} | {n * n + 1} | {(n * n + 1) % 7} |" for n in range(1, 80)),
    "wait_let_me_check": " ".join(
        f"Wait, let me check the case $k = {k}$. Then $k^2 + k = {k * k + k}$, which is even, so the claim holds."
        for k in range(1, 40)
    ),
    "run_of_dots": "Hence $x_1 \\le x_2 \\le \\cdots \\le x_n$ " + "." * 60 + " and we are done.",
}
LOOP_PARAGRAPH = (
    "Wait, let me check the sum again. The sum of the first $n$ odd numbers is $n^2$, so the answer is $n^2$. "
)


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(str(tiny_models.deepseek))


def _first_trigger(ids: list[int], params) -> int | None:
    """The output length at which vLLM's scheduler would stop the request, or None."""
    for end in range(1, len(ids) + 1):
        if vllm_utils.check_sequence_repetition(ids[:end], params):
            return end
    return None


def _params(cfg: RepetitionDetectionConfig) -> RepetitionDetectionParams:
    return RepetitionDetectionParams(
        max_pattern_size=cfg.max_pattern_size, min_pattern_size=cfg.min_pattern_size, min_count=cfg.min_count
    )


def test_every_generation_stage_has_it_on_by_default():
    cfg = RunConfig()
    for stage in (cfg.instructions, cfg.responses, cfg.multi_responses):
        assert stage.repetition_detection == RepetitionDetectionConfig()
        assert stage.repetition_detection.enabled


@pytest.mark.parametrize("name", sorted(LEGITIMATE))
def test_legitimate_repetition_is_never_stopped(tokenizer, name):
    ids = tokenizer.encode(LEGITIMATE[name], add_special_tokens=False)
    assert _first_trigger(ids, _params(RepetitionDetectionConfig())) is None
    # Nor does the after-the-fact count take it for a loop, were it cut off anywhere in its last part.
    text = LEGITIMATE[name]
    assert not any(ends_in_loop(text[:cut]) for cut in range(len(text) // 2, len(text), 7))


def test_the_zero_matrix_is_what_the_defaults_guard_against(tokenizer):
    """A setting that looks reasonable (the issue's trial, 64/4/4) stops an 11x11 zero matrix: the
    cases above do bite."""
    ids = tokenizer.encode(LEGITIMATE["zero_matrix_11x11"], add_special_tokens=False)
    assert _first_trigger(ids, RepetitionDetectionParams(64, 4, 4)) is not None


def test_a_real_loop_is_stopped_soon(tokenizer):
    opening = tokenizer.encode("We count the odd numbers first. ", add_special_tokens=False)
    block = tokenizer.encode(LOOP_PARAGRAPH, add_special_tokens=False)
    cfg = RepetitionDetectionConfig()
    assert cfg.min_pattern_size <= len(block) <= cfg.max_pattern_size  # a paragraph it is built to see
    ids = opening + block * 40
    stop = _first_trigger(ids, _params(cfg))
    assert stop is not None
    # stopped within min_count + 1 laps of the loop (BPE may merge across the block boundary)
    assert stop <= len(opening) + (cfg.min_count + 1) * len(block)
    assert ends_in_loop(tokenizer.decode(ids[: len(ids) - 5]))
    # A token-level loop of two tokens ("2,2,2,..." as the tiny model writes it at a repetition
    # penalty below 1) is stopped through its multiples of min_pattern_size.
    two = tokenizer.encode("2," * 200, add_special_tokens=False)
    assert _first_trigger(two, _params(cfg)) is not None


def test_turned_off_or_inconsistent():
    from magpie_hpc.engine.base import RepetitionDetection

    assert RepetitionDetection.from_settings(RepetitionDetectionConfig(enabled=False)) is None
    assert RepetitionDetection.from_settings(RepetitionDetectionConfig()) == RepetitionDetection(128, 8, 12)
    with pytest.raises(ValueError, match="min_pattern_size"):
        RepetitionDetectionConfig(min_pattern_size=200)
