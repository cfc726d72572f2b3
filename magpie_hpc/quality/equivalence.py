"""Answer agreement by mathematical equivalence: the final answers of one problem grouped into
classes of equal value with Hugging Face's math-verify, so `0.5` and `\\frac{1}{2}`, or `\\{1,2\\}`
and `\\{2,1\\}`, vote together.

Bounded cost, by construction:
* only answers of one problem are compared with each other, and only distinct ones: answers whose
  normalised strings are equal (quality/answers.py) are one class before any parsing;
* a problem whose distinct answers are all integers or integer fractions is decided here, exactly
  (fractions.Fraction), without math-verify: the same verdict, ~1000x cheaper;
* the rest goes to worker processes (quality/equivalence_worker.py) that parse each answer once
  (cached) and run every parse and every comparison under a CPU-time timer (`timeout_s`), in their
  own main thread, so math-verify's signal-based timeout works whichever thread the merge runs in;
  a worker stuck inside C, where no signal reaches, is killed after the request's hard limit and
  its problems' answers become "timeout" (compared as strings);
* answers longer than MAX_ANSWER_CHARS are not parsed at all ("unparsed").

An answer that cannot be parsed keeps the string comparison: it forms its own class with the
answers whose normalised strings equal it. `EquivalenceStats` counts both kinds.
"""

from __future__ import annotations

import collections
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from .neardup import default_workers

__all__ = ["AnswerVote", "EquivalenceChecker", "EquivalenceStats", "vote", "vote_stream"]

# Longer answers are not handed to the parser: a final answer is a value, and the parser's cost
# grows steeply with nesting (20 nested parentheses took 1.5 s in math-verify 0.9).
MAX_ANSWER_CHARS = 256
# Problems per request to a worker: amortises the pipe round trip (~50 us) over many problems.
BATCH_PROBLEMS = 32
# Added to each request's hard limit: a busy machine's scheduling delays, not parsing time.
HARD_LIMIT_SLACK_S = 10.0
# Wall seconds allowed per CPU second of budget before a worker is presumed stuck.
WALL_PER_CPU = 4.0
# A worker's start (Python + sympy + math-verify imports) on a loaded login or compute node.
START_LIMIT_S = 120.0
WORKER = Path(__file__).with_name("equivalence_worker.py")

# An integer or a fraction of integers, optionally signed: "12", "-3", "\\frac{1}{2}", "3/4".
_RATIONAL = re.compile(r"^(-?)(?:(\d+)|\\frac\{(-?\d+)\}\{(-?\d+)\}|(-?\d+)/(-?\d+))$")


def exact_rational(key: str) -> Fraction | None:
    """The value of a normalised answer that is an integer or a fraction of integers, else None.
    No decimals: math-verify compares those rounded (0.333333 equals 1/3 there), so they go to it."""
    match = _RATIONAL.match(key)
    if not match:
        return None
    sign, integer, num, den, num2, den2 = match.groups()
    try:
        value = Fraction(int(integer)) if integer is not None else Fraction(int(num or num2), int(den or den2))
    except ZeroDivisionError:
        return None
    return -value if sign else value


@dataclass
class EquivalenceStats:
    """What decided each comparison, summed over a domain (dataset_info.json `answer_equivalence`).

    Counted per distinct answer of a problem that had to be compared (problems whose answers were
    all the same string need no comparison and count only in `problems`)."""

    enabled: bool = True
    problems: int = 0
    problems_compared: int = 0  # problems with >= 2 distinct normalised answers
    answers_by_value: int = 0  # parsed: compared by value (math-verify, or exactly as rationals)
    answers_by_exact_rational: int = 0  # of those, decided here as integers/fractions
    answers_by_string: int = 0  # not parsed (or too long, or timed out): string comparison kept
    parse_timeouts: int = 0
    comparison_timeouts: int = 0
    worker_restarts: int = 0  # a worker killed at its hard limit (stuck where no signal reaches)
    problems_merged: int = 0  # problems where equivalence joined differently written answers

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AnswerVote:
    """One problem's vote. `majority_answer` is the most frequent normalised string of the largest
    class (ties: first seen); `agreement` = that class's size / all responses."""

    majority_answer: str | None
    agreement: float
    answers_agree: bool  # the largest class holds at least two responses
    # per response: position of the first response of its class; None without an answer
    classes: tuple[int | None, ...] = field(default=())


class _Worker:
    """One child process speaking JSON lines."""

    def __init__(self, timeout_s: float):
        # stderr is inherited: a worker that cannot start leaves its traceback in the task's log
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), repr(timeout_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        self.buffer = b""
        if self.read_line(START_LIMIT_S) is None:
            self.kill()
            from ..errors import MagpieError

            raise MagpieError(
                f"answer equivalence: {WORKER.name} did not start (is math-verify installed? "
                "`pip install math-verify`; see the traceback above), or set "
                "quality.answer_equivalence = false to compare answers as strings"
            )

    def send(self, problems: list[list[str]]) -> None:
        self.proc.stdin.write(json.dumps({"problems": problems}).encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self, limit_s: float) -> bytes | None:
        """The next line, or None when none came within limit_s (or the process died)."""
        deadline = time.monotonic() + limit_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            data = os.read(fd, 1 << 16)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


class EquivalenceChecker:
    """Classes of equal value for batches of problems, on `workers` child processes.

    Use as a context manager (or call close()): the workers are started on first need."""

    def __init__(self, timeout_s: float = 1.0, workers: int = 0):
        self.timeout_s = timeout_s
        self.workers = workers or default_workers()
        self._pool: list[_Worker] = []
        self._outstanding: list[collections.deque] = []  # per worker: batches sent, not yet read
        self._next = -1
        self.restarts = 0

    def __enter__(self) -> EquivalenceChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._pool:
            worker.kill()
        self._pool, self._outstanding = [], []

    def _hard_limit(self, problems: Sequence[Sequence[str]]) -> float:
        # every parse and every pairwise comparison may use its whole budget of CPU time; the limit
        # is wall time, so it allows for a worker that gets a share of a busy core only
        calls = sum(len(p) + len(p) * (len(p) - 1) // 2 for p in problems)
        return WALL_PER_CPU * calls * self.timeout_s + HARD_LIMIT_SLACK_S

    def classify(self, problems: Sequence[Sequence[str]]) -> list[dict]:
        """Per problem (its distinct raw answers): {"labels", "status", "comparison_timeouts"}."""
        return self.collect(self.submit(problems))

    def submit(self, problems: Sequence[Sequence[str]]) -> list[tuple[int, list[list[str]]]]:
        """Send the problems to the workers (batches round robin) and return at once; `collect`
        reads the answers. Several submissions may be outstanding: each worker answers in order.
        (Requests and replies are small, a few KB per batch, so neither pipe fills up.)"""
        batches = [list(map(list, problems[i : i + BATCH_PROBLEMS])) for i in range(0, len(problems), BATCH_PROBLEMS)]
        while len(self._pool) < min(self.workers, len(batches)):
            self._pool.append(_Worker(self.timeout_s))
            self._outstanding.append(collections.deque())
        ticket = []
        for batch in batches:
            slot = self._next = (self._next + 1) % len(self._pool)
            self._pool[slot].send(batch)
            self._outstanding[slot].append(batch)
            ticket.append((slot, batch))
        return ticket

    def collect(self, ticket: list[tuple[int, list[list[str]]]]) -> list[dict]:
        out: list[dict] = []
        for slot, batch in ticket:
            assert self._outstanding[slot][0] is batch, "collect tickets in the order they were submitted"
            out.extend(self._receive(slot, batch))
            self._outstanding[slot].popleft()
        return out

    def _receive(self, slot: int, batch: list[list[str]]) -> list[dict]:
        line = self._pool[slot].read_line(self._hard_limit(batch))
        if line is not None:
            return json.loads(line)["results"]
        # Stuck where no signal reaches (or died): replace the worker, then retry the batch one
        # problem at a time so only the problem that hangs again loses its parses.
        self._replace(slot)
        out = []
        for problem in batch:
            self._pool[slot].send([problem])
            line = self._pool[slot].read_line(self._hard_limit([problem]))
            if line is None:
                self._replace(slot)
                out.append(
                    {
                        "labels": list(range(len(problem))),
                        "status": ["timeout"] * len(problem),
                        "comparison_timeouts": 0,
                    }
                )
            else:
                out.extend(json.loads(line)["results"])
        for later in list(self._outstanding[slot])[1:]:  # the killed worker's queue, sent again
            self._pool[slot].send(later)
        return out

    def _replace(self, slot: int) -> None:
        self._pool[slot].kill()
        self.restarts += 1
        self._pool[slot] = _Worker(self.timeout_s)


@dataclass
class _Pending:
    """A problem prepared for the vote: its distinct keys and what still needs the workers."""

    normalized: list[str | None]
    keys: list[str]  # distinct normalised answers, first-seen order
    raws: list[str]  # a raw \\boxed{} content per key (the first seen)
    result: dict | None = None  # labels/status, when decided without workers
    exact: bool = False


def _strings_only(p: _Pending) -> dict:
    return {"labels": list(range(len(p.keys))), "status": ["unparsed"] * len(p.keys), "comparison_timeouts": 0}


def _prepare(raw: Sequence[str | None], normalized: Sequence[str | None], by_value: bool) -> _Pending:
    keys: dict[str, str] = {}
    for r, n in zip(raw, normalized):
        if n and n not in keys:
            keys[n] = r if r is not None else n
    pending = _Pending(list(normalized), list(keys), list(keys.values()))
    if len(pending.keys) <= 1:
        pending.result = {"labels": list(range(len(pending.keys))), "status": [], "comparison_timeouts": 0}
        return pending
    if not by_value:
        pending.result = _strings_only(pending)
        return pending
    values = [exact_rational(k) for k in pending.keys]
    if all(v is not None for v in values):
        first: dict[Fraction, int] = {}
        labels = [first.setdefault(v, i) for i, v in enumerate(values)]
        pending.result = {"labels": labels, "status": ["parsed"] * len(values), "comparison_timeouts": 0}
        pending.exact = True
    elif all(len(r) > MAX_ANSWER_CHARS for r in pending.raws):
        pending.result = _strings_only(pending)
    return pending


def _finish(p: _Pending, stats: EquivalenceStats, n_responses: int) -> AnswerVote:
    assert p.result is not None
    labels, status = p.result["labels"], p.result["status"]
    stats.problems += 1
    if len(p.keys) >= 2:
        stats.problems_compared += 1
        parsed = sum(s == "parsed" for s in status)
        stats.answers_by_value += parsed
        stats.answers_by_exact_rational += parsed if p.exact else 0
        stats.answers_by_string += len(status) - parsed
        stats.parse_timeouts += sum(s == "timeout" for s in status)
        stats.comparison_timeouts += p.result["comparison_timeouts"]
        stats.problems_merged += len(set(labels)) < len(labels)
    index = {k: i for i, k in enumerate(p.keys)}
    key_counts = [0] * len(p.keys)
    classes: list[int | None] = []
    first_response: dict[int, int] = {}  # class label -> its first response's position
    for position, n in enumerate(p.normalized):
        if n:
            key_counts[index[n]] += 1
            classes.append(first_response.setdefault(labels[index[n]], position))
        else:
            classes.append(None)
    if not p.keys:
        return AnswerVote(None, 0.0, False, tuple(classes))
    class_counts: dict[int, int] = {}  # insertion order = first seen, for ties
    for i, label in enumerate(labels):
        class_counts[label] = class_counts.get(label, 0) + key_counts[i]
    best = max(class_counts, key=class_counts.__getitem__)
    members = [i for i, label in enumerate(labels) if label == best]
    majority = p.keys[max(members, key=lambda i: key_counts[i])]  # max keeps the first of equal counts
    size = class_counts[best]
    return AnswerVote(majority, size / n_responses if n_responses else 0.0, size >= 2, tuple(classes))


def vote(
    raw: Sequence[str | None],
    normalized: Sequence[str | None],
    checker: EquivalenceChecker | None,
    stats: EquivalenceStats | None = None,
) -> AnswerVote:
    """One problem's vote by equivalence classes (checker None: by normalised strings only)."""
    stats = stats if stats is not None else EquivalenceStats(enabled=checker is not None)
    p = _prepare(raw, normalized, checker is not None)
    if p.result is None:
        p.result = _with_guard(p, checker.classify([_guarded(p)])[0])
    return _finish(p, stats, len(raw))


def _guarded(p: _Pending) -> list[str]:
    # too-long answers are sent as "" (parses to nothing: unparsed) rather than left out, so
    # the labels keep their positions
    return [r if len(r) <= MAX_ANSWER_CHARS else "" for r in p.raws]


def _with_guard(p: _Pending, result: dict) -> dict:
    result["status"] = [s if len(r) <= MAX_ANSWER_CHARS else "unparsed" for s, r in zip(result["status"], p.raws)]
    return result


T = TypeVar("T")


def vote_stream(
    items: Iterable[T],
    answers: Callable[[T], tuple[Sequence[str | None], Sequence[str | None]]],
    checker: EquivalenceChecker | None,
    stats: EquivalenceStats,
    window: int = 256,
) -> Iterator[tuple[T, AnswerVote]]:
    """(item, vote) for each item, in order. `answers(item)` gives (raw, normalised) final answers.

    Items are read `window` at a time and their problems sent to the workers at once (in parallel,
    one pipe round trip per batch); while the workers check one window, the caller processes the
    previous one, so the merge's own work and the checking overlap. Memory: two windows of items."""
    previous: tuple[list, list] | None = None  # (buffer, ticket) whose answers are being checked

    def finish(buffer: list, ticket: list) -> Iterator[tuple[T, AnswerVote]]:
        todo = [p for _, p, _ in buffer if p.result is None]  # only with a checker
        for p, result in zip(todo, checker.collect(ticket) if todo else ()):
            p.result = _with_guard(p, result)
        for item, p, n in buffer:
            yield item, _finish(p, stats, n)

    def start(buffer: list) -> tuple[list, list]:
        todo = [p for _, p, _ in buffer if p.result is None]
        return buffer, (checker.submit([_guarded(p) for p in todo]) if todo else [])

    buffer: list[tuple[T, _Pending, int]] = []
    for item in items:
        raw, normalized = answers(item)
        buffer.append((item, _prepare(raw, normalized, checker is not None), len(raw)))
        if len(buffer) >= window:
            current = start(buffer)
            if previous is not None:
                yield from finish(*previous)
            previous, buffer = current, []
    current = start(buffer)
    if previous is not None:
        yield from finish(*previous)
    yield from finish(*current)
