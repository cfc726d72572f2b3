"""Loops, counted after the fact: does a cut-off response end in one block of text repeated?

With the engine's loop stop on (config `repetition_detection`), vLLM ends a looping request itself
with finish reason "repetition" and that is the count. With it off (or for loops longer than its
`max_pattern_size`), a loop runs on until `max_tokens` and looks like any long response that was cut
off ("length"). This tells the two apart from the text alone: the merge has no token ids, so it
looks for a character block repeated at the very end, which is what a token loop leaves behind
whatever the tokenizer.
"""

from __future__ import annotations

__all__ = ["LOOP_MIN_CHARS", "LOOP_MAX_CHARS", "LOOP_MIN_COUNT", "ends_in_loop"]

# A block of 16..2,000 characters (a few words up to a long paragraph) repeated 12 times in a row at
# the end: the engine's default rule (config.RepetitionDetectionConfig, 12 repeats of 8+ tokens)
# in characters. Text that is merely long does not do that (numbers, indices or what follows an
# opening change; a written-out zero matrix repeats its row once per row, and 12 rows of zeros are
# not written out); a loop that ran on to max_tokens has repeated far more often.
LOOP_MIN_CHARS = 16
LOOP_MAX_CHARS = 2000
LOOP_MIN_COUNT = 12


def ends_in_loop(
    text: str | None,
    *,
    min_chars: int = LOOP_MIN_CHARS,
    max_chars: int = LOOP_MAX_CHARS,
    min_count: int = LOOP_MIN_COUNT,
) -> bool:
    """True when the text's last `min_count * L` characters are one L-character block repeated, for
    some L in [min_chars, max_chars]. A cut may fall anywhere inside a block: a tail with period L is
    a repetition whatever its phase, so no alignment is needed."""
    if not text:
        return False
    text = text.rstrip()
    last = text[-1:]
    for size in range(min_chars, min(max_chars, len(text) // min_count) + 1):
        if text[-1 - size] != last:  # cheap first test: most sizes fail here
            continue
        tail = text[-size * min_count :]
        # period `size`: the tail shifted by one block equals itself
        if tail[size:] == tail[:-size]:
            return True
    return False
