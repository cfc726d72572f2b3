"""Cleaning of generated instructions (the user questions Magpie makes the model write).

The original pipeline's output showed these defects, each handled here:

* a newline stop cut instructions right before their equations, so they end with ':' or
  an unfinished formula ("Evaluate the following integral:") -> dropped ``"dangling"``;
* the model went on to answer its own question ("...\\n\\nSolution: We ...") -> the answer
  is cut off and the question kept (``answer_cut``), then the question is re-checked;
* typed-out chat-template tokens ("<|im_start|>user", "[INST]", "### Response:") left in
  the text -> dropped ``"special_tokens"``;
* empty and whitespace-only texts -> ``"empty"``; length-truncated ones -> ``"truncated"``;
* a sample the engine stopped as a degenerate loop (finish_reason "repetition") -> ``"repetition"``:
  its tail is one block repeated, never a question;
* exact duplicates -> the instruction stage's dedup on `normalize_for_dedup` keys.

The rules are written to leave a well-formed research-level problem untouched: a kept text
is the input stripped, or the stripped part before an appended answer, never rewritten.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Cleaned", "clean_instruction", "normalize_for_dedup"]


@dataclass(frozen=True)
class Cleaned:
    """Outcome of `clean_instruction`.

    text: the cleaned instruction; None when dropped.
    dropped: why it was dropped ("empty", "truncated", "repetition", "special_tokens",
        "dangling", "too_short"); None when kept.
    answer_cut: True when an appended answer/solution/reasoning was cut off (also set when
        the remaining question was then dropped, so the defect can be counted).
    """

    text: str | None
    dropped: str | None
    answer_cut: bool


# --- appended answers ------------------------------------------------------------------

# Markdown decoration a heading line may carry before its word: quote, '#'s, bold.
_LINE_START = r"(?m)^[ \t]*(?:>[ \t]*)?(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*"

# A heading line "Solution", "**Solution:**", "## Solution 1", "Answer:", "Final Answer",
# "Proof." ... The word must be followed by ':' / '.' or end its line, so "Solutions of ..."
# and "Answer with a proof" in a question do not match. Cut wherever found, unless the
# question before it asks about the user's own attempt (see _OWN_ATTEMPT).
_HEADING_MARKER = re.compile(
    _LINE_START + r"(?:Solution|SOLUTION|Answer|ANSWER|Final[ \t]+Answer|FINAL[ \t]+ANSWER|Proof|PROOF)"
    r"(?:[ \t]+\d+)?[ \t]*(?:\*\*|__)?[ \t]*(?:[:.]|$)"
)
# "Is my proof correct?\n\nProof: ..." -- there the heading belongs to the question.
_OWN_ATTEMPT = re.compile(
    r"(?i)\b(?:my|our) (?:proof|attempt|solution|answer|argument|work)\b"
    r"|\b(?:check|verify) (?:this|the following) (?:proof|solution|argument)\b"
    r"|\bis (?:this|it) (?:proof |argument |solution )?(?:correct|right|valid|rigorous)\b"
)

# Markers that always start an answer: a question never holds a typed-out assistant turn
# or a think tag, so these are cut wherever found.
_HARD_MARKERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"<think>", re.IGNORECASE),
    # Typed-out assistant turns of the common templates (ChatML, Llama 3, DeepSeek, Phi,
    # Llama 2/Mistral, Alpaca, Gemma).
    re.compile(r"<[|｜]\s*assistant\s*[|｜]>", re.IGNORECASE),
    re.compile(r"<\|im_start\|>\s*assistant", re.IGNORECASE),
    re.compile(r"<\|start_header_id\|>\s*assistant", re.IGNORECASE),
    re.compile(r"\[/INST\]"),
    re.compile(r"###[ \t]*Response\b", re.IGNORECASE),
    re.compile(r"<start_of_turn>\s*model", re.IGNORECASE),
    # "Assistant:" as a role label: at a line start or right after a sentence/formula end.
    # Not after a word, so "the Teaching Assistant: ..." inside a question survives.
    re.compile(r"(?m)(?:^|(?<=[.?!$)\]}>]))[ \t]*(?:\*\*)?(?:Assistant|ASSISTANT)(?:\*\*)?[ \t]*:"),
)

# Reasoning-model openings ("Okay, so I need to ..."). Also how a user may start a question
# in first person, hence guarded: not cut when the text ends with a question mark.
_REASONING_MARKERS: tuple[re.Pattern[str], ...] = (
    re.compile(_LINE_START + r"(?:Okay|OK|Ok|Alright|All right|Hmm)[,.]?[ \t]+(?:so|let's|let me|I)\b"),
)

# Sentence openings of an answer. A question may also contain them ("To solve this I tried
# ... What am I missing?", "Consider the following.\n\nStep 1: Show that ..."), so they
# are cut only when the text does not end with a question mark and the text before them is
# already a task (see _TASK).
_SOFT_MARKERS: tuple[re.Pattern[str], ...] = (
    re.compile(
        _LINE_START + r"(?:To solve (?:this|the)\b|To prove (?:this|the)\b|Let's solve\b|Let us solve\b"
        r"|Let me (?:solve|think|start|try|work)\b|First, let's\b|We begin\b|We start by\b"
        r"|The (?:final )?answer is\b"
        r"|Step 1(?:[ \t]*(?:\*\*|__))?[ \t]*[:.)])"
    ),
)

# What a finished question contains: a question mark or a task verb/question word.
_TASK = re.compile(
    r"(?i)\?|\b(?:prove|show|find|compute|determine|evaluate|calculate|solve|derive|classify"
    r"|describe|explain|construct|decide|verify|simplify|estimate|count|what|which|how|why)\b"
)

# '?' possibly followed by closing decoration: 'Why?**', 'holds?"', 'f(x)?$$'.
_ENDS_WITH_QUESTION = re.compile(r"\?[\s*_\"')\]$]*\Z")


def _answer_start(text: str) -> int | None:
    """Index where an appended answer starts, or None when there is none."""
    starts: list[int] = []
    if (match := _HEADING_MARKER.search(text)) and not _OWN_ATTEMPT.search(text, 0, match.start()):
        starts.append(match.start())
    for pattern in _HARD_MARKERS:
        if match := pattern.search(text):
            starts.append(match.start())
    if not _ENDS_WITH_QUESTION.search(text):
        for pattern in _REASONING_MARKERS:
            if match := pattern.search(text):
                starts.append(match.start())
        for pattern in _SOFT_MARKERS:
            # The first match with a task before it; a soft opening at position 0 never has.
            match = next((m for m in pattern.finditer(text) if _TASK.search(text, 0, m.start())), None)
            if match:
                starts.append(match.start())
    return min(starts) if starts else None


# --- typed-out special tokens ----------------------------------------------------------

_SPECIAL_TOKENS = re.compile(
    "|".join(
        (
            # <|im_start|>, <|eot_id|>, <｜Assistant｜>, <｜end▁of▁sentence｜>: the content is a
            # name, so bra-ket text like "<ψ|H|ψ>" does not match.
            r"<[|｜][ \t]*[A-Za-z_][\w▁.\- ]{0,40}[|｜]>",
            r"\[/?INST\]",
            r"</?s>",
            r"</?think>",
            r"###[ \t]*(?:Instruction|Response)\b",
            r"<</?SYS>>",
            r"<(?:start|end)_of_turn>",
        )
    ),
    re.IGNORECASE,
)


# --- dangling ends ---------------------------------------------------------------------

# Last characters that cannot end a finished question: a label before a formula (':'),
# a list or clause in progress (',' ';'), an operator or an opened group. Not '*' or '_'
# (markdown emphasis closes with them) and not '-' (dashes end asides).
_DANGLING_CHARS = (":", "：", ",", ";", "=", "+", "(", "[", "{", "\\")

# Final words that announce more text. Deliberately short: words such as "to", "of",
# "on", "is", "for" legitimately end questions ("what does it converge to").
_DANGLING_WORDS = re.compile(
    r"(?i)(?:^|[\s$])(?:the|an|and|or|where|whereby|let|following|satisfying|such that"
    r"|defined by|given by|denoted by|as follows)\Z"
)
# The same announcements closed with '.' or ':' ("... is defined as follows.").
_DANGLING_PHRASES = re.compile(r"(?i)\b(?:as follows|the following|defined by|given by)\s*[.:]?\Z")

# Math delimiters, longest first; "\\\\" (a LaTeX line break) comes first so "\\[2pt]"
# is not read as "\[" and an escaped "\$" is not a delimiter.
_MATH_TOKEN = re.compile(r"\\\\|\\\$|\\\[|\\\]|\\\(|\\\)|\\begin\{([^{}]*)\}|\\end\{([^{}]*)\}|\$\$|\$")
_CLOSER = {"$": "$", "$$": "$$", "\\[": "\\]", "\\(": "\\)"}
# An open "$...": truncated math has LaTeX in it; a currency "$5" does not.
_LATEX_CHARS = re.compile(r"[\\^_{}=]")


def _unclosed_math(text: str) -> bool:
    """True when a math region or a \\begin{env} is still open at the end of the text."""
    mode: str | None = None
    mode_start = 0
    envs: list[str] = []
    for match in _MATH_TOKEN.finditer(text):
        token = match.group(0)
        if token in ("\\\\", "\\$"):
            continue
        if match.group(1) is not None:  # \begin{name}
            envs.append(match.group(1))
            continue
        if match.group(2) is not None:  # \end{name}: close up to its \begin, if any
            if match.group(2) in envs:
                del envs[len(envs) - 1 - envs[::-1].index(match.group(2)) :]
            continue
        if mode is None:
            if token in _CLOSER:
                mode, mode_start = token, match.end()
            # a stray closer is ignored: it is not evidence of a cut
        elif token == _CLOSER[mode]:
            mode = None
        elif mode == "$" and token == "$$":
            mode_start = match.end()  # "$a$$b$": one inline formula closes, the next opens
    if envs:
        return True
    if mode == "$":
        return bool(_LATEX_CHARS.search(text, mode_start))
    return mode is not None


def _is_dangling(text: str) -> bool:
    """True when the (stripped, non-empty) text stops before its formula or sentence ends."""
    if text.endswith(_DANGLING_CHARS):
        return True
    if _DANGLING_WORDS.search(text) or _DANGLING_PHRASES.search(text):
        return True
    return _unclosed_math(text)


# --- the entry points ------------------------------------------------------------------


def clean_instruction(text: str, finish_reason: str | None, *, min_chars: int = 20) -> Cleaned:
    """Clean one generated instruction, or say why it is dropped.

    Rules, in order:
    1. strip whitespace; nothing left -> "empty";
    2. finish_reason "length" -> "truncated"; finish_reason "repetition" (the engine stopped a
       loop) -> "repetition": the loop may as well sit inside the question;
    3. an appended answer (see the marker lists above) is cut off, keeping the text before it;
       nothing left -> "empty";
    4. typed-out special tokens anywhere in what is left -> "special_tokens";
    5. ends with ':' / ',' / an operator, an announcing word ("defined by"), or an open
       '$', '$$', '\\[', '\\(' or \\begin{...} -> "dangling";
    6. fewer than ``min_chars`` characters -> "too_short".
    """
    stripped = (text or "").strip()
    if not stripped:
        return Cleaned(None, "empty", False)
    if finish_reason == "repetition":
        return Cleaned(None, "repetition", False)
    if finish_reason == "length":
        return Cleaned(None, "truncated", False)

    cut = _answer_start(stripped)
    answer_cut = cut is not None
    if cut is not None:
        stripped = stripped[:cut].rstrip()
    if not stripped:
        return Cleaned(None, "empty", answer_cut)
    if _SPECIAL_TOKENS.search(stripped):
        return Cleaned(None, "special_tokens", answer_cut)
    if _is_dangling(stripped):
        return Cleaned(None, "dangling", answer_cut)
    if len(stripped) < min_chars:
        return Cleaned(None, "too_short", answer_cut)
    return Cleaned(stripped, None, answer_cut)


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def normalize_for_dedup(text: str) -> str:
    """Key under which two instructions count as the same: NFKC, casefolded, whitespace
    collapsed to single spaces, punctuation and spaces stripped at both ends.

    NFKC folds full-width and compatibility forms the model sometimes emits, so they do not
    make a copy look new; inner punctuation is kept because in math it carries meaning.
    """
    key = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(key)
    while start < end and (key[start].isspace() or _is_punctuation(key[start])):
        start += 1
    while end > start and (key[end - 1].isspace() or _is_punctuation(key[end - 1])):
        end -= 1
    return key[start:end]
