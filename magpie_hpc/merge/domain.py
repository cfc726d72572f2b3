"""One domain's merge: its stages' committed rows, streamed together in id order, written as the
domain's files (records.py says what a record holds), with the counts, quality figures and plot
samples collected on the way; dataset_info.json last.

Memory holds one committed chunk per stream and one output batch per table, whatever the domain's
size; every shard must hold exactly its range's ids, once each, in order.
"""

from __future__ import annotations

import contextlib
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..context import RunContext
from ..errors import IncompleteRunError
from ..models import model_label
from ..pipeline import INSTRUCTIONS, MULTI_RESPONSES, RESPONSES, REWARDS, SELECT
from ..plan import instruction_id, stage_shards
from ..quality.dpo import SKIP_REASONS
from ..quality.equivalence import EquivalenceChecker, EquivalenceStats, vote_stream
from ..quality.loops import ends_in_loop
from ..report.card import CARD_CONFIGS
from ..report.plots import DomainSamples
from ..report.quality import domain_flags, quality_figures
from ..store import write_json_atomic
from ..trl_files import empty_tables, model_revision
from .records import RecordShaper, count_label, file_names, final_answers, title
from .writer import TableWriter

__all__ = ["DomainMerger", "LoopCount", "loop_figures", "stage_rows"]


class LoopCount:
    """A response file's loops: stopped by the engine (finish reason "repetition") and, among those cut
    off at max_tokens, how many end in a repeated block (quality/loops.py) versus merely ran long."""

    def __init__(self) -> None:
        self.responses = self.stopped = self.cut_looping = self.cut_long = 0

    def add(self, finish_reasons: list[str], texts: list[str]) -> None:
        for finish, text in zip(finish_reasons, texts):
            self.responses += 1
            if finish == "repetition":
                self.stopped += 1
            elif finish == "length":
                if ends_in_loop(text):
                    self.cut_looping += 1
                else:
                    self.cut_long += 1

    def stats(self, prefix: str) -> dict:
        return {
            f"{prefix}_stopped_as_loops": self.stopped,
            f"{prefix}_cut_off_looping": self.cut_looping,
            f"{prefix}_cut_off_long": self.cut_long,
        }

    def figures(self) -> dict:
        return {
            "responses": self.responses,
            "stopped_as_loops": self.stopped,
            "loop_stop_rate": round(self.stopped / self.responses, 4) if self.responses else 0.0,
            "cut_off_looping": self.cut_looping,
            "cut_off_long": self.cut_long,
        }


def loop_figures(loops: dict[str, LoopCount], cfg) -> dict:
    """dataset_info.json's `quality.loops`: per response file, and whether the engine's stop was on."""
    figures = {name: count.figures() for name, count in loops.items()}
    figures["detection"] = {
        "sft": cfg.responses.repetition_detection.enabled,
        "preference": cfg.multi_responses.repetition_detection.enabled,
    }
    return figures


def stage_rows(ctx: RunContext, stage: str, domain: str) -> Iterator[dict]:
    """A stage's rows of one domain in id order, one committed chunk in memory at a time; raises
    unless every shard holds exactly its range's ids, once each, in order."""
    for shard in stage_shards(ctx.cfg, stage, domain):
        store = ctx.store.shard(stage, domain, shard.shard)
        wrong = IncompleteRunError(
            f"merge: {stage} {domain} shard {shard.shard} does not hold exactly ids "
            f"{instruction_id(domain, shard.start)}..{instruction_id(domain, shard.stop - 1)} once each; "
            "delete that shard folder and resubmit"
        )
        index = shard.start
        records = store.chunk_records()
        for chunk in store.committed_indices():
            table, record = store.read_chunk(chunk, records)  # checked against its commit record
            settings = record.get("settings")
            for row in table.to_pylist():
                if index >= shard.stop or row["id"] != instruction_id(domain, index):
                    raise wrong
                row["_settings"] = settings  # what generated it (provenance.py); None before records
                yield row
                index += 1
        if index != shard.stop:
            raise wrong


class DomainMerger:
    """One domain's files under `out_root/<domain>`; `run()` writes them and returns its dataset_info."""

    def __init__(
        self,
        ctx: RunContext,
        domain: str,
        generation_date: str,
        out_root: Path | None = None,
        checker: EquivalenceChecker | None = None,
    ):
        self.ctx, self.cfg, self.domain, self.date = ctx, ctx.cfg, domain, generation_date
        self.checker = checker  # shared by the domains of one merge: its workers start once
        self.settings = self.cfg.domain(domain)
        self.out = (out_root or ctx.run_dir) / domain
        self.names = file_names(domain, self.cfg.multi_responses.num_responses)
        self.records = RecordShaper(ctx, domain)
        self.generator = model_label(ctx.model.name)
        self.stats: dict = {}
        self.samples = DomainSamples()  # small numbers for the plots, collected while streaming
        self.quality: dict = {}
        self.loops: dict[str, LoopCount] = {}

    def _with_instructions(self, *stages: str) -> Iterator[tuple[dict, ...]]:
        """(selected instruction, row of each stage) per problem, in id order."""
        streams = [stage_rows(self.ctx, SELECT, self.domain)]
        streams += [stage_rows(self.ctx, stage, self.domain) for stage in stages]
        # stage_rows checks each stream's ids against the plan, so equal lengths mean equal ids
        return zip(*streams, strict=True)

    def write_instructions(self) -> None:
        with TableWriter(self.out / self.names["instructions"]) as writer:
            for (row,) in self._with_instructions():
                writer.write(self.records.instruction(row))
                self.samples.instruction_tokens.append(row["instruction_tokens"])
        self.stats["instructions"] = writer.count

    def write_sft(self) -> None:
        excluded = 0
        loops = LoopCount()
        with (
            TableWriter(self.out / self.names["sft_data"]) as writer,
            TableWriter(self.out / self.names["sft_text"]) as text_writer,
        ):
            for selected, row in self._with_instructions(RESPONSES):
                self.samples.sft_response_tokens.append(row["output_tokens"][0])
                loops.add(row["finish_reasons"], row["responses"])
                if not row["complete"][0]:  # truncated, looped or answerless responses stay out of SFT (defect 7)
                    excluded += 1
                    continue
                record, text = self.records.sft(selected, row)
                writer.write(record)
                text_writer.write(text)
        self.stats.update(sft_records=writer.count, sft_excluded_incomplete=excluded, **loops.stats("sft"))
        self.loops["sft"] = loops

    def write_preference(self) -> None:
        """The preference file and, from the same stream, the DPO file (quality/dpo.py's rule)."""
        m, q = self.cfg.multi_responses, self.cfg.quality
        truncated = total = disagreeing = 0
        loops = LoopCount()
        agreements = array("d")
        skipped = dict.fromkeys((*SKIP_REASONS, "disagreeing"), 0)
        # Answers grouped by equivalence (quality/equivalence.py), a window of problems at a time.
        equivalence = EquivalenceStats(enabled=q.answer_equivalence)
        checker = self.checker
        if checker is None and q.answer_equivalence:
            checker = EquivalenceChecker(q.equivalence_timeout_s, q.equivalence_workers)
        restarts = checker.restarts if checker is not None else 0
        voted = vote_stream(
            self._with_instructions(MULTI_RESPONSES, REWARDS),
            lambda rows: final_answers(rows[1]["answers"], rows[1]["complete"]),
            checker,
            equivalence,
        )
        with (
            TableWriter(self.out / self.names["preference_data"]) as writer,
            TableWriter(self.out / self.names["dpo_data"]) as dpo,
            TableWriter(self.out / self.names["dpo_text"]) as dpo_text,
            contextlib.ExitStack() as stack,
        ):
            if checker is not None and checker is not self.checker:
                stack.callback(checker.close)
            for (selected, row, score_row), vote in voted:
                scores = score_row["scores"]
                if len(scores) != len(row["responses"]) or len(scores) != m.num_responses:
                    raise IncompleteRunError(
                        f"merge: {row['id']} has {len(row['responses'])} responses and "
                        f"{len(scores)} scores, expected {m.num_responses}"
                    )
                truncated += sum(row["truncated"])
                total += len(row["truncated"])
                loops.add(row["finish_reasons"], row["responses"])
                self.samples.preference_response_tokens.extend(row["output_tokens"])
                self.samples.scores.extend(scores)
                agreements.append(vote.agreement)
                disagreeing += not vote.answers_agree
                if not vote.answers_agree and q.drop_disagreeing:
                    skipped["disagreeing"] += 1
                    continue
                writer.write(self.records.preference(selected, row, score_row, vote))
                shaped, reason = self.records.dpo(selected["instruction"], row, scores)
                if shaped is None:
                    skipped[reason] += 1
                    continue
                pair, conversational, text = shaped
                dpo.write(conversational)
                dpo_text.write(text)
                self.samples.margins.append(pair.margin)
        self.stats.update(
            preference_records=writer.count,
            preference_truncation_rate=round(truncated / total, 4) if total else 0.0,
            answers_disagreeing=disagreeing,
            preference_dropped_disagreeing=skipped["disagreeing"],
            dpo_pairs=dpo.count,
            **{f"dpo_skipped_{k}": v for k, v in skipped.items()},
            **loops.stats("preference"),
        )
        self.loops["preference"] = loops
        equivalence.worker_restarts = checker.restarts - restarts if checker is not None else 0
        self.stats.update(
            answers_compared_by_value=equivalence.answers_by_value,
            answers_compared_as_strings=equivalence.answers_by_string,
        )
        self.quality = dict(
            truncated=truncated,
            responses=total,
            agreements=agreements,
            disagreeing=disagreeing,
            dropped_disagreeing=skipped["disagreeing"],
            dpo_pairs=dpo.count,
            dpo_skipped=skipped,
            equivalence=equivalence.to_json(),
        )

    def quality_section(self) -> dict:
        """dataset_info.json's `quality`: what `python -m magpie_hpc report` prints, flags included."""
        drop_reasons: Counter = Counter()
        for shard in stage_shards(self.cfg, INSTRUCTIONS, self.domain):
            done = self.ctx.view.done(INSTRUCTIONS, self.domain, shard.shard) or {}
            drop_reasons.update(done.get("drop_reasons", {}))
        duplicates = self.ctx.view.duplicates(self.domain)
        figures = quality_figures(
            problems=self.settings.count,
            duplicates=duplicates,
            drop_reasons=drop_reasons,
            sft_excluded=self.stats["sft_excluded_incomplete"],
            decontamination=self.ctx.view.decontamination(self.domain),
            **self.quality,
        )
        figures["loops"] = loop_figures(self.loops, self.cfg)
        self.stats.update(
            exact_duplicates_dropped=figures["exact_duplicates_dropped"],
            near_duplicates_dropped=figures["near_duplicates_dropped"],
            benchmark_problems_dropped=figures["decontamination"]["dropped"],
        )
        figures["flags"] = domain_flags(self.domain, figures, self.cfg.quality)
        return figures

    def dataset_info(self) -> dict:
        s, m = self.settings, self.cfg.multi_responses
        return {
            "dataset_name": f"Magpie-{title(self.domain)}-HLE-{count_label(s.count)}",
            "model": self.generator,
            "model_revision": model_revision(self.ctx.manifest, "model"),
            "domain": self.domain,
            "problem_count": s.count,
            "description": s.description,
            "generation_date": self.date,
            "parameters": {
                "instruction_temperature": s.instruction_temperature,
                "response_temperature": s.response_temperature,
                "max_tokens_instruction": s.max_tokens_instruction,
                "max_tokens_response": s.max_tokens_response,
                "num_preference_responses": m.num_responses,
                "preference_temperature": m.temperature,
                "preference_top_p": m.top_p,
                "advanced_reasoning_mode": self.cfg.instructions.max_difficulty,
                "reward_model": self.records.reward_label,
                "reward_model_revision": model_revision(self.ctx.manifest, "reward_model"),
                "reward_scored_part": "full" if self.cfg.rewards.score_reasoning else "answer",
                "seed": self.cfg.seed,
                "quality_settings": self.cfg.quality.model_dump(),
            },
            "files": {k: v for k, v in self.names.items() if k != "info"},
            "counts": self.stats,
            "quality": self.quality_section(),
            "empty_tables": empty_tables(self.names, self.stats, {key: count for _, key, count in CARD_CONFIGS}),
        }

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_instructions()
        self.write_sft()
        self.write_preference()
        info = self.dataset_info()
        write_json_atomic(self.out / self.names["info"], info)
        return info
