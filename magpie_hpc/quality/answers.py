"""Final answers of generated responses: split off the reasoning, read the last \\boxed{},
normalise it, and vote across several responses to one instruction.

Normalisation is conservative on purpose: two answers are made equal only when they are
the same LaTeX up to presentation (spacing, delimiters, \\dfrac vs \\frac, a trailing '.').
It never evaluates math (0.5 and \\frac{1}{2} stay different), so a vote can under-count
agreement but never invents it. The merge's vote goes further: quality/equivalence.py groups the
normalised answers by mathematical equivalence (math-verify) and keeps these strings as the
fallback for answers it cannot parse; `majority_answer` here is the string-only vote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["extract_boxed", "majority_answer", "normalize_answer", "split_reasoning"]


def split_reasoning(text: str, think_end: str = "</think>") -> tuple[str | None, str]:
    """Split a response into (reasoning, answer) at the FIRST ``think_end``.

    The reasoning is the text before it, without a leading "<think>" and stripped (it may be
    ""). Without ``think_end`` the reasoning is None and the answer is the whole text,
    stripped: a truncated think block therefore lands in the answer; callers that care
    should also look at the finish reason.
    """
    head, found, tail = text.partition(think_end)
    if not found:
        return None, text.strip()
    reasoning = head.strip()
    if reasoning.startswith("<think>"):
        reasoning = reasoning[len("<think>") :].strip()
    return reasoning, tail.strip()


def _closing_brace(text: str, open_index: int) -> int | None:
    """Index of the '}' that closes the '{' at ``open_index``, or None when unbalanced.

    A backslash escapes the next character, so "\\{" and "\\}" (set braces) do not count
    and "\\\\{" (a line break, then a group) does.
    """
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


# \boxed{, \boxed {, \fbox{; not \boxedfoo.
_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*\{")


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, nested braces included.

    "Last" means the last top-level box: a box inside a box belongs to the outer one. None
    when there is no box, or when the last one is never closed (a truncated response: an
    earlier box is not the final answer).
    """
    content: str | None = None
    position = 0
    while match := _BOX.search(text, position):
        close = _closing_brace(text, match.end() - 1)
        if close is None:
            return None
        content = text[match.end() : close]
        position = close + 1
    return content


def _unwrap_command(text: str, command: str) -> str:
    """Replace every ``\\command{X}`` by X (braces matched, so X may hold groups)."""
    pattern = re.compile(r"\\" + command + r"(?![A-Za-z])\s*\{")
    position = 0
    while match := pattern.search(text, position):
        close = _closing_brace(text, match.end() - 1)
        if close is None:
            break
        text = text[: match.start()] + text[match.end() : close] + text[close + 1 :]
        position = match.start()
    return text


# Surrounding math delimiters, longest first.
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"))
# \left( -> (, \right] -> ], and the invisible \left. / \right. go entirely; not \leftarrow.
_SIZING = re.compile(r"\\(?:left|right)(?![A-Za-z])\.?|\\(?:big|Big|bigg|Bigg)[lr]?(?![A-Za-z])")
# Spacing commands: \, \; \: \! \  \quad \qquad, and ~.
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad(?![A-Za-z])|~")
# "x = ...", "a_n = ...", "\theta = ...": one variable assigned, and no other '='.
_ASSIGNMENT = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?\s*=(?!=)")


def normalize_answer(ans: str) -> str:
    """A comparison key for a final answer; the rules, all presentation-only:

    * surrounding '$', '$$', '\\[...\\]', '\\(...\\)', a whole-answer \\boxed{}, and a trailing
      '.' are removed (repeatedly, so "$42$." and "42" agree);
    * \\dfrac/\\tfrac -> \\frac; \\frac12 -> \\frac{1}{2}; \\sqrt2 -> \\sqrt{2};
    * \\left, \\right, \\big..., \\displaystyle, and spacing commands are dropped;
    * \\text{..}, \\textrm{..}, \\textnormal{..}, \\mathrm{..}, \\mbox{..} are unwrapped
      (units stay: "5\\text{ cm}" is "5cm", not "5");
    * a leading single-variable assignment "x = 3" -> "3" (only when the answer has exactly
      one '=': "x=1, y=2" and "f(x) = 2x" are left alone);
    * all whitespace is removed last.
    """
    text = ans.strip()
    previous = None
    while text != previous:  # peel decoration until nothing changes
        previous = text
        text = text.strip()
        if text.endswith(".") and not text.endswith(".."):  # a full stop, not an ellipsis
            text = text[:-1].rstrip()
        for opening, closing in _DELIMITERS:
            inner = text[len(opening) : len(text) - len(closing)]
            # Only a pair around the whole answer: "$a$ and $b$" is left alone.
            if (
                len(text) >= len(opening) + len(closing)
                and text.startswith(opening)
                and text.endswith(closing)
                and opening not in inner
            ):
                text = inner
                break
        box = _BOX.match(text)
        if box and _closing_brace(text, box.end() - 1) == len(text) - 1:
            text = text[box.end() : -1]
    text = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", text)
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", text)
    text = _SIZING.sub("", text)
    text = re.sub(r"\\displaystyle(?![A-Za-z])", "", text)
    text = _SPACING.sub(" ", text)
    for command in ("text", "textrm", "textnormal", "mathrm", "mbox"):
        text = _unwrap_command(text, command)
    if text.count("=") == 1 and (match := _ASSIGNMENT.match(text.strip())):
        text = text.strip()[match.end() :]
    text = re.sub(r"\s+", "", text)
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def majority_answer(answers: Sequence[str | None]) -> tuple[str | None, float]:
    """The most common normalised answer and its agreement (count / len(answers)).

    None answers (no box found) count in the denominator but never win; an answer that
    normalises to "" is treated as None. Ties go to the answer seen first. All None (or
    no answers) -> (None, 0.0).
    """
    counts: dict[str, int] = {}  # insertion order = first occurrence, for tie-breaking
    for answer in answers:
        if answer is None:
            continue
        key = normalize_answer(answer)
        if key:
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None, 0.0
    best = max(counts, key=counts.__getitem__)  # max keeps the first of equal counts
    return best, counts[best] / len(answers)
