"""Stages 2 and 3: responses. One class for both: stage 2 samples one answer per instruction at the
domain's temperature, stage 3 samples `num_responses` with `SamplingParams(n=...)`. The prompt is
the model's own chat template with the instruction as the only message (defect 6)."""

from __future__ import annotations

import pyarrow as pa

from ..engine import PromptResult, Request, Sampling
from ..engine.base import FINISH_LENGTH, FINISH_REPETITION, FINISH_STOP, RepetitionDetection
from ..plan import derive_seed
from ..quality.answers import split_reasoning
from .base import ShardWork, rows_done


class ResponsesWork(ShardWork):
    stage = "responses"

    def __init__(self, *args):
        super().__init__(*args)
        selection = self.ctx.selection(self.domain)
        self.items = selection.slice(self.shard.start, self.shard.size).select(["id", "instruction"]).to_pylist()
        # the per-request journal (journal.py): (chunk, position) -> result finished by an earlier
        # attempt, and per chunk the positions the engine is asked for
        self.journaled: dict[tuple[int, int], PromptResult] = {}
        self.request_positions: dict[int, list[int]] = {}
        self.reused = 0

    @classmethod
    def recorded_settings(cls, cfg, generator: str, domain: str) -> dict:
        d = cfg.domain(domain)
        return {
            "temperature": d.response_temperature,
            "top_p": cfg.responses.top_p,
            "repetition_penalty": cfg.responses.repetition_penalty,
            "max_tokens": d.max_tokens_response,
            "n": 1,
            "output_generator": generator,
            "engine": cfg.engine.kind,
        }

    def sampling(self, seed: int) -> Sampling:
        d = self.cfg.domain(self.domain)
        return Sampling(
            temperature=d.response_temperature,
            top_p=self.cfg.responses.top_p,
            max_tokens=d.max_tokens_response,
            n=1,
            repetition_penalty=self.cfg.responses.repetition_penalty,
            stop=self.ctx.prompts.stop_strings,
            stop_token_ids=self.ctx.prompts.stop_token_ids,
            seed=seed,
            repetition_detection=RepetitionDetection.from_settings(self.cfg.responses.repetition_detection),
        )

    def planned_chunks(self, committed: list[pa.Table]) -> list[slice]:
        size, total = self.cfg.sharding.chunk_size, len(self.items)
        return [slice(i, min(i + size, total)) for i in range(rows_done(committed), total, size)]

    def next_chunk(self, committed: list[pa.Table]) -> slice | None:
        return next(iter(self.planned_chunks(committed)), None)

    def _seed(self, index: int) -> int:
        return derive_seed(self.cfg.seed, self.stage, self.domain, self.shard.shard, index)

    def request(self, chunk: slice, index: int) -> Request:
        """The chunk's prompts that no earlier attempt finished (all of them without a journal)."""
        items = self.items[chunk]
        positions = [i for i in range(len(items)) if (index, i) not in self.journaled]
        self.request_positions[index] = positions
        prompts = [self.ctx.prompts.response_prompt(items[i]["instruction"])[1] for i in positions]
        return Request(prompts, self.sampling(self._seed(index)))

    def run_chunk(self, engine, chunk: slice, index: int, committed: list[pa.Table]) -> pa.Table:
        request = self.request(chunk, index)
        return self.to_table(chunk, index, engine.generate(request.prompts, request.sampling))

    def to_table(self, chunk: slice, index: int, results: list[PromptResult]) -> pa.Table:
        items, seed = self.items[chunk], self._seed(index)
        if len(results) < len(items):  # the rest was journaled by an earlier attempt
            fresh = iter(results)
            merged = [self.journaled.get((index, i)) for i in range(len(items))]
            self.reused += sum(r is not None for r in merged)
            results = [r if r is not None else next(fresh) for r in merged]
        reasoning_model = self.ctx.model.template["reasoning"]
        rows: dict[str, list] = {k: [] for k in RESPONSE_SCHEMA.names}
        for item, result in zip(items, results):
            split = [split_reasoning(c.text) for c in result.completions]
            if reasoning_model:  # no </think>: the text is unfinished reasoning, not an answer
                split = [(r, a if r is not None else None) for r, a in split]
            finish = [c.finish_reason for c in result.completions]
            # A reasoning model that never closed </think> gave no answer, whatever vLLM says (defect 7).
            # "length" (cut off) and "repetition" (stopped as a loop) are not answers either.
            complete = [f == FINISH_STOP and (r is not None or not reasoning_model) for f, (r, _) in zip(finish, split)]
            for key, value in (
                ("id", item["id"]),
                ("prompt_tokens", result.prompt_tokens),
                ("responses", [c.text for c in result.completions]),
                ("reasonings", [r for r, _ in split]),
                ("answers", [a for _, a in split]),
                ("finish_reasons", finish),
                ("output_tokens", [c.output_tokens for c in result.completions]),
                ("truncated", [f == FINISH_LENGTH for f in finish]),
                ("looped", [f == FINISH_REPETITION for f in finish]),
                ("complete", complete),
                ("seed", seed),
            ):
                rows[key].append(value)
        return pa.table(rows, schema=RESPONSE_SCHEMA)


class MultiResponsesWork(ResponsesWork):
    stage = "multi_responses"

    @classmethod
    def recorded_settings(cls, cfg, generator: str, domain: str) -> dict:
        m = cfg.multi_responses
        return {
            "temperature": m.temperature,
            "top_p": m.top_p,
            "repetition_penalty": cfg.responses.repetition_penalty,
            "max_tokens": m.max_tokens,
            "n": m.num_responses,
            "output_generator": generator,
            "engine": cfg.engine.kind,
        }

    def sampling(self, seed: int) -> Sampling:
        m = self.cfg.multi_responses
        return Sampling(
            temperature=m.temperature,
            top_p=m.top_p,
            max_tokens=m.max_tokens,
            n=m.num_responses,
            stop=self.ctx.prompts.stop_strings,
            stop_token_ids=self.ctx.prompts.stop_token_ids,
            seed=seed,
            repetition_detection=RepetitionDetection.from_settings(m.repetition_detection),
        )


RESPONSE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("responses", pa.list_(pa.string())),
        ("reasonings", pa.list_(pa.string())),
        ("answers", pa.list_(pa.string())),
        ("finish_reasons", pa.list_(pa.string())),
        ("output_tokens", pa.list_(pa.int64())),
        ("truncated", pa.list_(pa.bool_())),
        ("complete", pa.list_(pa.bool_())),
        ("seed", pa.int64()),
        ("looped", pa.list_(pa.bool_())),  # finish reason "repetition": the engine stopped a loop
    ]
)
