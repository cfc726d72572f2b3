"""What the dataset's files are called and what each of their records holds (SPEC.md's layout):
an instruction, SFT, preference or DPO record shaped from one problem's stage rows.

Every record states the settings that generated it: those recorded with its chunk (or its
instruction shard) win over the run's current config, which a --resume --force may have changed.
"""

from __future__ import annotations

import functools

from ..context import RunContext
from ..generation_settings import shard_settings
from ..models import model_label
from ..pipeline import INSTRUCTIONS
from ..plan import stage_shards
from ..quality.answers import extract_boxed
from ..quality.answers import normalize_answer as _normalize_answer
from ..quality.dpo import DpoPair, choose_pair, dpo_record
from ..quality.equivalence import AnswerVote
from ..trl_files import TextFormats

__all__ = ["RecordShaper", "count_label", "file_names", "final_answers", "title"]

# Each problem's answers are normalised twice (majority and per response) and many repeat.
normalize_answer = functools.lru_cache(maxsize=1 << 16)(_normalize_answer)


def count_label(n: int) -> str:
    """A dataset name's size: 30, 6K."""
    return f"{n // 1000}K" if n % 1000 == 0 and n >= 1000 else str(n)


def title(domain: str) -> str:
    """A domain as in a dataset name: number_theory -> NumberTheory."""
    return domain.replace("_", " ").title().replace(" ", "")


def file_names(domain: str, num_responses: int) -> dict[str, str]:
    """The per-domain files, the preference file named after the configured response count (defect 10)."""
    return {
        "instructions": f"{domain}_ins.json",
        "sft_data": f"{domain}_ins_res.json",
        "preference_data": f"{domain}_ins_{num_responses}res_armorm.json",
        "dpo_data": f"{domain}_dpo.json",
        "sft_text": f"{domain}_sft_text.json",  # TRL standard formats (trl_files.py)
        "dpo_text": f"{domain}_dpo_text.json",
        "info": "dataset_info.json",
    }


def final_answers(answers: list[str | None], complete: list[bool]) -> tuple[list[str | None], list[str | None]]:
    """(raw, normalised) last \\boxed{} of each complete response's answer part; None when it has none."""
    raw = [extract_boxed(a) if ok and a else None for a, ok in zip(answers, complete)]
    return raw, [(normalize_answer(b) or None) if b is not None else None for b in raw]


class RecordShaper:
    """The records of one domain's files, from the rows the stages committed for a problem:
    `selected` (select's copy of the instruction), the responses row, the rewards row."""

    def __init__(self, ctx: RunContext, domain: str):
        self.ctx, self.cfg, self.domain = ctx, ctx.cfg, domain
        self.settings = self.cfg.domain(domain)
        # Each instruction shard's recorded settings (its newest, where a --force change split it).
        self.instruction_settings = {
            r.shard: (shard_settings(ctx.store.shard(INSTRUCTIONS, domain, r.shard)) or [None])[-1]
            for r in stage_shards(self.cfg, INSTRUCTIONS, domain)
        }
        self.texts = ctx.template_texts
        self.pre_query = self.texts.pre_query[domain]
        # A run.json from before the EOS text was frozen needs the tokenizer once for it.
        self.formats = TextFormats(
            self.texts, ctx.model.family, self.texts.eos_token or ctx.prompts.tokenizer.eos_token
        )
        self.reward_label = model_label(ctx.reward_path)

    def instruction(self, row: dict) -> dict:
        """The instruction record, which every other record of the problem starts from."""
        # The settings the instruction shard recorded when it generated this instruction; the run's
        # current config only for a run from before settings were recorded.
        made = self.instruction_settings.get(row.get("source_shard")) or {}
        return {
            "id": row["id"],
            "pre_query_template": self.pre_query,
            "instruction": row["instruction"],
            "response": None,
            "created": row["created"],
            "gen_input_configs": {
                "temperature": made.get("temperature", self.settings.instruction_temperature),
                "top_p": made.get("top_p", self.cfg.instructions.top_p),
                "input_generator": model_label(made.get("input_generator", self.ctx.model.name)),
                "seed": row["seed"],
                "domain": self.domain,
                "max_tokens": made.get("max_tokens", self.settings.max_tokens_instruction),
            },
            "gen_response_configs": None,
            "instruction_tokens": row["instruction_tokens"],
        }

    def _response_configs(
        self, temperature: float, top_p: float, max_tokens: int, n: int, seed: int, made: dict | None = None
    ) -> dict:
        """`made`: the settings recorded with the chunk that generated the row; they win over the
        run's current config (which a --resume --force may have changed since)."""
        made = made or {}
        return {
            "prompt": self.texts.response_prompt,
            "temperature": made.get("temperature", temperature),
            "top_p": made.get("top_p", top_p),
            "repetition_penalty": made.get("repetition_penalty", self.cfg.responses.repetition_penalty),
            "max_tokens": made.get("max_tokens", max_tokens),
            "stop_tokens": list(self.texts.stop_strings),
            "output_generator": model_label(made.get("output_generator", self.ctx.model.name)),
            "engine": made.get("engine", self.cfg.engine.kind),
            "n": made.get("n", n),
            "seed": seed,
        }

    def sft(self, selected: dict, row: dict) -> tuple[dict, dict]:
        """The SFT record (the seed's keys) and its TRL prompt-completion twin, of a complete response."""
        record = self.instruction(selected)
        record.update(
            response=row["responses"][0],
            gen_response_configs=self._response_configs(
                self.settings.response_temperature,
                self.cfg.responses.top_p,
                self.settings.max_tokens_response,
                1,
                row["seed"],
                row.get("_settings"),
            ),
            reasoning=row["reasonings"][0],
            answer=row["answers"][0],
            finish_reason=row["finish_reasons"][0],
            prompt_tokens=row["prompt_tokens"],
            output_tokens=row["output_tokens"][0],
            truncated=row["truncated"][0],
        )
        return record, self.formats.sft_record(row["id"], selected["instruction"], row["responses"][0])

    def preference(self, selected: dict, row: dict, score_row: dict, vote: AnswerVote) -> dict:
        """The preference record: every response with its score, finish, final answer and the vote."""
        m = self.cfg.multi_responses
        _, normalized = final_answers(row["answers"], row["complete"])
        record = self.instruction(selected)
        del record["response"]
        record.update(
            responses=row["responses"],
            gen_response_configs=self._response_configs(
                m.temperature, m.top_p, m.max_tokens, m.num_responses, row["seed"], row.get("_settings")
            ),
            rewards_armorm=[{"score": s} for s in score_row["scores"]],
            scores=score_row["scores"],
            reward_model=self.reward_label,
            reward_scored_part=score_row["scored_part"],
            reasonings=row["reasonings"],
            answers=row["answers"],
            finish_reasons=row["finish_reasons"],
            prompt_tokens=row["prompt_tokens"],
            output_tokens=row["output_tokens"],
            truncated=row["truncated"],
            complete=row["complete"],
            final_answers=normalized,
            majority_answer=vote.majority_answer,
            agreement=vote.agreement,
            answers_agree=vote.answers_agree,
        )
        return record

    def dpo(
        self, instruction: str, row: dict, scores: list[float]
    ) -> tuple[tuple[DpoPair, dict, dict] | None, str | None]:
        """((pair, conversational record, TRL standard-format record), None), or (None, why the
        problem gives no pair): quality/dpo.py's rule."""
        # A DPO side must be complete and hold a non-empty answer part.
        usable = [bool(ok and a and a.strip()) for ok, a in zip(row["complete"], row["answers"])]
        pair, reason = choose_pair(row["responses"], scores, usable, self.cfg.quality.dpo_min_margin)
        if pair is None:
            return None, reason
        conversational = dpo_record(row["id"], instruction, row["responses"], pair)
        return (
            pair,
            conversational,
            self.formats.dpo_record(conversational, instruction, row["responses"], pair),
        ), None
