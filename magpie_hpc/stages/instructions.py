"""Stage 1: Magpie instructions. The model gets only its pre-query template (BOS + system text +
user header, as token ids) and what it writes is the problem. Every sample is cleaned; the shard
keeps generating until it holds its target of clean, distinct instructions."""

from __future__ import annotations

import math
import time
from collections import Counter

import pyarrow as pa

from ..engine import Sampling
from ..engine.base import RepetitionDetection
from ..errors import MagpieError
from ..plan import derive_seed, instruction_target
from ..quality.cleaning import clean_instruction, normalize_for_dedup
from ..store import kept_instructions
from .base import ShardWork

# Chunks in a row that kept nothing, over at least this many samples, mean a broken model or
# template, not bad luck.
MAX_EMPTY_CHUNKS = 3
MIN_EMPTY_SAMPLES = 200


# A chunk may be up to this many times chunk_size, so that the shard's tail joins the chunk before it
# instead of running alone as a near-empty batch (on a GPU that costs about as long as a full one).
# It also bounds what a preemption loses: the chunk in flight, at most 1.5 chunk_size samples.
MAX_CHUNK_FACTOR = 1.5
# Samples asked beyond what the keep rate says is missing: falling short costs a whole extra round
# for a handful of instructions, 10% more samples in a batch already running costs little.
MARGIN = 1.1


def plan_chunk(missing: int, keep_rate: float, chunk_size: int, per_prompt: int) -> int:
    """Samples for the next chunk, for `missing` clean instructions at `keep_rate`.

    The remaining need is cut into near-equal chunks of about chunk_size (as shard_ranges cuts
    shards): rounding the chunk count keeps each within MAX_CHUNK_FACTOR x chunk_size and plans
    no small last chunk; a need under 1.5 chunks is one chunk. A keep rate below keep_rate / MARGIN
    still leaves a short extra round."""
    need = math.ceil(missing / keep_rate * MARGIN)
    samples = math.ceil(need / max(1, round(need / chunk_size)))
    cap = max(1, math.floor(chunk_size * MAX_CHUNK_FACTOR))
    if cap >= per_prompt:
        cap -= cap % per_prompt
    # Whole requests of n=per_prompt: run_chunk generates ceil(samples / n) * n completions and
    # would throw the excess away; as rows they may be kept instead.
    return min(math.ceil(samples / per_prompt) * per_prompt, cap)


class InstructionsWork(ShardWork):
    stage = "instructions"

    @classmethod
    def recorded_settings(cls, cfg, generator: str, domain: str) -> dict:
        d = cfg.domain(domain)
        return {
            "temperature": d.instruction_temperature,
            "top_p": cfg.instructions.top_p,
            "max_tokens": d.max_tokens_instruction,
            "samples_per_prompt": cfg.instructions.samples_per_prompt,
            "max_difficulty": cfg.instructions.max_difficulty,
            "input_generator": generator,
            "engine": cfg.engine.kind,
        }

    def __init__(self, *args):
        super().__init__(*args)
        self.target = instruction_target(self.cfg, self.shard) + self.ctx.view.topup(self.domain, self.shard.shard)
        self.settings = self.cfg.domain(self.domain)
        self.template, self.prompt_ids = self.ctx.prompts.magpie_prompt(
            self.settings, self.cfg.instructions.max_difficulty
        )

    def round_samples(self) -> int:
        """One round: the samples the target needs at the planning keep rate (throughput.keep_rate),
        in whole requests. `instructions.max_rounds` of them is what a shard may sample."""
        per_prompt = self.cfg.instructions.samples_per_prompt
        need = math.ceil(self.target / self.cfg.throughput.keep_rate * MARGIN)
        return math.ceil(need / per_prompt) * per_prompt

    def _out_of_rounds(self, committed: list[pa.Table], kept: int, sampled: int) -> MagpieError:
        drops = Counter(r for t in committed for r in t["drop_reason"].to_pylist() if r)
        listed = ", ".join(f"{reason} {n}" for reason, n in drops.most_common()) or "none"
        max_rounds = self.cfg.instructions.max_rounds
        return MagpieError(
            f"instructions {self.domain} shard {self.shard.shard}: {kept} of {self.target} clean instructions "
            f"after {sampled} samples ({max_rounds} rounds of {self.round_samples()}, instructions.max_rounds): "
            f"keep rate {kept / sampled:.1%} against the planned {self.cfg.throughput.keep_rate:.0%}; drops: "
            f"{listed}. Check the model's template, stop strings and max_tokens_instruction (see the chunk "
            "files' drop_reason), or raise instructions.max_rounds"
        )

    def next_chunk(self, committed: list[pa.Table]) -> int | None:
        kept = sum(kept_instructions(t) for t in committed)
        if kept >= self.target:
            return None
        empty = []
        for table in reversed(committed):
            if kept_instructions(table):
                break
            empty.append(table.num_rows)
        if len(empty) >= MAX_EMPTY_CHUNKS and sum(empty) >= MIN_EMPTY_SAMPLES:
            raise MagpieError(
                f"instructions {self.domain} shard {self.shard.shard}: the last {len(empty)} chunks "
                f"({sum(empty)} samples) kept no instruction; check the model's template and stop strings "
                "(see the chunk files' drop_reason)"
            )
        sampled = sum(t.num_rows for t in committed)
        budget = self.cfg.instructions.max_rounds * self.round_samples() - sampled
        if budget <= 0:
            raise self._out_of_rounds(committed, kept, sampled)
        # Before any sample the planning estimate is the best guess; after, what this shard kept.
        keep_rate = max(kept / sampled, 0.05) if sampled else self.cfg.throughput.keep_rate
        return min(
            plan_chunk(
                self.target - kept, keep_rate, self.cfg.sharding.chunk_size, self.cfg.instructions.samples_per_prompt
            ),
            budget,
        )

    def _seen(self, committed: list[pa.Table]) -> set[str]:
        return {
            normalize_for_dedup(text) for t in committed for text in t["instruction"].to_pylist() if text is not None
        }

    def run_chunk(self, engine, samples: int, index: int, committed: list[pa.Table]) -> pa.Table:
        per_prompt = min(self.cfg.instructions.samples_per_prompt, samples)
        requests = math.ceil(samples / per_prompt)
        seed = derive_seed(self.cfg.seed, self.stage, self.domain, self.shard.shard, index)
        # Every request of the chunk is the same prompt, and vLLM seeds sample k of a request
        # `seed + k`: one shared seed gives every request the same n texts on a GPU. Request r gets
        # the range seed + r*n .. seed + r*n + n-1 instead. The CPU build drops per-request seeds
        # (there the engine-level seed, which depends on the resume point, decides).
        seeds = [seed + r * per_prompt for r in range(requests)]
        sampling = Sampling(
            temperature=self.settings.instruction_temperature,
            top_p=self.cfg.instructions.top_p,
            max_tokens=self.settings.max_tokens_instruction,
            n=per_prompt,
            stop=self.ctx.prompts.stop_strings,
            stop_token_ids=self.ctx.prompts.stop_token_ids,
            repetition_detection=RepetitionDetection.from_settings(self.cfg.instructions.repetition_detection),
        )
        results = engine.generate([self.prompt_ids] * requests, sampling, seeds)
        seen = self._seen(committed)
        first_sample = sum(t.num_rows for t in committed)
        created = int(time.time())
        rows: dict[str, list] = {
            k: []
            for k in (
                "sample",
                "instruction",
                "raw",
                "drop_reason",
                "answer_cut",
                "finish_reason",
                "prompt_tokens",
                "output_tokens",
                "seed",
                "chunk",
                "created",
            )
        }
        # Each sample with the seed that produced it on a GPU (what gen_input_configs.seed records).
        completions = [
            (r.prompt_tokens, s + k, c) for r, s in zip(results, seeds) for k, c in enumerate(r.completions)
        ][:samples]
        for offset, (prompt_tokens, sample_seed, comp) in enumerate(completions):
            cleaned = clean_instruction(comp.text, comp.finish_reason)
            text, reason = cleaned.text, cleaned.dropped
            if text is not None:
                key = normalize_for_dedup(text)
                if key in seen:
                    text, reason = None, "duplicate"
                else:
                    seen.add(key)
            for key, value in (
                ("sample", first_sample + offset),
                ("instruction", text),
                ("raw", comp.text),
                ("drop_reason", reason),
                ("answer_cut", cleaned.answer_cut),
                ("finish_reason", comp.finish_reason),
                ("prompt_tokens", prompt_tokens),
                ("output_tokens", comp.output_tokens),
                ("seed", sample_seed),
                ("chunk", index),
                ("created", created),
            ):
                rows[key].append(value)
        return pa.table(rows, schema=INSTRUCTION_SCHEMA)


INSTRUCTION_SCHEMA = pa.schema(
    [
        ("sample", pa.int64()),
        ("instruction", pa.string()),
        ("raw", pa.string()),
        ("drop_reason", pa.string()),
        ("answer_cut", pa.bool_()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),
        ("seed", pa.int64()),
        ("chunk", pa.int64()),
        ("created", pa.int64()),
    ]
)
