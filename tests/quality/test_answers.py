"""Final answers: reasoning split, last \\boxed{}, normalisation, majority vote."""

from __future__ import annotations

import pytest

from magpie_hpc.quality.answers import extract_boxed, majority_answer, normalize_answer, split_reasoning


def test_split_reasoning_with_think_end() -> None:
    text = "<think>\nLet me factor it.\n</think>\n\nThe answer is $\\boxed{6}$."
    assert split_reasoning(text) == ("Let me factor it.", "The answer is $\\boxed{6}$.")


def test_split_reasoning_without_leading_think_tag() -> None:
    # R1-style templates put "<think>" in the prompt, so the response starts inside it.
    assert split_reasoning("Factor it.</think>6") == ("Factor it.", "6")


def test_split_reasoning_uses_the_first_think_end() -> None:
    assert split_reasoning("a</think>b</think>c") == ("a", "b</think>c")


def test_split_reasoning_without_think_end() -> None:
    assert split_reasoning("  The answer is 6.\n") == (None, "The answer is 6.")
    assert split_reasoning("[[r]] answer", think_end="[[/r]]") == (None, "[[r]] answer")
    assert split_reasoning("[[r]] x [[/r]] answer", think_end="[[/r]]") == ("[[r]] x", "answer")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("The set is $\\boxed{\\{1,2\\}}$", "\\{1,2\\}"),
        ("first \\boxed{1}, then \\boxed{2}, finally \\boxed{3}.", "3"),
        ("\\boxed {x^{2}}", "x^{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed{\\boxed{5}}", "\\boxed{5}"),
        (
            "$\\boxed{\\begin{pmatrix} 1 & 0 \\\\{0} & 1 \\end{pmatrix}}$",
            "\\begin{pmatrix} 1 & 0 \\\\{0} & 1 \\end{pmatrix}",
        ),
        ("no box here, the answer is 4", None),
        ("", None),
        ("\\boxed{1} and then \\boxed{\\frac{1}{2}", None),  # the last box is cut: no answer
        ("\\boxedx{3}", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (" 42 ", "42."),
        ("$42$.", "42"),
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("x = 3", "3"),
        ("\\theta = \\pi/4", "\\pi / 4"),
        ("\\text{no solution}", "no solution"),
        ("\\boxed{7}", "7"),
        ("\\( \\sqrt2 \\)", "\\sqrt{2}"),
        ("\\displaystyle \\frac{\\pi^2}{6}", "\\frac{\\pi^2}{6}"),
        ("2\\,\\pi", "2\\pi"),
    ],
)
def test_normalize_answer_equal(left: str, right: str) -> None:
    assert normalize_answer(left) == normalize_answer(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("0.5", "\\frac{1}{2}"),  # no evaluation
        ("x=1, y=2", "1, y=2"),  # two assignments are left alone
        ("f(x) = 2x", "2x"),  # not a single variable
        ("5\\text{ cm}", "5"),  # units stay
        ("\\leftarrow", "arrow"),  # \left is not matched inside \leftarrow
        ("1,2,...", "1,2,"),  # an ellipsis is not a full stop
    ],
)
def test_normalize_answer_stays_different(left: str, right: str) -> None:
    assert normalize_answer(left) != normalize_answer(right)


def test_normalize_answer_keeps_inner_dollars() -> None:
    assert normalize_answer("$a$ and $b$") == "$a$and$b$"


def test_majority_four_of_seven() -> None:
    answers = ["\\frac{1}{2}", "3", "\\dfrac{1}{2}", None, "$\\frac12$", "3", " \\frac{1}{2}. "]
    assert majority_answer(answers) == ("\\frac{1}{2}", pytest.approx(4 / 7))


def test_majority_all_none() -> None:
    assert majority_answer([None, None, None]) == (None, 0.0)
    assert majority_answer([]) == (None, 0.0)


def test_majority_tie_goes_to_first_seen() -> None:
    assert majority_answer(["2", "1", "1", "2", None]) == ("2", pytest.approx(2 / 5))
    assert majority_answer(["b", "a"]) == ("b", 0.5)


def test_majority_ignores_answers_that_normalise_to_nothing() -> None:
    assert majority_answer(["$ $", "7", None]) == ("7", pytest.approx(1 / 3))
