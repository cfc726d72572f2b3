"""Tiny random-weight checkpoints that load like real ones, written offline.

``write_tiny_models(DIR)`` creates three model folders in a couple of seconds,
without any hub access, so that the real loading code (``transformers``
``from_pretrained`` and ``vllm.LLM``) can run in tests and on a laptop:

``deepseek-r1-tiny``
    ``Qwen2ForCausalLM`` (bf16) with a DeepSeek-R1-Distill-Qwen style tokenizer:
    ``<｜begin▁of▁sentence｜>`` / ``<｜end▁of▁sentence｜>`` / ``<｜▁pad▁｜>`` are
    special, ``<｜User｜>``, ``<｜Assistant｜>``, ``<think>``, ``</think>`` are
    added but *not* special (as in the real model, so they survive
    ``skip_special_tokens=True``).  Plain ``encode`` prepends BOS
    (``add_bos_token``), the chat template renders the R1 form and its
    generation prompt is ``<｜Assistant｜><think>\\n``.
``chatml-tiny``
    Same architecture, Qwen2.5 ChatML tokenizer (``<|im_start|>``,
    ``<|im_end|>``, ``<|endoftext|>``), no BOS, default Qwen system prompt.
``reward-tiny``
    ArmoRM's layout (``LlamaForRewardModelWithGating``, float32): Llama
    backbone, regression layer, gating network and transform matrix under the
    checkpoint's names, ``auto_map`` to a ``modeling_custom.py`` that must never
    be imported, ``[PAD]`` after the vocabulary named only by
    ``config.pad_token_id``, Llama-3 tokenizer and chat template.

Everything is deterministic (fixed seeds, deterministic BPE training) and is
written with numpy plus the ``tokenizers`` library only -- neither torch,
transformers nor vllm is imported here.

The generator weights are random but *shaped* so that sampling terminates by
itself, like a real chat model: every token embedding carries a constant
component on one hidden dimension, and the ``lm_head`` rows of the stop tokens
read that dimension, giving the stop tokens a stable logit next to the random
ones.  One attention head of layer 0 looks for the assistant marker
(``<｜Assistant｜>``) and writes a "phase" feature, so a Magpie instruction
(prompt ends with ``<｜User｜>``) stops mostly on ``<｜Assistant｜>`` while a
response (prompt ends with ``<｜Assistant｜><think>\\n``) stops on
``<｜end▁of▁sentence｜>`` and often emits ``</think>`` on the way.  The
``lm_head`` also carries a unigram prior from the training corpus so the random
text is made of plausible math word pieces rather than raw bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["TinyModels", "write_tiny_models", "MARKER_FILE"]

#: Written last into each finished model folder.
MARKER_FILE = ".tiny-complete"
#: Bump when the recipe changes: folders with another version are rewritten.
RECIPE_VERSION = 2

DEEPSEEK_DIRNAME = "deepseek-r1-tiny"
CHATML_DIRNAME = "chatml-tiny"
REWARD_DIRNAME = "reward-tiny"


@dataclass(frozen=True)
class TinyModels:
    deepseek: Path  # DIR/deepseek-r1-tiny
    chatml: Path  # DIR/chatml-tiny
    reward: Path  # DIR/reward-tiny


# ---------------------------------------------------------------------------
# Token strings and chat templates
# ---------------------------------------------------------------------------

R1_BOS = "<｜begin▁of▁sentence｜>"
R1_EOS = "<｜end▁of▁sentence｜>"
R1_PAD = "<｜▁pad▁｜>"
R1_USER = "<｜User｜>"
R1_ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

L3_BOS = "<|begin_of_text|>"
L3_EOT_TEXT = "<|end_of_text|>"
L3_START_HEADER = "<|start_header_id|>"
L3_END_HEADER = "<|end_header_id|>"
L3_EOT = "<|eot_id|>"
L3_PAD = "<|finetune_right_pad_id|>"

# A faithful simplification of DeepSeek-R1-Distill-Qwen's template (tool calls
# dropped): BOS, the (last) system message, then <｜User｜>content and
# <｜Assistant｜>content<｜end▁of▁sentence｜>; assistant content is cut after
# '</think>' like the real one; the generation prompt opens a think block.
R1_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(system_prompt='') %}"
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{% endif %}{% endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

# Qwen2.5-Instruct's ChatML template without the tool-calling branches,
# including its default system prompt.
CHATML_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>system\\n" + QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if not (message['role'] == 'system' and loop.first) %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Meta-Llama-3-Instruct's template, verbatim.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Pre-tokenizer regexes of Qwen2 (single digits) and Llama-3 (up to 3 digits).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ---------------------------------------------------------------------------
# Training corpus (English + LaTeX math)
# ---------------------------------------------------------------------------

_CORPUS_TEXT = r"""
Find all real numbers $x$ such that $x^2 - 5x + 6 = 0$.
Let $f(x) = 3x^2 + 2x - 1$. Compute $f(2) + f(-1)$.
Solve for $x$: $\frac{x+1}{x-2} = 3$. Express your answer as a common fraction.
Prove that for every positive integer $n$, the number $n^3 - n$ is divisible by $6$.
What is the remainder when $2^{100}$ is divided by $7$?
A rectangle has a perimeter of $30$ and an area of $56$. What are its side lengths?
How many positive divisors does $360$ have?
Compute $\sum_{k=1}^{n} k^2$ and prove the formula by induction on $n$.
Let $a$, $b$, and $c$ be positive real numbers with $a + b + c = 1$. Prove that $ab + bc + ca \le \frac{1}{3}$.
The sum of two numbers is $20$ and their difference is $4$. Find the product of the two numbers.
Evaluate the integral $\int_0^1 x e^{x} \, dx$.
Find the derivative of $g(x) = \sin(x) \cos(x)$ with respect to $x$.
A fair coin is flipped $10$ times. What is the probability of getting exactly $4$ heads?
In triangle $ABC$, $AB = 5$, $BC = 12$, and $CA = 13$. Find the area of the triangle.
Find the greatest common divisor of $84$ and $126$.
Simplify $\sqrt{50} + \sqrt{18} - \sqrt{8}$.
Determine all integers $n$ for which $\frac{n+3}{n-1}$ is an integer.
What is the smallest positive integer that leaves a remainder of $1$ when divided by $2$, $3$, $4$, $5$, and $6$?
Let $z = 1 + i$. Compute $z^8$ and write it in the form $a + bi$.
The first term of a geometric sequence is $3$ and the common ratio is $\frac{1}{2}$. Find the sum of the infinite series.
Show that $\sqrt{2}$ is irrational.
Find the number of ways to arrange the letters of the word MATH so that no two vowels are adjacent.
If $\log_2 x + \log_2 (x - 2) = 3$, find $x$.
A circle has radius $r$ and its area equals its circumference. Find $r$.
Let $P(x)$ be a polynomial such that $P(1) = 2$, $P(2) = 5$, and $P(3) = 10$. Find $P(4)$ if $P$ is quadratic.
How many integers between $1$ and $1000$ are divisible by neither $3$ nor $5$?
Find the minimum value of $x + \frac{4}{x}$ for $x > 0$.
The angles of a triangle are in the ratio $2:3:4$. Find the largest angle in degrees.
Compute the determinant of the matrix $\begin{pmatrix} 2 & 1 \\ 3 & 4 \end{pmatrix}$.
Solve the system of equations $x + y = 7$ and $2x - y = 2$.
What is the value of $\binom{8}{3}$?
Find the limit $\lim_{x \to 0} \frac{\sin 3x}{x}$.
Let $n$ be a positive integer. Show that $\gcd(n, n+1) = 1$.
A train travels $120$ miles in $2$ hours. At this rate, how far will it travel in $5$ hours?
Find all primes $p$ such that $p^2 + 2$ is also prime.
What is the units digit of $7^{2024}$?
The average of five numbers is $12$. If one number is removed, the average becomes $10$. What number was removed?
Let $x$ and $y$ be real numbers with $x^2 + y^2 = 1$. Find the maximum of $3x + 4y$.
Compute $1 + 2 + 3 + \cdots + 100$.
Find the equation of the line through the points $(1, 2)$ and $(3, 8)$.
We start by factoring the quadratic: $x^2 - 5x + 6 = (x - 2)(x - 3)$, so the solutions are $x = 2$ and $x = 3$.
Therefore the answer is $\boxed{5}$.
By the Cauchy-Schwarz inequality, $(3x + 4y)^2 \le (3^2 + 4^2)(x^2 + y^2) = 25$, so the maximum is $\boxed{5}$.
Since $n^3 - n = (n-1)n(n+1)$ is a product of three consecutive integers, it is divisible by both $2$ and $3$, hence by $6$.
Note that $2^3 = 8 \equiv 1 \pmod{7}$, so $2^{100} = 2 \cdot (2^3)^{33} \equiv 2 \pmod{7}$. The remainder is $\boxed{2}$.
Using integration by parts with $u = x$ and $dv = e^x \, dx$, we get $\int_0^1 x e^x \, dx = \left[ x e^x - e^x \right]_0^1 = 1$.
The probability is $\frac{\binom{10}{4}}{2^{10}} = \frac{210}{1024} = \frac{105}{512}$.
Suppose for contradiction that $\sqrt{2} = \frac{p}{q}$ in lowest terms. Then $p^2 = 2q^2$, so $p$ is even.
Writing $p = 2k$ gives $q^2 = 2k^2$, so $q$ is even as well, which contradicts $\gcd(p, q) = 1$.
By AM-GM, $x + \frac{4}{x} \ge 2\sqrt{4} = 4$, with equality when $x = 2$. So the minimum value is $\boxed{4}$.
The base case $n = 1$ holds because $1 = \frac{1 \cdot 2 \cdot 3}{6}$. Assume the formula holds for $n$.
Then $\sum_{k=1}^{n+1} k^2 = \frac{n(n+1)(2n+1)}{6} + (n+1)^2 = \frac{(n+1)(n+2)(2n+3)}{6}$, completing the induction.
Let me think step by step. First, I need to understand what the problem is asking.
Wait, let me double-check this computation. If $x = 4$, then $\log_2 4 + \log_2 2 = 2 + 1 = 3$, which works.
Hmm, so the total number of arrangements is $4! = 24$, and we need to subtract the cases where the vowels are together.
So, the final answer is $\boxed{\frac{1}{2}}$.
Okay, so I have this problem here, and I need to find the value of $x$. Let me write down what I know.
Alternatively, we can use the quadratic formula: $x = \frac{-b \pm \sqrt{b^2 - 4ac}}{2a}$.
The slope is $m = \frac{8 - 2}{3 - 1} = 3$, so the line is $y - 2 = 3(x - 1)$, that is, $y = 3x - 1$.
Please reason step by step, and put your final answer within \boxed{}.
You are a helpful assistant that solves math problems carefully and explains each step.
Solution: Let $S$ denote the sum. Then $2S = 101 \cdot 100$, so $S = 5050$. Thus the answer is $\boxed{5050}$.
Therefore, $z^8 = (1+i)^8 = \left((1+i)^2\right)^4 = (2i)^4 = 16$, and the answer is $\boxed{16}$.
Since $\lim_{x \to 0} \frac{\sin x}{x} = 1$, we have $\lim_{x \to 0} \frac{\sin 3x}{x} = 3$.
The triangle is a right triangle because $5^2 + 12^2 = 13^2$, so its area is $\frac{1}{2} \cdot 5 \cdot 12 = 30$.
Let $ABCD$ be a square with side length $6$. Point $E$ is the midpoint of $\overline{BC}$. Find the length of $\overline{AE}$.
A bag contains $5$ red marbles, $3$ blue marbles, and $2$ green marbles. Two marbles are drawn without replacement. What is the probability that both are red?
Find all functions $f: \mathbb{R} \to \mathbb{R}$ such that $f(x + y) = f(x) + f(y)$ and $f$ is continuous.
Determine whether the series $\sum_{n=1}^{\infty} \frac{1}{n(n+1)}$ converges, and if so, find its sum.
The hypotenuse of a right triangle is $10$ and one leg is $6$. What is the perimeter of the triangle?
Let $\alpha$ and $\beta$ be the roots of $t^2 - 4t + 1 = 0$. Compute $\alpha^2 + \beta^2$ and $\frac{1}{\alpha} + \frac{1}{\beta}$.
How many subsets of $\{1, 2, 3, \ldots, 10\}$ contain no two consecutive integers?
Find the volume of a cylinder with radius $3$ and height $7$. Express your answer in terms of $\pi$.
A store sells notebooks for $\$3$ each and pens for $\$2$ each. Maria spends exactly $\$25$. In how many ways could she have done this?
Prove that there are infinitely many prime numbers.
Suppose that $a_1 = 1$ and $a_{n+1} = 2a_n + 1$ for all $n \ge 1$. Find a closed form for $a_n$.
What is the least common multiple of $12$, $18$, and $30$?
Convert the repeating decimal $0.\overline{36}$ to a fraction in lowest terms.
If $\tan \theta = \frac{3}{4}$ and $\theta$ is in the first quadrant, find $\sin \theta$ and $\cos \theta$.
Find the coefficient of $x^3$ in the expansion of $(2x - 1)^6$.
The mean of a data set is $15$, the median is $14$, and the mode is $12$. If every value is doubled, what are the new mean, median, and mode?
Let $v = (1, 2, 2)$. Find a unit vector in the direction of $v$ and compute the norm $\|v\|$.
Find the eigenvalues of the matrix $\begin{pmatrix} 4 & 1 \\ 2 & 3 \end{pmatrix}$.
A regular hexagon has side length $4$. Compute its area.
How many distinct diagonals does a convex polygon with $12$ sides have?
Two dice are rolled. What is the expected value of the larger of the two numbers shown?
Solve the inequality $|2x - 3| < 5$ and write the solution as an interval.
Find the sum of all positive integers $n$ less than $100$ such that $n^2 + 1$ is divisible by $5$.
Evaluate $\cos^2 15^\circ - \sin^2 15^\circ$.
Show that the function $h(x) = x^3 + x$ is strictly increasing on $\mathbb{R}$.
The population of a town grows by $10\%$ each year. If it is $2000$ now, what will it be in $3$ years?
Find the distance between the points $(-2, 5)$ and $(4, -3)$ in the coordinate plane.
Let $S$ be the set of lattice points $(x, y)$ with $x^2 + y^2 \le 25$. How many points are in $S$?
What is the sum of the interior angles of a pentagon?
A cone has radius $4$ and slant height $5$. Find its volume.
Compute the value of $\log_3 81 - \log_2 \frac{1}{8}$.
If $x + \frac{1}{x} = 5$, find the value of $x^2 + \frac{1}{x^2}$.
Find the number of trailing zeros in $100!$.
Let $p$ be an odd prime. Prove that $\sum_{k=1}^{p-1} k \equiv 0 \pmod{p}$.
A function is defined by $f(n) = n^2 - n + 41$. Show that $f(41)$ is not prime.
Find the maximum area of a rectangle inscribed in a semicircle of radius $2$.
Compute $\int_1^e \frac{\ln x}{x} \, dx$.
What is the probability that a randomly chosen integer from $1$ to $50$ is a perfect square?
Hmm, that doesn't look right. Let me reconsider the problem from the beginning.
Actually, I made an arithmetic error above. The correct value is $12 \cdot 7 = 84$, not $86$.
So we have two cases to consider. In the first case, $x \ge 0$, and in the second case, $x < 0$.
Let's verify: substituting back into the original equation gives $3(2) + 4 = 10$, which is correct.
Now, the key observation is that the expression is symmetric in $a$ and $b$, so we may assume $a \le b$.
Combining these results, we conclude that the only solutions are $n = 1$ and $n = 3$.
Therefore, the probability is $\frac{5}{10} \cdot \frac{4}{9} = \frac{2}{9}$, and the answer is $\boxed{\frac{2}{9}}$.
By the Pythagorean theorem, $AE = \sqrt{6^2 + 3^2} = \sqrt{45} = 3\sqrt{5}$.
The series telescopes because $\frac{1}{n(n+1)} = \frac{1}{n} - \frac{1}{n+1}$, so the sum equals $1$.
Since $\alpha + \beta = 4$ and $\alpha\beta = 1$, we get $\alpha^2 + \beta^2 = (\alpha + \beta)^2 - 2\alpha\beta = 14$.
The number of diagonals is $\frac{n(n-3)}{2} = \frac{12 \cdot 9}{2} = 54$.
Counting the factors of $5$, we get $\left\lfloor \frac{100}{5} \right\rfloor + \left\lfloor \frac{100}{25} \right\rfloor = 24$ trailing zeros.
Assume, to the contrary, that there are only finitely many primes $p_1, p_2, \ldots, p_k$. Consider $N = p_1 p_2 \cdots p_k + 1$.
Then $N$ is not divisible by any $p_i$, so it has a prime factor not in the list, a contradiction.
Differentiating, we find $h'(x) = 3x^2 + 1 > 0$ for all real $x$, which proves that $h$ is strictly increasing.
The characteristic polynomial is $\lambda^2 - 7\lambda + 10 = (\lambda - 2)(\lambda - 5)$, so the eigenvalues are $2$ and $5$.
We can rewrite the inequality as $-5 < 2x - 3 < 5$, which gives $-1 < x < 4$, i.e. the interval $(-1, 4)$.
Using the binomial theorem, the coefficient is $\binom{6}{3} \cdot 2^3 \cdot (-1)^3 = -160$.
Substituting $u = \ln x$ gives $\int_0^1 u \, du = \frac{1}{2}$.
"""

_NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry"]
_ITEMS = ["apples", "marbles", "books", "coins", "pencils", "cookies", "stamps", "cards"]


def _corpus() -> str:
    """The embedded corpus plus deterministic templated word problems."""
    rng = np.random.default_rng(20240601)
    lines = [_CORPUS_TEXT.strip()]
    for i in range(160):
        a, b, c = (int(v) for v in rng.integers(2, 99, size=3))
        name = _NAMES[i % len(_NAMES)]
        item = _ITEMS[(i * 3) % len(_ITEMS)]
        kind = i % 8
        if kind == 0:
            lines.append(f"{name} has ${a}$ {item} and buys ${b}$ more. How many {item} does {name} have now?")
        elif kind == 1:
            lines.append(f"Compute ${a} \\times {b} + {c}$. The answer is $\\boxed{{{a * b + c}}}$.")
        elif kind == 2:
            lines.append(f"Solve for $x$: ${a}x + {b} = {c}$. We get $x = \\frac{{{c - b}}}{{{a}}}$.")
        elif kind == 3:
            lines.append(f"Find the value of $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{b}}}$ in simplest form.")
        elif kind == 4:
            lines.append(f"What is the remainder when ${a * b}$ is divided by ${c}$? The remainder is ${(a * b) % c}$.")
        elif kind == 5:
            lines.append(f"If $f(x) = {a}x^2 - {b}$, find $f({c % 10})$. Thus $f({c % 10}) = {a * (c % 10) ** 2 - b}$.")
        elif kind == 6:
            lines.append(f"A square has side length ${a}$. Find its area and perimeter. The area is ${a * a}$.")
        else:
            lines.append(f"{name} shares ${a * 2}$ {item} equally among ${2}$ friends. So each friend gets $\\boxed{{{a}}}$.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------

_BPE_VOCAB_SIZE = 1400


def _train_bpe(split_pattern: str):
    """Byte-level BPE over the corpus with the given pre-tokenizer regex."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    # Training in one thread keeps tie-breaking (and so the vocab) reproducible.
    tok.train_from_iterator(_corpus().splitlines(keepends=True), trainer=trainer)
    return tok


@dataclass(frozen=True)
class _TokSpec:
    """Added tokens in id order: (content, special)."""

    added: tuple[tuple[str, bool], ...]
    bos: str | None
    eos: str
    pad: str
    chat_template: str
    add_bos: bool
    model_max_length: int
    additional_special: tuple[str, ...] = ()


def _build_tokenizer(base_json: str, spec: _TokSpec):
    """Copy of a trained BPE tokenizer with the added tokens and post-processor."""
    from tokenizers import AddedToken, Tokenizer, processors

    tok = Tokenizer.from_str(base_json)
    for content, special in spec.added:
        token = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
    if spec.add_bos:
        assert spec.bos is not None
        bos_id = tok.token_to_id(spec.bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos}:0 $A:0",
            pair=f"{spec.bos}:0 $A:0 {spec.bos}:1 $B:1",
            special_tokens=[(spec.bos, bos_id)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _write_tokenizer(folder: Path, tok, spec: _TokSpec) -> dict[str, int]:
    """tokenizer.json + tokenizer_config.json + special_tokens_map.json."""
    tok.save(str(folder / "tokenizer.json"))
    ids = {content: tok.token_to_id(content) for content, _ in spec.added}
    added_decoder = {
        str(ids[content]): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for content, special in spec.added
    }
    config = {
        "add_bos_token": spec.add_bos,
        "add_eos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added_decoder,
        "bos_token": spec.bos,
        "chat_template": spec.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": spec.eos,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": spec.model_max_length,
        "pad_token": spec.pad,
        "split_special_tokens": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": None,
    }
    special_map: dict[str, object] = {"eos_token": spec.eos, "pad_token": spec.pad}
    if spec.bos is not None:
        special_map["bos_token"] = spec.bos
    if spec.additional_special:
        config["additional_special_tokens"] = list(spec.additional_special)
        special_map["additional_special_tokens"] = list(spec.additional_special)
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", special_map)
    return ids


# ---------------------------------------------------------------------------
# Weight helpers
# ---------------------------------------------------------------------------


def _bf16_bytes(arr: np.ndarray) -> bytes:
    """float32 -> bfloat16 (round to nearest even), little-endian bytes."""
    bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def _save_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """Minimal safetensors writer (BF16 or F32), names sorted like torch does."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name], dtype=np.float32)
        data = _bf16_bytes(arr) if dtype == "BF16" else np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for blob in blobs:
            fh.write(blob)


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _pad_vocab(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


# Architecture shared by the tiny models.
HIDDEN = 128
HEADS = 2
KV_HEADS = 1
HEAD_DIM = HIDDEN // HEADS  # 64: vLLM's CPU attention wants 64 or more
LAYERS = 2
INTERMEDIATE = 256
MAX_POSITIONS = 8192
ROPE_THETA = 1_000_000.0

# Residual-stream dimensions with a fixed meaning in the generator models.
_D_CONST = 0  # constant component of every embedding: carries biases / stop logits
_D_MARK = 1  # set on the phase-marker token (<｜Assistant｜>)
_D_SINK = 2  # set on the BOS token: attention sink while no marker is seen
_D_PHASE = 3  # written by layer 0 head 0: "inside an assistant turn"
_D_END = 4  # set on sentence-ending tokens ('.', '?', '$.', ...): stops follow them
_D_FREE = 8  # first dimension of the random content subspace
# Head-0 query/key channel: the lowest RoPE frequency (index 31 of 0..31) of a
# 64-dim head with theta=1e6 turns by < 0.013 rad over 8192 positions, so the
# marker lookup works at any distance.
_QK_DIM = HEAD_DIM // 2 - 1

# The random layer weights are small, so the generators are nearly bigram
# models (plus the phase feature); this keeps their behaviour predictable.
_LAYER_STD = 0.005
_MLP_STD = 0.01
_GREEDY_MARGIN = 0.5  # stop logit over the best token on a greedy cycle
_CONST = 4.0  # embedding value on _D_CONST
_FLAG = 4.0  # embedding value on _D_MARK / _D_SINK


@dataclass(frozen=True)
class _StopSpec:
    """Target logits (before temperature) of the control tokens.

    ``logits[token] = (instruction_phase, assistant_phase, after_sentence_end)``:
    the first two are the logits after an ordinary token, the third is added
    after a sentence-ending token.  Ordinary tokens get a unigram prior plus
    random logits of std ``noise``.
    """

    logits: dict[int, tuple[float, float, float]]
    marker: int | None  # token whose presence switches to the assistant phase
    sink: int | None  # BOS-like token used as attention sink
    quiet: tuple[int, ...]  # tokens after which no stop is likely (e.g. <｜User｜>)
    enders: tuple[int, ...]  # sentence-ending tokens
    # (stop token, in assistant phase?, margin): each must beat the best
    # ordinary logit by margin on every greedy cycle
    greedy_stops: tuple[tuple[int, bool, float], ...] = ()
    noise: float = 2.0
    stop_noise: float = 0.5  # relative std of the random part of control rows
    ender_prior: float = 0.0  # unigram prior of the sentence enders (mean token: 0)
    prior_scale: float = 1.0


def _generator_weights(
    seed: int, vocab: int, pad_vocab: int, unigram: np.ndarray, stop: _StopSpec
) -> dict[str, np.ndarray]:
    """State dict of a shaped, random Qwen2ForCausalLM."""
    rng = np.random.default_rng(seed)
    d, free = HIDDEN, slice(_D_FREE, HIDDEN)
    n_free = HIDDEN - _D_FREE

    def small(*shape: int, std: float = _LAYER_STD) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    # Embeddings: constant + flags + unit-variance random content.
    emb = np.zeros((pad_vocab, d), np.float32)
    emb[:, free] = rng.normal(0.0, 1.0, size=(pad_vocab, n_free))
    emb[:, _D_CONST] = _CONST
    for tid in stop.quiet:
        emb[tid, _D_CONST] = 0.0
    if stop.marker is not None:
        emb[stop.marker, _D_MARK] = _FLAG
    if stop.sink is not None:
        emb[stop.sink, _D_SINK] = _FLAG
    emb[list(stop.enders), _D_END] = _FLAG
    sd: dict[str, np.ndarray] = {"model.embed_tokens.weight": emb}
    rms_flag = np.sqrt((_CONST**2 + _FLAG**2 + n_free) / d)
    n_flag = _FLAG / rms_flag  # normalised flag value seen by layer 0
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        q = small(HEADS * HEAD_DIM, d)
        k = small(KV_HEADS * HEAD_DIM, d)
        v = small(KV_HEADS * HEAD_DIM, d)
        o = small(d, HEADS * HEAD_DIM)
        gate = small(INTERMEDIATE, d, std=_MLP_STD)
        up = small(INTERMEDIATE, d, std=_MLP_STD)
        down = small(d, INTERMEDIATE, std=_MLP_STD)
        q_b = np.zeros(HEADS * HEAD_DIM, np.float32)
        k_b = np.zeros(KV_HEADS * HEAD_DIM, np.float32)
        v_b = np.zeros(KV_HEADS * HEAD_DIM, np.float32)
        # Random parts read and write only the content subspace.
        for w in (q, k, v, gate, up):
            w[:, :_D_FREE] = 0.0
        for w in (o, down):
            w[:_D_FREE, :] = 0.0
        if layer == 0:
            # Head 0: constant query on the slow RoPE channel; the key is large
            # on the marker (score ~25) and moderate on the sink (score ~12),
            # zero elsewhere; the value carries the marker flag, which o_proj
            # writes to _D_PHASE.
            q[:HEAD_DIM, :] = 0.0
            k[_QK_DIM, :] = 0.0
            k[_QK_DIM + HEAD_DIM // 2, :] = 0.0
            v[0, :] = 0.0
            o[:, 0] = 0.0
            qmag = 8.0
            q_b[_QK_DIM] = qmag
            k[_QK_DIM, _D_MARK] = 25.0 * np.sqrt(HEAD_DIM) / (qmag * n_flag)
            k[_QK_DIM, _D_SINK] = 12.0 * np.sqrt(HEAD_DIM) / (qmag * n_flag)
            v[0, _D_MARK] = 1.0 / n_flag
            o[_D_PHASE, 0] = _CONST
        sd[p + "self_attn.q_proj.weight"] = q
        sd[p + "self_attn.q_proj.bias"] = q_b
        sd[p + "self_attn.k_proj.weight"] = k
        sd[p + "self_attn.k_proj.bias"] = k_b
        sd[p + "self_attn.v_proj.weight"] = v
        sd[p + "self_attn.v_proj.bias"] = v_b
        sd[p + "self_attn.o_proj.weight"] = o
        sd[p + "mlp.gate_proj.weight"] = gate
        sd[p + "mlp.up_proj.weight"] = up
        sd[p + "mlp.down_proj.weight"] = down
        sd[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        sd[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    sd["model.norm.weight"] = np.ones(d, np.float32)

    # lm_head.  After the final RMSNorm an ordinary state has
    # h[_D_CONST] ~= c_inst (instruction phase) or h[_D_CONST] ~= h[_D_PHASE]
    # ~= c_asst (assistant phase); the content part has norm ~sqrt(n_free).
    c_inst = _CONST / np.sqrt((_CONST**2 + n_free) / d)
    c_asst = _CONST / np.sqrt((2 * _CONST**2 + n_free) / d)
    head = np.zeros((pad_vocab, d), np.float32)
    head[:, free] = rng.normal(0.0, stop.noise / np.sqrt(n_free), size=(pad_vocab, n_free))
    counts = np.asarray(unigram, np.float64)
    prior = np.log1p(counts)
    prior = stop.prior_scale * (prior - prior[counts > 0].mean())
    prior[counts == 0] = -4.0  # bytes and pieces never seen in the corpus
    # The enders' share of the probability mass, and so the length of a
    # generation, then hardly depends on the temperature.
    prior[list(stop.enders)] = stop.ender_prior
    head[:vocab, _D_CONST] = prior[:vocab] / c_inst
    head[vocab:, :] = 0.0
    head[vocab:, _D_CONST] = -30.0 / c_inst  # padding rows: never sampled
    h_end = _FLAG / np.sqrt((_CONST**2 + _FLAG**2 + n_free) / d)
    for tid, (inst, asst, end) in stop.logits.items():
        head[tid, _D_CONST] = inst / c_inst
        head[tid, _D_PHASE] = (asst - head[tid, _D_CONST] * c_asst) / c_asst
        head[tid, _D_END] = end / h_end
        head[tid, free] *= stop.stop_noise
    if stop.greedy_stops:
        _flag_greedy_cycles(emb, head, vocab, stop)
    sd["lm_head.weight"] = head
    return sd


def _flag_greedy_cycles(emb: np.ndarray, head: np.ndarray, vocab: int, stop: _StopSpec) -> None:
    """Let greedy decoding stop.

    Greedy decoding of this nearly-bigram model follows ``s -> argmax logits(s)``
    and soon cycles among frequent tokens, which are never sentence enders.
    Using the bigram approximation (final hidden state ~ normalised embedding),
    find the cycles of that map and give one token per cycle just enough of the
    ender flag that each ``stop.greedy_stops`` token beats the best ordinary
    token there by its margin.  Greedy runs then stop within a lap; sampling
    stops there too now and then (the ender priors are tuned with this on).
    """
    control = np.array(sorted(stop.logits), dtype=np.int64)
    e = emb[:vocab].astype(np.float64)
    rms = np.sqrt((e**2).mean(1))
    logits = (e / rms[:, None]) @ head[:vocab].astype(np.float64).T
    logits[:, control] = -np.inf
    succ = logits.argmax(1)
    best = logits.max(1)
    is_control = np.zeros(vocab, bool)
    is_control[control] = True
    state = np.zeros(vocab, np.int8)  # 0 new, 1 on the current path, 2 done
    for start in range(vocab):
        path = []
        node = start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = int(succ[node])
        if state[node] == 1:  # closed a new cycle
            cycle = path[path.index(node) :]
            candidates = [t for t in cycle if not is_control[t] and emb[t, _D_END] == 0.0]
            if candidates:
                # the cycle member that needs the smallest flag
                need = [_flag_needed(e[t], best[t], head, stop) for t in candidates]
                k = int(np.argmin(need))
                emb[candidates[k], _D_END] = max(float(need[k]), 0.0)
        for t in path:
            state[t] = 2


def _flag_needed(e: np.ndarray, best: float, head: np.ndarray, stop: _StopSpec) -> float:
    """Ender flag on a token so every greedy stop check beats ``best`` + margin."""
    need = 0.0
    for tid, in_assistant, margin in stop.greedy_stops:
        x = e.copy()
        if in_assistant:
            x[_D_PHASE] = _CONST
        w = head[tid].astype(np.float64)
        # best ordinary logit scales with 1/rms like the stop logit; find the
        # flag f with (w.x + w_end*f) / rms(f) >= best * rms0 / rms(f) + margin
        rms0 = float(np.sqrt((e**2).mean()))
        f = 0.0
        for _ in range(4):
            x[_D_END] = f
            rms = float(np.sqrt((x**2).mean()))
            x[_D_END] = 0.0
            f = (best * rms0 + margin * rms - float(w @ x)) / float(w[_D_END])
        need = max(need, f)
    return need


def _reward_weights(seed: int, vocab: int, pad_id: int) -> dict[str, np.ndarray]:
    """Random weights in ArmoRM's exact layout (the checkpoint's tensor names and shapes).

    Context-sensitive enough that the rewards at the final <|eot_id|> depend on the whole
    conversation, the gating logits spread wide enough (std ~1 after the temperature) that reading
    the gating input at the wrong token changes the score, and a non-identity transform matrix and a
    non-unit logit scale, so a formula that skips either gives other numbers.
    """
    rng = np.random.default_rng(seed)
    d = HIDDEN
    g = REWARD_GATING_HIDDEN_DIM

    def rnd(*shape: int, std: float) -> np.ndarray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    embed = rnd(vocab, d, std=1.0)
    embed[pad_id] = 0.0  # [PAD] is a fresh row, as appended after Llama-3's vocabulary
    sd: dict[str, np.ndarray] = {"model.embed_tokens.weight": embed}
    for layer in range(LAYERS):
        p = f"model.layers.{layer}."
        sd[p + "self_attn.q_proj.weight"] = rnd(HEADS * HEAD_DIM, d, std=0.15)
        sd[p + "self_attn.k_proj.weight"] = rnd(KV_HEADS * HEAD_DIM, d, std=0.15)
        sd[p + "self_attn.v_proj.weight"] = rnd(KV_HEADS * HEAD_DIM, d, std=0.15)
        sd[p + "self_attn.o_proj.weight"] = rnd(d, HEADS * HEAD_DIM, std=0.15)
        sd[p + "mlp.gate_proj.weight"] = rnd(INTERMEDIATE, d, std=0.1)
        sd[p + "mlp.up_proj.weight"] = rnd(INTERMEDIATE, d, std=0.1)
        sd[p + "mlp.down_proj.weight"] = rnd(d, INTERMEDIATE, std=0.1)
        sd[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        sd[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    sd["model.norm.weight"] = np.ones(d, np.float32)
    n_obj = REWARD_NUM_OBJECTIVES
    sd["regression_layer.weight"] = rnd(n_obj, d, std=1.0 / np.sqrt(d))
    fan_in = d
    for i in range(REWARD_GATING_N_HIDDEN):
        sd[f"gating.layers.{i}.weight"] = rnd(g, fan_in, std=np.sqrt(2.0 / fan_in))
        sd[f"gating.layers.{i}.bias"] = rnd(g, std=0.1)
        fan_in = g
    last = REWARD_GATING_N_HIDDEN
    sd[f"gating.layers.{last}.weight"] = rnd(n_obj, g, std=REWARD_GATING_TEMPERATURE / np.sqrt(g))
    sd[f"gating.layers.{last}.bias"] = rnd(n_obj, std=0.5)
    sd["gating.logit_scale"] = np.array([1.7], np.float32)
    sd["reward_transform_matrix"] = (np.eye(n_obj) + rnd(n_obj, n_obj, std=0.3)).astype(np.float32)
    return sd


def _unigram_counts(tok, vocab: int) -> np.ndarray:
    counts = np.zeros(vocab, np.int64)
    for enc in tok.encode_batch(_corpus().splitlines(keepends=True), add_special_tokens=False):
        np.add.at(counts, np.asarray(enc.ids, dtype=np.int64), 1)
    return counts


# ---------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------

_TRANSFORMERS_VERSION = "4.46.0"  # config format written (loads in 4.45+ and 5.x)


def _qwen2_config(vocab: int, bos: int | None, eos: int, pad: int) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "max_window_layers": LAYERS,
        "model_type": "qwen2",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": ROPE_THETA,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": _TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


class _Trained:
    """Lazily trained base BPE tokenizers (JSON), shared by the folders."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def get(self, pattern: str) -> str:
        if pattern not in self._cache:
            self._cache[pattern] = _train_bpe(pattern).to_str()
        return self._cache[pattern]


def _write_generator(
    folder: Path,
    base_json: str,
    spec: _TokSpec,
    seed: int,
    stop_for: Callable[[dict[str, int], tuple[int, ...]], _StopSpec],
    generation_config: Callable[[dict[str, int]], dict],
    name: str,
) -> None:
    tok = _build_tokenizer(base_json, spec)
    ids = _write_tokenizer(folder, tok, spec)
    n_tokens = tok.get_vocab_size(with_added_tokens=True)
    vocab = _pad_vocab(n_tokens)
    bos = ids[spec.bos] if spec.bos is not None else None
    config = _qwen2_config(vocab, bos, ids[spec.eos], ids[spec.pad])
    _write_json(folder / "config.json", config)
    gen = generation_config(ids)
    gen["transformers_version"] = _TRANSFORMERS_VERSION
    _write_json(folder / "generation_config.json", gen)
    unigram = _unigram_counts(tok, n_tokens)
    for content, _ in spec.added:
        unigram[ids[content]] = 0
    enders = _sentence_enders(tok, n_tokens - len(spec.added))
    sd = _generator_weights(seed, n_tokens, vocab, unigram, stop_for(ids, enders))
    _save_safetensors(folder / "model.safetensors", sd, "BF16")
    (folder / "README.md").write_text(
        f"# {name}\n\nTiny random-weight test model written by `magpie_hpc.tiny_models` "
        "(no download). Weights are random but shaped so that sampling stops by itself; "
        "outputs are meaningless.\n",
        encoding="utf-8",
    )


_R1_SPEC = _TokSpec(
    added=(
        (R1_EOS, True),
        (R1_USER, False),
        (R1_ASSISTANT, False),
        (R1_BOS, True),
        (THINK_OPEN, False),
        (THINK_CLOSE, False),
        (R1_PAD, True),
    ),
    bos=R1_BOS,
    eos=R1_EOS,
    pad=R1_PAD,
    chat_template=R1_CHAT_TEMPLATE,
    add_bos=True,
    model_max_length=16384,
)

_CHATML_SPEC = _TokSpec(
    added=((ENDOFTEXT, True), (IM_START, True), (IM_END, True)),
    bos=None,
    eos=IM_END,
    pad=ENDOFTEXT,
    chat_template=CHATML_CHAT_TEMPLATE,
    add_bos=False,
    model_max_length=32768,
    additional_special=(IM_START, IM_END),  # as Qwen2.5 lists them
)

_LLAMA3_SPEC = _TokSpec(
    added=(
        (L3_BOS, True),
        (L3_EOT_TEXT, True),
        (L3_PAD, True),
        (L3_START_HEADER, True),
        (L3_END_HEADER, True),
        (L3_EOT, True),
    ),
    bos=L3_BOS,
    eos=L3_EOT,
    pad=L3_PAD,
    chat_template=LLAMA3_CHAT_TEMPLATE,
    add_bos=True,
    model_max_length=131072,
)

# Stop-logit targets: (instruction phase, assistant phase, bonus after a
# sentence end).  Ordinary tokens have random logits of std 2 around a unigram
# prior; _NEVER means "practically never sampled".
_NEVER = -30.0
R1_STOP_LOGITS = {
    R1_ASSISTANT: (-2.0, _NEVER, 16.0),
    R1_EOS: (-6.0, -2.0, 16.0),
    THINK_CLOSE: (_NEVER, 6.5, 0.0),
}
CHATML_STOP_LOGITS = {
    IM_END: (-2.0, -2.0, 16.0),
    ENDOFTEXT: (-4.0, -4.0, 12.0),
}
R1_ENDER_PRIOR = -0.5
R1_RESPONSE_GREEDY_MARGIN = 0.1
CHATML_ENDER_PRIOR = 0.0


def _sentence_enders(tok, n_bpe: int) -> tuple[int, ...]:
    """BPE tokens whose text ends a sentence ('.', '?', '$.', '}$.', ...)."""
    enders = []
    for tid in range(n_bpe):
        text = tok.decode([tid]).rstrip()
        if text.endswith((".", "?")) and not text.endswith(".."):
            enders.append(tid)
    return tuple(enders)


def _r1_stop(ids: dict[str, int], enders: tuple[int, ...]) -> _StopSpec:
    logits = {ids[name]: value for name, value in R1_STOP_LOGITS.items()}
    for name in (R1_USER, R1_BOS, R1_PAD, THINK_OPEN):
        logits[ids[name]] = (_NEVER, _NEVER, 0.0)
    return _StopSpec(
        logits=logits,
        marker=ids[R1_ASSISTANT],
        sink=ids[R1_BOS],
        quiet=(ids[R1_USER],),
        enders=enders,
        ender_prior=R1_ENDER_PRIOR,
        greedy_stops=((ids[R1_ASSISTANT], False, _GREEDY_MARGIN), (ids[R1_EOS], True, R1_RESPONSE_GREEDY_MARGIN)),
    )


def _chatml_stop(ids: dict[str, int], enders: tuple[int, ...]) -> _StopSpec:
    logits = {ids[name]: value for name, value in CHATML_STOP_LOGITS.items()}
    logits[ids[IM_START]] = (_NEVER, _NEVER, 0.0)
    return _StopSpec(
        logits=logits,
        marker=None,
        sink=None,
        quiet=(),
        enders=enders,
        ender_prior=CHATML_ENDER_PRIOR,
        greedy_stops=((ids[IM_END], False, _GREEDY_MARGIN),),
    )


def _build_deepseek(folder: Path, trained: _Trained) -> None:
    _write_generator(
        folder,
        trained.get(QWEN_SPLIT_PATTERN),
        _R1_SPEC,
        seed=1001,
        stop_for=_r1_stop,
        generation_config=lambda ids: {
            "_from_model_config": True,
            "bos_token_id": ids[R1_BOS],
            "eos_token_id": ids[R1_EOS],
            "do_sample": True,
            "temperature": 0.6,
            "top_p": 0.95,
        },
        name=DEEPSEEK_DIRNAME,
    )


def _build_chatml(folder: Path, trained: _Trained) -> None:
    _write_generator(
        folder,
        trained.get(QWEN_SPLIT_PATTERN),
        _CHATML_SPEC,
        seed=2002,
        stop_for=_chatml_stop,
        generation_config=lambda ids: {
            "bos_token_id": ids[ENDOFTEXT],
            "eos_token_id": [ids[IM_END], ids[ENDOFTEXT]],
            "pad_token_id": ids[ENDOFTEXT],
            "do_sample": True,
            "temperature": 0.7,
            "top_p": 0.8,
            "top_k": 20,
            "repetition_penalty": 1.05,
        },
        name=CHATML_DIRNAME,
    )


# ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1) as published: a custom architecture named by auto_map,
# the Llama-3 (3.0) tokenizer without a pad token, and "[PAD]" appended after the vocabulary,
# known only to config.json's pad_token_id.
ARMORM_ARCHITECTURE = "LlamaForRewardModelWithGating"
ARMORM_PAD = "[PAD]"
REWARD_NUM_OBJECTIVES = 19
REWARD_GATING_HIDDEN_DIM = 64  # the real model: 1024
REWARD_GATING_N_HIDDEN = 3
REWARD_GATING_TEMPERATURE = 10.0
#: The tiny ArmoRM's remote code appends a line to this file (and to REMOTE_CODE_MARKER beside
#: itself) if it is ever imported, before it fails the way the real file does under transformers 5.
REMOTE_CODE_MARKER_ENV = "MAGPIE_TINY_REMOTE_CODE_MARKER"
REMOTE_CODE_MARKER = "REMOTE_CODE_IMPORTED"

_ARMORM_TOK_SPEC = _TokSpec(
    added=(
        (L3_BOS, True),
        (L3_EOT_TEXT, True),
        (L3_START_HEADER, True),
        (L3_END_HEADER, True),
        (L3_EOT, True),
        (ARMORM_PAD, True),  # last: appended after the vocabulary, like ArmoRM's id 128256
    ),
    bos=L3_BOS,
    eos=L3_EOT,
    pad=ARMORM_PAD,  # removed again from the tokenizer files below
    chat_template=LLAMA3_CHAT_TEMPLATE,
    add_bos=True,
    model_max_length=8192,
)

# What ArmoRM's modeling_custom.py does first under transformers 5: import a name that is gone.
# Anything that executes this file leaves a marker, so tests can prove nothing ever does.
_ARMORM_REMOTE_CODE = f'''"""Tiny stand-in for ArmoRM's remote code. The package must never import it."""
import os
import pathlib

for _marker in (os.environ.get("{REMOTE_CODE_MARKER_ENV}"), pathlib.Path(__file__).with_name("{REMOTE_CODE_MARKER}")):
    if _marker:
        try:
            with open(_marker, "a", encoding="utf-8") as _fh:
                _fh.write("modeling_custom imported\\n")
        except OSError:
            pass

import torch.nn as nn  # noqa: E402
from transformers import LlamaModel, LlamaPreTrainedModel  # noqa: E402
from transformers.models.llama.modeling_llama import LLAMA_INPUTS_DOCSTRING  # noqa: E402,F401


class {ARMORM_ARCHITECTURE}(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, config.num_objectives, bias=False)
'''


def _build_reward(folder: Path, trained: _Trained) -> None:
    tok = _build_tokenizer(trained.get(LLAMA3_SPLIT_PATTERN), _ARMORM_TOK_SPEC)
    ids = _write_tokenizer(folder, tok, _ARMORM_TOK_SPEC)
    # Llama-3's tokenizer has no pad token; ArmoRM's [PAD] is named by config.pad_token_id only.
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        data.pop("pad_token", None)
        _write_json(folder / name, data)
    vocab = tok.get_vocab_size(with_added_tokens=True)  # exactly one past the last id, as ArmoRM's
    assert ids[ARMORM_PAD] == vocab - 1
    config = {
        "architectures": [ARMORM_ARCHITECTURE],
        "auto_map": {"AutoModelForSequenceClassification": f"modeling_custom.{ARMORM_ARCHITECTURE}"},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[L3_BOS],
        "eos_token_id": ids[L3_EOT],
        "pad_token_id": ids[ARMORM_PAD],
        "gating_hidden_dim": REWARD_GATING_HIDDEN_DIM,
        "gating_n_hidden": REWARD_GATING_N_HIDDEN,
        "gating_temperature": REWARD_GATING_TEMPERATURE,
        "num_objectives": REWARD_NUM_OBJECTIVES,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": _TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
    _write_json(folder / "config.json", config)
    (folder / "modeling_custom.py").write_text(_ARMORM_REMOTE_CODE, encoding="utf-8")
    _save_safetensors(folder / "model.safetensors", _reward_weights(3003, vocab, ids[ARMORM_PAD]), "F32")
    (folder / "README.md").write_text(
        f"# {REWARD_DIRNAME}\n\nTiny random-weight reward model in ArmoRM's layout "
        f"({ARMORM_ARCHITECTURE}: Llama backbone, {REWARD_NUM_OBJECTIVES} objectives, gating network, "
        "transform matrix; remote code named by auto_map that must never run) written by "
        "`magpie_hpc.tiny_models`. Scores are deterministic but meaningless.\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------------------
# Atomic, idempotent writing
# ---------------------------------------------------------------------------


def _is_complete(folder: Path) -> bool:
    marker = folder / MARKER_FILE
    try:
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("recipe_version") == RECIPE_VERSION


def _remove_stale_temps(out_dir: Path, name: str, max_age_s: float = 3600.0) -> None:
    """Leftovers of crashed writers (old enough not to belong to a live one)."""
    now = time.time()
    for stale in [*out_dir.glob(f".{name}.tmp-*"), *out_dir.glob(f".{name}.old-*")]:
        try:
            if now - stale.stat().st_mtime > max_age_s:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def _write_atomically(folder: Path, build: Callable[[Path], None], overwrite: bool) -> None:
    out_dir = folder.parent
    _remove_stale_temps(out_dir, folder.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=out_dir))
    try:
        build(tmp)
        _write_json(tmp / MARKER_FILE, {"recipe_version": RECIPE_VERSION, "name": folder.name})
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        trash: Path | None = None
        if os.path.lexists(folder):
            if not overwrite and _is_complete(folder):
                return  # another writer finished first
            trash = out_dir / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(folder, trash)
            except FileNotFoundError:
                trash = None
        try:
            os.rename(tmp, folder)
        except OSError:
            if not _is_complete(folder):
                raise
            # Lost a race against a concurrent writer: theirs is complete.
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_tiny_models(out_dir: Path, *, overwrite: bool = False) -> TinyModels:
    """Write (or keep) the three tiny models under ``out_dir`` and return their paths.

    A folder that already holds a complete model of the current recipe is kept
    unless ``overwrite``; each folder is built in a temporary directory and
    renamed into place, with the marker file written last.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = TinyModels(
        deepseek=out_dir / DEEPSEEK_DIRNAME,
        chatml=out_dir / CHATML_DIRNAME,
        reward=out_dir / REWARD_DIRNAME,
    )
    trained = _Trained()
    builders = (
        (models.deepseek, _build_deepseek),
        (models.chatml, _build_chatml),
        (models.reward, _build_reward),
    )
    for folder, builder in builders:
        if not overwrite and _is_complete(folder):
            continue
        _write_atomically(folder, lambda tmp, b=builder: b(tmp, trained), overwrite)
    return models
