"""Benchmark 2: reward scoring, batched and length-sorted vs one response per forward pass.

`TransformersScorer.score` (the package: conversations sorted by length, batches grown up to
`rewards.batch_tokens` padded tokens, right padding with an attention mask) against the original's
way (one conversation per forward pass, no padding), on the package's reward-tiny (ArmoRM's
layout, run by the package's own LlamaForRewardModelWithGating) with the same tokenizer and chat
template. Both include encoding.

Two workloads, R1-style responses from the synthetic engine's text generator (7 per problem):
  answer  what the pipeline scores by default (`rewards.score_reasoning = false`): the answer part
  full    reasoning + answer (`score_reasoning = true`): long and of very different lengths

Figures: max |batched - single| over all scores (asserted <= 1e-3) and the speed ratio
(single time / batched time), medians of interleaved repetitions.

Usage: python bench/reward_scoring.py [--quick] [--problems N] [--reps N]
"""

from __future__ import annotations

import argparse
import time

from _common import median, quick_flag, table, tiny_models, write_results


def conversations(problems: int, part: str) -> list[list[dict]]:
    from magpie_hpc.engine.synthetic import _instruction, _response, _rng
    from magpie_hpc.quality.answers import split_reasoning

    convs = []
    for p in range(problems):
        instruction = _instruction(_rng("instruction", p))
        for r in range(7):
            text = _response(_rng("response", p, r))
            _, answer = split_reasoning(text)
            convs.append(
                [
                    {"role": "user", "content": instruction},
                    {"role": "assistant", "content": text if part == "full" else answer},
                ]
            )
    return convs


def single(scorer, convs) -> list[float]:
    """The original's scorer: one conversation per forward pass (a batch of one has no padding)."""
    return [scorer.score([conv])[0] for conv in convs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--problems", type=int, help="problems (x7 responses) per workload")
    p.add_argument("--reps", type=int)
    args = p.parse_args()
    quick = args.quick or quick_flag()
    problems = args.problems or (24 if quick else 64)
    reps = args.reps or (2 if quick else 3)

    import torch

    from magpie_hpc.config import RewardStageConfig
    from magpie_hpc.engine.reward_engine import TransformersScorer

    models = tiny_models()
    defaults = RewardStageConfig()
    scorer = TransformersScorer(
        str(models.reward), max_length=defaults.max_length, batch_tokens=defaults.batch_tokens, dtype="bfloat16"
    )
    results, rows = {}, []
    for part in ("answer", "full"):
        convs = conversations(problems, part)
        lengths = [len(scorer._encode(c)) for c in convs]
        scorer.score(convs[:8]), single(scorer, convs[:8])  # warm-up
        times = {"batched": [], "single": []}
        for _ in range(reps):  # interleaved: batched, single, batched, single, ...
            t = time.monotonic()
            batched_scores = scorer.score(convs)
            times["batched"].append(time.monotonic() - t)
            t = time.monotonic()
            single_scores = single(scorer, convs)
            times["single"].append(time.monotonic() - t)
        diff = max(abs(a - b) for a, b in zip(batched_scores, single_scores))
        assert diff <= 1e-3, f"{part}: batched and single scores differ by {diff}"
        ratio = median([s / b for s, b in zip(times["single"], times["batched"])])
        results[part] = {
            "conversations": len(convs),
            "tokens_min_median_max": [min(lengths), int(median(lengths)), max(lengths)],
            "tokens_total": sum(lengths),
            "batched_seconds": [round(x, 3) for x in times["batched"]],
            "single_seconds": [round(x, 3) for x in times["single"]],
            "speedup_median": round(ratio, 2),
            "max_abs_diff": diff,
        }
        rows.append(
            [
                part,
                len(convs),
                f"{min(lengths)}/{int(median(lengths))}/{max(lengths)}",
                f"{median(times['batched']):.2f}",
                f"{median(times['single']):.2f}",
                f"**{ratio:.1f}x**",
                f"{diff:.1e}",
            ]
        )
    print(
        table(
            [
                "scored part",
                "conversations",
                "tokens min/median/max",
                "batched s",
                "one-per-pass s",
                "speed ratio",
                "max abs diff",
            ],
            rows,
        )
    )
    write_results(
        "reward_scoring",
        {
            "quick": quick,
            "reps": reps,
            "problems": problems,
            "batch_tokens": defaults.batch_tokens,
            "torch_threads": torch.get_num_threads(),
            "device": scorer.device,
            "workloads": results,
        },
    )


if __name__ == "__main__":
    main()
