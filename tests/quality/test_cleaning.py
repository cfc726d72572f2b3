"""Instruction cleaning: each defect of the original pipeline's output is cut or dropped,
and well-formed research-level problems pass through unchanged."""

from __future__ import annotations

import pytest

from magpie_hpc.quality.cleaning import Cleaned, clean_instruction, normalize_for_dedup

GOOD_PROBLEMS = [
    r"Let $K = \mathbb{Q}(\sqrt[3]{2})$ and let $L$ be the Galois closure of $K$ over "
    r"$\mathbb{Q}$. Determine $\mathrm{Gal}(L/\mathbb{Q})$ and describe all intermediate "
    r"fields of $L/\mathbb{Q}$ together with their degrees.",
    r"Let $f: \mathbb{R} \to \mathbb{R}$ be a continuous function such that "
    r"$f(x + y) = f(x) + f(y)$ for all $x, y \in \mathbb{R}$. Prove that there is a constant "
    r"$c$ with $f(x) = cx$ for every $x$.",
    "Consider the system\n\\begin{align}\n\\dot{x} &= y - x^3, \\\\\n\\dot{y} &= -x.\n"
    "\\end{align}\nShow that the origin is globally asymptotically stable, and construct an "
    "explicit Lyapunov function.",
    "Evaluate the integral\n$$\\int_0^\\infty \\frac{\\log x}{1 + x^2}\\, dx.$$\nIs the "
    "answer the same if the denominator is replaced by $(1 + x^2)^2$?",
    r"Let $X$ be a smooth projective curve of genus $g \geq 2$ over $\mathbb{C}$. Show that "
    r"the canonical map $X \to \mathbb{P}^{g-1}$ is an embedding if and only if $X$ is not "
    r"hyperelliptic.",
    "Let $(a_n)_{n \\ge 1}$ be the sequence defined by $a_1 = 1$ and "
    "$a_{n+1} = a_n + \\frac{1}{a_n}$. Find the limit\n\\[\n"
    "\\lim_{n \\to \\infty} \\frac{a_n}{\\sqrt{2n}}.\n\\]\nWhat is it?",
    r"Prove or disprove: every finitely generated residually finite group $G$ is Hopfian, "
    r"that is, every surjective endomorphism $\varphi: G \to G$ is an automorphism.",
    "Let $p$ be an odd prime. Compute the Legendre symbol sum $\\sum_{a=1}^{p-1} "
    "\\left(\\frac{a(a+1)}{p}\\right)$ and explain how the result follows from counting "
    "points on a conic over $\\mathbb{F}_p$.",
    "Let $A$ be the matrix\n$$A = \\begin{pmatrix} 2 & 1 \\\\ 1 & 2 \\end{pmatrix}.$$\n"
    "Compute $e^{tA}$ in closed form, and determine for which $t > 0$ the operator norm "
    "$\\|e^{tA}\\|_2$ exceeds $e^{3t}/2$?",
    "Suppose $\\Omega \\subset \\mathbb{R}^n$ is a bounded Lipschitz domain and "
    "$u \\in H^1_0(\\Omega)$ solves $-\\Delta u = \\lambda u$ weakly. Show that "
    "$u \\in C^\\infty(\\Omega)$, and discuss whether $u$ need be smooth up to the boundary "
    "when $\\partial\\Omega$ has a corner, e.g. for a square.",
]


@pytest.mark.parametrize("problem", GOOD_PROBLEMS)
def test_good_problems_are_kept_unchanged(problem: str) -> None:
    assert clean_instruction("  \n" + problem + "\n ", "stop") == Cleaned(problem, None, False)


def test_cut_before_formula_is_dangling() -> None:
    assert clean_instruction("Evaluate the following integral:", "stop").dropped == "dangling"


@pytest.mark.parametrize(
    "text",
    [
        "Let $f$ be the function defined by",
        "Compute the determinant of the matrix $A = \\begin{pmatrix} 1 & 2",
        "Find all real solutions of the equation $\\int_0^x f(t)\\,dt =",
        "Consider the integral \\[ \\int_0^1 \\frac{dx}{\\sqrt{1-x^4}}",
        "Show that for every prime $p$ the following holds, where",
        "Let $G$ be a finite group acting on a set $X$, and suppose that for every $g$,",
        "Evaluate $$\\sum_{n=1}^\\infty \\frac{1}{n^2 + 1}",
        "Prove that the sequence $x_n = \\sin(n)^n$ satisfies the following.",
    ],
)
def test_unfinished_sentences_and_formulas_are_dangling(text: str) -> None:
    assert clean_instruction(text, "stop").dropped == "dangling"


def test_appended_solution_is_cut() -> None:
    question = r"Prove that $\sqrt{2}$ is irrational."
    result = clean_instruction(question + "\n\nSolution: We argue by contradiction.", "stop")
    assert result == Cleaned(question, None, True)


@pytest.mark.parametrize(
    "answer",
    [
        "**Solution:** Suppose not.",
        "## Solution\nWe compute.",
        "Answer: 7",
        "**Answer.** 7",
        "Proof. Let $x$ be given.",
        "Proof: trivial.",
        "Final Answer\n\\boxed{7}",
        "To solve this, we first note that $n$ is odd.",
        "Let's solve this step by step.",
        "Okay, so I need to find the order of the group.",
        "Alright, so the question asks for the order.",
        "We begin by recalling Sylow's theorems.",
        "Step 1: Reduce to the $p$-subgroups.",
        "<|im_start|>assistant\nThe order is 7.",
        "<｜Assistant｜>The order is 7.",
        "Assistant: The order is 7.",
    ],
)
def test_appended_answers_of_every_kind_are_cut(answer: str) -> None:
    question = "Let $G$ be a group of order $7 \\cdot 11$. Determine the number of elements of order $7$."
    assert clean_instruction(question + "\n\n" + answer, "stop") == Cleaned(question, None, True)


def test_assistant_marker_is_cut_anywhere() -> None:
    question = "What is the class number of $\\mathbb{Q}(\\sqrt{-23})$?"
    for marker in ("<｜Assistant｜>", "<|im_start|>assistant", " Assistant:"):
        assert clean_instruction(question + marker + " It is 3.", "stop") == Cleaned(question, None, True)


def test_appended_think_is_cut() -> None:
    question = "Find all integers $n$ such that $n^2 + 1$ divides $n^3 + 3$."
    result = clean_instruction(question + "\n<think>\nOkay so", "stop")
    assert result == Cleaned(question, None, True)


def test_cut_text_is_rechecked() -> None:
    # What remains before the answer is itself cut before its formula.
    result = clean_instruction("Compute the integral:\n\nSolution: It is 2.", "stop")
    assert result == Cleaned(None, "dangling", True)
    # What remains still holds a fake token.
    result = clean_instruction("<|im_start|>user\nWhat is $2+2$?<|im_end|>\n<|im_start|>assistant\n4", "stop")
    assert result == Cleaned(None, "special_tokens", True)


@pytest.mark.parametrize(
    "text",
    [
        "Let $n \\geq 2$.<|im_start|>user\nProve that $n! < n^n$ for all such $n$.",
        "[INST] Compute the Euler characteristic of the real projective plane.",
        "Compute the Euler characteristic of $\\mathbb{RP}^2$.</s> And of the torus.",
        "### Instruction:\nCompute the Euler characteristic of the real projective plane.",
        "<<SYS>> You are a helpful assistant. <</SYS>> What is the genus of a cubic curve?",
        "Compute the Euler characteristic of the Klein bottle.<|eot_id|> Then the torus.",
        "What is $\\pi_1(S^1 \\vee S^1)$?</think> It is free on two generators, isn't it?",
    ],
)
def test_fake_special_tokens_are_dropped(text: str) -> None:
    assert clean_instruction(text, "stop").dropped == "special_tokens"


@pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
def test_empty_and_whitespace_only_are_empty(text: str) -> None:
    assert clean_instruction(text, "stop") == Cleaned(None, "empty", False)


def test_length_truncated_is_dropped() -> None:
    text = GOOD_PROBLEMS[0]
    assert clean_instruction(text, "length") == Cleaned(None, "truncated", False)


def test_length_cut_answer_does_not_save_the_question() -> None:
    # The question before a length-cut appended answer may look finished, but the stage keeps no
    # length-cut sample at all (the model was still writing when the budget ran out).
    text = GOOD_PROBLEMS[1] + "\n\nSolution. Put $c = f(1)$. Then for rationals"
    assert clean_instruction(text, "length") == Cleaned(None, "truncated", False)


def test_too_short() -> None:
    assert clean_instruction("Is 91 prime?", "stop") == Cleaned(None, "too_short", False)
    assert clean_instruction("Is 91 prime?", "stop", min_chars=5).text == "Is 91 prime?"


def test_text_that_is_all_answer_is_empty() -> None:
    assert clean_instruction("Solution: the answer is 4.", "stop") == Cleaned(None, "empty", True)


def test_question_phrased_with_answer_words_is_kept() -> None:
    # First person, mentions an attempt, ends with '?': the soft markers must not fire.
    text = (
        "I am trying to compute $H^2(\\mathbb{Z}/n, \\mathbb{Z})$.\n\nTo solve this I used the "
        "periodic resolution, but the degrees do not match. Where is my mistake?"
    )
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)
    # "Solutions" / "Answer with" inside a question are not markers.
    text = "Solutions of $x^n + y^n = z^n$ in coprime integers are classified how?\nAnswer with a proof sketch."
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)


def test_currency_dollar_is_not_an_open_formula() -> None:
    text = "A bond pays $5 a year forever and the rate is 4%. What is its fair price in dollars"
    assert clean_instruction(text, "stop").text == text


def test_normalize_for_dedup() -> None:
    assert normalize_for_dedup("  Prove THAT  $x$\n is   even. ") == "prove that $x$ is even"
    assert normalize_for_dedup("Ｐｒｏｖｅ it!") == "prove it"


def test_exact_duplicates_share_a_dedup_key() -> None:
    # The instruction stage drops a text whose key it has seen (stages/instructions.py).
    texts = [
        "Prove that $\\sqrt{2}$ is irrational.",
        "Compute $\\zeta(2)$.",
        "prove that  $\\sqrt{2}$ is\nirrational",
        "PROVE THAT $\\sqrt{2}$ IS IRRATIONAL.",
        "Compute $\\zeta(3)$.",
        "  Compute $\\zeta(2)$.  ",
    ]
    keys = [normalize_for_dedup(t) for t in texts]
    assert keys[0] == keys[2] == keys[3] and keys[1] == keys[5]
    assert len({keys[0], keys[1], keys[4]}) == 3


def test_user_attempt_and_multi_part_questions_are_not_cut() -> None:
    # The user shows their own proof: the "Proof:" heading belongs to the question.
    text = (
        "Is my proof that $\\sqrt{2}$ is irrational correct?\n\n"
        "Proof: Suppose $\\sqrt{2} = p/q$ in lowest terms. Then $p^2 = 2q^2$, so $p$ is even."
    )
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)
    # Steps of the problem itself, after a preamble that is not yet a task.
    text = (
        "Consider the following two-part problem.\n\n"
        "Step 1: Show that $f(x) = x \\sin(1/x)$ is continuous on $[0, 1]$.\n"
        "Step 2: Deduce that it is uniformly continuous there."
    )
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)


@pytest.mark.parametrize(
    "text",
    [
        # \end{align} closes the align and the unclosed cases inside it.
        "Show that the system \\begin{align} x \\begin{cases} y \\end{align} has a unique solution for every x.",
        # Each \end{align} closes the innermost open align, with what is inside it.
        "Show that \\begin{align}\\begin{align}\\begin{cases} x \\end{align} y \\end{align} holds for all real x.",
    ],
)
def test_environments_closed_from_the_inside_out(text) -> None:
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)


@pytest.mark.parametrize(
    "text",
    [
        "Show that \\begin{align}\\begin{cases}\\begin{align} x \\end{cases} holds for every real number x",
        # In inline math, '\(' neither closes the formula nor hides the LaTeX before it.
        "Prove that the value is $\\frac{1}{2} \\( 5 for all the integers we consider here",
        # '\]' does not close a '\(' formula.
        "Find the value of \\(x^2 \\] for every real number x that we consider here",
    ],
)
def test_open_math_left_by_a_cut_is_dangling(text) -> None:
    assert clean_instruction(text, "stop").dropped == "dangling"


def test_min_chars_boundary() -> None:
    assert clean_instruction("x" * 18 + "?", "stop").dropped == "too_short"  # 19 characters
    assert clean_instruction("x" * 19 + "?", "stop").text == "x" * 19 + "?"


def test_own_attempt_at_the_very_start_keeps_its_proof() -> None:
    text = (
        "My proof of the claim follows; please check each step.\n\n"
        "Proof: Suppose $n$ is odd. Then $n^2$ is odd as well."
    )
    assert clean_instruction(text, "stop") == Cleaned(text, None, False)


def test_dedup_key_strips_leading_punctuation() -> None:
    assert normalize_for_dedup("(Prove it)") == normalize_for_dedup("...prove it!") == "prove it"
    assert normalize_for_dedup("?" * 300) == ""  # past CPython's small ints: positions compare by value
