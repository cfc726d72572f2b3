"""The child process of quality/equivalence.py: parses final answers and compares them with
Hugging Face's math-verify, one request (a batch of problems) per line on stdin, one reply per line
on stdout, both JSON.

It runs as a script (``python equivalence_worker.py TIMEOUT_S``), never imported by the merge:
math-verify bounds its work with ``signal.alarm``, which only works in the main thread and only in
whole seconds; here we are always in our own main thread, so math-verify's own timeouts are turned
off (``parsing_timeout=None``, ``timeout_seconds=None``) and every parse and every comparison runs
under ``signal.setitimer`` with a float budget of CPU time instead. A computation stuck inside C (sympy
evaluating ``10^{10^{10}}`` as an integer: the handler only runs between bytecodes) is beyond any
signal; the parent kills this process for that (its hard limit), so nothing here has to.

Request:  {"problems": [[answer, ...], ...]}  (each problem: its distinct raw \\boxed{} contents)
Reply:    {"results": [{"labels": [...], "status": [...], "comparison_timeouts": n}, ...]}
  labels[i]: index of the first answer of i's class; status[i]: "parsed", "unparsed" or "timeout".
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from functools import lru_cache


# Relative difference beyond which two plain numbers are unequal without math-verify (see equal()).
NUMERIC_GAP = 1e-3


class _Timeout(BaseException):
    """Raised by the timer. A BaseException so math-verify's and sympy's `except Exception`
    handlers do not swallow it and report a timeout as a plain failure."""


def _on_alarm(signum, frame):
    raise _Timeout


def _bounded(seconds: float, fn, *args):
    # CPU time of this process (ITIMER_PROF), not wall time: a busy machine must not turn answers
    # into "timeout", or the dataset would depend on the load of the node that merged it.
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        return fn(*args)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def main() -> None:
    timeout_s = float(sys.argv[1])
    logging.disable(logging.WARNING)  # math-verify warns that its timeout is off: ours is on
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    signal.signal(signal.SIGPROF, _on_alarm)
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    @lru_cache(maxsize=1 << 16)
    def parsed(answer: str):
        """(expressions, status); the answer is the content of a \\boxed{}, so it is boxed again
        for math-verify's extractor. no_fallback: an answer it cannot parse gives [] (unparsed),
        never the raw string, so string comparison stays ours."""
        try:
            result = _bounded(timeout_s, parse, f"\\boxed{{{answer}}}", config, "no_fallback", "any_match", None)
        except _Timeout:
            return None, "timeout"
        except Exception:  # noqa: BLE001 - any failure to parse is "unparsed", never a crash
            return None, "unparsed"
        return (result, "parsed") if result else (None, "unparsed")

    import sympy

    @lru_cache(maxsize=1 << 16)
    def numeric(answer: str) -> complex | None:
        """The value of an answer that is a plain number (no symbols, not a set, interval, relation
        or matrix), to 30 digits; None otherwise or when it cannot be evaluated."""
        expressions = parsed(answer)[0]
        if not expressions or not isinstance(expressions[0], sympy.Expr) or not expressions[0].is_number:
            return None
        try:
            value = complex(_bounded(timeout_s, expressions[0].evalf, 30))
        except (_Timeout, Exception):  # noqa: BLE001
            return None
        return value if value == value and abs(value) != float("inf") else None  # not NaN, finite

    @lru_cache(maxsize=1 << 16)
    def equal(first: str, second: str) -> bool | None:
        """math-verify's verdict with the earlier answer as gold (it is not symmetric: assignment
        handling); None on timeout.

        Two plain numbers whose values differ by more than NUMERIC_GAP relative are unequal without
        asking math-verify, whose symbolic simplification takes 20-600 ms on such a pair (sqrt(8) vs
        12) and would say the same: it only joins numbers equal up to rounding at 6 decimals, far
        inside that gap. Numbers that are close, and everything else, go to math-verify."""
        a, b = numeric(first), numeric(second)
        if a is not None and b is not None and abs(a - b) > NUMERIC_GAP * max(1.0, abs(a), abs(b)):
            return False
        try:
            return bool(_bounded(timeout_s, verify, parsed(first)[0], parsed(second)[0], 6, 15, True, False, None))
        except _Timeout:
            return None
        except Exception:  # noqa: BLE001
            return False

    def classify(answers: list[str]) -> dict:
        status = [parsed(a)[1] for a in answers]
        labels = list(range(len(answers)))
        timeouts = 0
        for j in range(len(answers)):
            if status[j] != "parsed":
                continue
            for i in range(j):  # join the first earlier class representative j is equal to
                if status[i] != "parsed" or labels[i] != i:
                    continue
                verdict = equal(answers[i], answers[j])
                timeouts += verdict is None
                if verdict:
                    labels[j] = i
                    break
        return {"labels": labels, "status": status, "comparison_timeouts": timeouts}

    sys.stdout.write('{"ready": true}\n')
    sys.stdout.flush()
    for line in sys.stdin:
        request = json.loads(line)
        reply = {"results": [classify(problem) for problem in request["problems"]]}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
