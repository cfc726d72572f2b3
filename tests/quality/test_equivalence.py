"""Answer agreement by mathematical equivalence (quality/equivalence.py, real math-verify in
worker processes): hand-written answer sets, timeouts, a stuck worker, and calls off the main thread."""

from __future__ import annotations

import threading
import time

import pytest

from magpie_hpc.quality import equivalence
from magpie_hpc.quality.answers import normalize_answer
from magpie_hpc.quality.equivalence import EquivalenceChecker, EquivalenceStats, exact_rational, vote, vote_stream


@pytest.fixture(scope="module")
def checker():
    with EquivalenceChecker(timeout_s=1.0, workers=2) as c:
        yield c


def cast(raws, checker, stats=None):
    return vote(raws, [normalize_answer(r) if r is not None else None for r in raws], checker, stats)


@pytest.mark.parametrize(
    "pair",
    [
        ("0.5", "\\frac{1}{2}"),  # a decimal: decided by math-verify, not the exact-rational shortcut
        ("x=2", "2"),
        ("\\{1,2\\}", "\\{2,1\\}"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("(1,2]", "\\left(1, 2\\right]"),
    ],
)
def test_equal_values_in_different_forms_agree(checker, pair) -> None:
    stats = EquivalenceStats()
    v = cast([pair[0], pair[1], "17"], checker, stats)
    assert v.classes == (0, 0, 2)
    assert v.answers_agree and v.agreement == pytest.approx(2 / 3)
    assert v.majority_answer == normalize_answer(pair[0])  # first seen wins a tie inside the class
    distinct = len({normalize_answer(a) for a in (*pair, "17")})  # x=2 and 2 are one string already
    assert stats.answers_by_value == distinct and stats.answers_by_string == 0
    assert stats.problems_merged == (distinct == 3)


@pytest.mark.parametrize(
    "pair",
    [
        ("0.5", "0.25"),
        ("12", "7"),
        ("\\{1,2\\}", "\\{1,3\\}"),
        ("x=2", "x=3"),
        ("\\sqrt{8}", "3\\sqrt{2}"),
        ("(1,2]", "[1,2]"),
        ("\\frac{1}{3}", "0.34"),
    ],
)
def test_different_values_do_not_agree(checker, pair) -> None:
    v = cast([pair[0], pair[1]], checker)
    assert v.classes == (0, 1)
    assert not v.answers_agree and v.agreement == 0.5


def test_majority_comes_from_the_largest_class_not_the_most_common_string(checker) -> None:
    # "7" is the most common string (2), but 0.5 = 1/2 = \frac{1}{2} is the largest class (3)
    stats = EquivalenceStats()
    v = cast(["7", "0.5", "7", "\\frac{1}{2}", "1/2", None, "\\frac12"], checker, stats)
    assert v.majority_answer == "\\frac{1}{2}"  # the class's most frequent string (\frac12 normalises to it)
    assert v.agreement == pytest.approx(4 / 7) and v.answers_agree
    assert v.classes == (0, 1, 0, 1, 1, None, 1)


def test_exact_rationals_need_no_worker() -> None:
    assert exact_rational("\\frac{2}{4}") == exact_rational("1/2")
    assert exact_rational("0.5") is None  # decimals go to math-verify (it rounds)
    assert exact_rational("-\\frac{3}{6}") == -exact_rational("1/2")
    assert exact_rational("1/0") is None
    stats = EquivalenceStats()
    v = cast(["\\frac{2}{4}", "1/2", "-3", "-3"], _NoWorkers(), stats)
    assert v.classes == (0, 0, 2, 2) and v.majority_answer == "\\frac{2}{4}"
    assert stats.answers_by_exact_rational == 3


class _NoWorkers(EquivalenceChecker):
    def classify(self, problems):  # the exact-rational path must not get here
        raise AssertionError("worker used for integers and fractions")


def test_unparsable_answers_fall_back_to_strings(checker) -> None:
    stats = EquivalenceStats()
    v = cast(["\\frac{1}{", "\\frac{1}{", "\\text{no such group}", "5"], checker, stats)
    assert v.classes == (0, 0, 2, 3) and v.majority_answer == "\\frac{1}{" and v.answers_agree
    assert stats.answers_by_string >= 1 and stats.answers_by_value >= 1
    assert stats.answers_by_value + stats.answers_by_string == 3


def test_huge_or_malformed_expressions_time_out_into_unparsed(checker) -> None:
    stats = EquivalenceStats()
    nested = "(" * 40 + "1" + ")" * 40  # the LaTeX parser's cost explodes with nesting
    started = time.monotonic()
    v = cast([nested, "10^{10^{10}}", "7", "\\pi", "x" * 5000, "x" * 5000], checker, stats)
    assert time.monotonic() - started < 60  # bounded: a hang would stop here
    assert v.classes == (0, 1, 2, 3, 4, 4)  # nothing joined by accident; the long ones as strings
    assert stats.parse_timeouts >= 1  # the nested one
    assert stats.comparison_timeouts >= 1  # 10^(10^10) against 7: sympy tries to evaluate it
    assert stats.answers_by_string >= 2
    # the checker still works afterwards
    assert cast(["0.5", "\\frac{1}{2}"], checker).answers_agree


@pytest.mark.parametrize("window", [256, 1])  # 1: later windows are queued on the worker that gets stuck
def test_a_worker_stuck_where_no_signal_reaches_is_killed(tmp_path, monkeypatch, window) -> None:
    stuck = tmp_path / "stuck_worker.py"
    # Ignores the timer signal and blocks on the answer "hang" (like a computation inside C), else labels.
    stuck.write_text(
        "import json, signal, sys, time\n"
        "signal.signal(signal.SIGPROF, signal.SIG_IGN)\n"
        "print(json.dumps({'ready': True}), flush=True)\n"
        "for line in sys.stdin:\n"
        "    problems = json.loads(line)['problems']\n"
        "    if any('hang' in a for p in problems for a in p):\n"
        "        time.sleep(3600)\n"
        "    print(json.dumps({'results': [{'labels': [0] * len(p), 'status': ['parsed'] * len(p),\n"
        "          'comparison_timeouts': 0} for p in problems]}), flush=True)\n"
    )
    monkeypatch.setattr(equivalence, "WORKER", stuck)
    monkeypatch.setattr(equivalence, "HARD_LIMIT_SLACK_S", 0.5)
    monkeypatch.setattr(equivalence, "WALL_PER_CPU", 1.0)
    stats = EquivalenceStats()
    items = [["0.5", "\\frac{1}{2}"], ["hang", "x"], ["0.25", "\\frac{1}{4}"]]
    with EquivalenceChecker(timeout_s=0.1, workers=1) as c:
        votes = [
            v
            for _, v in vote_stream(
                items, lambda raws: (raws, [normalize_answer(r) for r in raws]), c, stats, window=window
            )
        ]
        assert c.restarts == 2  # the batch's worker, then the problem's own retry
    assert [v.classes for v in votes] == [(0, 0), (0, 1), (0, 0)]  # only the stuck problem lost its parses
    assert stats.parse_timeouts == 2 and stats.answers_by_string == 2


def test_works_off_the_main_thread(checker) -> None:
    out = {}
    thread = threading.Thread(target=lambda: out.update(v=cast(["0.5", "\\frac{1}{2}", "3"], checker)))
    thread.start()
    thread.join(120)
    assert out["v"].classes == (0, 0, 2)


def test_disabled_compares_strings_only() -> None:
    stats = EquivalenceStats(enabled=False)
    v = cast(["0.5", "\\frac{1}{2}", "0.5"], None, stats)
    assert v.classes == (0, 1, 0) and v.majority_answer == "0.5"
    assert stats.answers_by_value == 0 and stats.answers_by_string == 2


def test_stream_keeps_order_across_windows(checker) -> None:
    items = [[str(i), f"{i}.0", "\\{1,2\\}"] for i in range(50)]
    stats = EquivalenceStats()
    got = list(vote_stream(items, lambda raws: (raws, [normalize_answer(r) for r in raws]), checker, stats, window=16))
    assert [item for item, _ in got] == items
    assert all(v.classes == (0, 0, 2) for _, v in got)
    assert stats.problems == 50 and stats.problems_merged == 50
