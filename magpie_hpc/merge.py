"""The merge: every shard's chunks -> the dataset layout users load (SPEC.md), nothing else.

Streams every stage one committed chunk at a time, row by row in id order, so memory is bounded by
one chunk and one output batch whatever the run's size. Before writing, it proves the run complete:
every shard done; while writing, that every id of every range is present exactly once, in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .context import RunContext
from .errors import IncompleteRunError
from .pipeline import INSTRUCTIONS, MERGE, MERGE_KEY, MULTI_RESPONSES, PIPELINE, RESPONSES, REWARDS, SELECT, STAGE_NAMES
from .plan import instruction_id, stage_shards
from .provenance import stage_gpus
from .quality.answers import extract_boxed
from .quality.answers import normalize_answer as _normalize_answer
from .quality.dpo import SKIP_REASONS, choose_pair, dpo_record
from .quality.equivalence import EquivalenceChecker, EquivalenceStats, vote_stream
from .quality.loops import ends_in_loop
from .report.card import CARD_CONFIGS, render_readme
from .report.plots import DomainSamples, write_plots
from .report.quality import domain_flags, quality_figures
from .run_summary import build_run_summary, render_run_summary
from .stages.select import read_decontamination, read_duplicates
from .store import RunStore, inside, write_atomic, write_json_atomic
from .generation_settings import shard_settings
from .publish import Staging, merge_lock
from .models import model_label
from .trl_files import TextFormats, empty_tables, model_revision

# An output batch goes to Parquet (one row group) at whichever comes first: a preference record is
# ~100 KB of text, an instruction record ~1 KB, so a row cap alone would either bloat memory or
# write tiny row groups.
BATCH_ROWS = 8192
BATCH_BYTES = 32 << 20
PLOTS_DIR = "plots"

# Each problem's answers are normalised twice (majority and per response) and many repeat.
normalize_answer = functools.lru_cache(maxsize=1 << 16)(_normalize_answer)
# msgspec writes the same JSON as json.dumps(indent=2, ensure_ascii=False) (floats may be spelled
# differently, same values) about 3.5x faster: json's indenting encoder is pure Python, and it was
# most of the merge's time (BENCHMARKS.md, merge at scale).
_encode = msgspec.json.Encoder().encode


def _null_to_string(dtype: pa.DataType) -> pa.DataType:
    """Columns that were all None in the first batch get a string type, so later values fit."""
    if pa.types.is_null(dtype):
        return pa.string()
    if pa.types.is_list(dtype):
        return pa.list_(_null_to_string(dtype.value_type))
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _null_to_string(f.type)) for f in dtype])
    return dtype


class TableWriter:
    """One output table written twice, as a JSON array (indent 2, like the original) and as Parquet,
    record batch by record batch. Both appear under their final names only when complete."""

    def __init__(self, json_path: Path):
        self.json_path, self.parquet_path = json_path, json_path.with_suffix(".parquet")
        self._tmp_json = json_path.with_name(f".{json_path.name}.{uuid.uuid4().hex}.tmp")
        self._tmp_parquet = json_path.with_name(f".{self.parquet_path.name}.{uuid.uuid4().hex}.tmp")
        self._json = open(self._tmp_json, "wb")
        self._json.write(b"[")
        self._parquet: pq.ParquetWriter | None = None
        self._batch: list[dict] = []
        self._batch_bytes = 0
        self.count = 0

    def write(self, record: dict) -> None:
        # Formatted as the one element of a list, the record comes indented as inside the file's
        # array: b'[\n  {...}\n]' minus the brackets is the element.
        text = msgspec.json.format(_encode((record,)), indent=2)[2:-2]
        self._json.write((b"\n" if self.count == 0 else b",\n") + text)
        self.count += 1
        self._batch.append(record)
        self._batch_bytes += len(text)
        if len(self._batch) >= BATCH_ROWS or self._batch_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._parquet is None:
            inferred = pa.Table.from_pylist(self._batch).schema
            schema = pa.schema([pa.field(f.name, _null_to_string(f.type)) for f in inferred])
            self._parquet = pq.ParquetWriter(self._tmp_parquet, schema, compression="zstd")
        self._parquet.write_table(pa.Table.from_pylist(self._batch, schema=self._parquet.schema))
        self._batch, self._batch_bytes = [], 0

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._json.close()  # failed half-way: leave no temporary files behind
        if self._parquet is not None:
            self._parquet.close()
        for tmp in (self._tmp_json, self._tmp_parquet):
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._flush()
        self._json.write(b"\n]\n" if self.count else b"]\n")
        self._json.flush()
        os.fsync(self._json.fileno())
        self._json.close()
        if self._parquet is None:
            # No Parquet file for an empty table: `datasets` refuses every Parquet file without rows
            # (whatever its schema), and one such file breaks a glob over all domains. The JSON `[]`
            # stays (the seed's contract); a stale twin from an earlier merge goes.
            os.replace(self._tmp_json, self.json_path)
            self.parquet_path.unlink(missing_ok=True)
            return
        self._parquet.close()
        os.replace(self._tmp_json, self.json_path)
        os.replace(self._tmp_parquet, self.parquet_path)


def _fmt_count(n: int) -> str:
    return f"{n // 1000}K" if n % 1000 == 0 and n >= 1000 else str(n)


def _title(domain: str) -> str:
    return domain.replace("_", " ").title().replace(" ", "")


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
        return {f"{prefix}_stopped_as_loops": self.stopped, f"{prefix}_cut_off_looping": self.cut_looping,
                f"{prefix}_cut_off_long": self.cut_long}

    def figures(self) -> dict:
        return {"responses": self.responses, "stopped_as_loops": self.stopped,
                "loop_stop_rate": round(self.stopped / self.responses, 4) if self.responses else 0.0,
                "cut_off_looping": self.cut_looping, "cut_off_long": self.cut_long}


def loop_figures(loops: dict[str, LoopCount], cfg) -> dict:
    """dataset_info.json's `quality.loops`: per response file, and whether the engine's stop was on."""
    figures = {name: count.figures() for name, count in loops.items()}
    figures["detection"] = {"sft": cfg.responses.repetition_detection.enabled,
                            "preference": cfg.multi_responses.repetition_detection.enabled}
    return figures


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


def missing_shards(ctx: RunContext) -> list[str]:
    """Every shard of every stage that has no done marker, as `stage domain shard` strings."""
    missing = []
    for domain in ctx.cfg.domains:
        for stage in STAGE_NAMES:
            for shard in stage_shards(ctx.cfg, stage, domain):
                store = ctx.store.shard(stage, domain, shard.shard)
                if store.done() is None:
                    missing.append(f"{stage} {domain} shard {shard.shard}")
                # Sizes here for what stage_rows streams (it checks each chunk's sha256 as it reads it);
                # instruction chunks are not streamed, so their hashes are checked here.
                elif damage := store.damage(full=stage == INSTRUCTIONS):
                    missing.append(f"{damage[0]} (damaged)")
    return missing


def stage_rows(ctx: RunContext, stage: str, domain: str) -> Iterator[dict]:
    """A stage's rows of one domain in id order, one committed chunk in memory at a time; raises
    unless every shard holds exactly its range's ids, once each, in order."""
    for shard in stage_shards(ctx.cfg, stage, domain):
        store = ctx.store.shard(stage, domain, shard.shard)
        wrong = IncompleteRunError(
            f"merge: {stage} {domain} shard {shard.shard} does not hold exactly ids "
            f"{instruction_id(domain, shard.start)}..{instruction_id(domain, shard.stop - 1)} once each; "
            "delete that shard folder and resubmit")
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
    def __init__(self, ctx: RunContext, domain: str, generation_date: str, out_root: Path | None = None,
                 checker: EquivalenceChecker | None = None):
        self.ctx, self.cfg, self.domain, self.date = ctx, ctx.cfg, domain, generation_date
        self.checker = checker  # shared by the domains of one merge: its workers start once
        self.settings = self.cfg.domain(domain)
        self.out = (out_root or ctx.run_dir) / domain
        # Each instruction shard's recorded settings (its newest, where a --force change split it).
        self.instruction_settings = {
            r.shard: (shard_settings(ctx.store.shard(INSTRUCTIONS, domain, r.shard)) or [None])[-1]
            for r in stage_shards(self.cfg, INSTRUCTIONS, domain)}
        self.names = file_names(domain, self.cfg.multi_responses.num_responses)
        self.texts = ctx.template_texts
        self.pre_query = self.texts.pre_query[domain]
        # A run.json from before the EOS text was frozen needs the tokenizer once for it.
        self.formats = TextFormats(self.texts, ctx.model.family,
                                   self.texts.eos_token or ctx.prompts.tokenizer.eos_token)
        self.generator, self.reward_label = model_label(ctx.model.name), model_label(ctx.reward_path)
        self.stats: dict = {}
        self.samples = DomainSamples()  # small numbers for the plots, collected while streaming
        self.quality: dict = {}
        self.loops: dict[str, LoopCount] = {}

    def _base(self, row: dict) -> dict:
        # The settings the instruction shard recorded when it generated this instruction; the run's
        # current config only for a run from before settings were recorded.
        made = self.instruction_settings.get(row.get("source_shard")) or {}
        return {
            "id": row["id"], "pre_query_template": self.pre_query, "instruction": row["instruction"],
            "response": None, "created": row["created"],
            "gen_input_configs": {
                "temperature": made.get("temperature", self.settings.instruction_temperature),
                "top_p": made.get("top_p", self.cfg.instructions.top_p),
                "input_generator": model_label(made.get("input_generator", self.ctx.model.name)), "seed": row["seed"],
                "domain": self.domain, "max_tokens": made.get("max_tokens", self.settings.max_tokens_instruction),
            },
            "gen_response_configs": None,
            "instruction_tokens": row["instruction_tokens"],
        }

    def _response_configs(self, temperature: float, top_p: float, max_tokens: int, n: int, seed: int,
                          made: dict | None = None) -> dict:
        """`made`: the settings recorded with the chunk that generated the row; they win over the
        run's current config (which a --resume --force may have changed since)."""
        made = made or {}
        return {
            "prompt": self.texts.response_prompt, "temperature": made.get("temperature", temperature),
            "top_p": made.get("top_p", top_p),
            "repetition_penalty": made.get("repetition_penalty", self.cfg.responses.repetition_penalty),
            "max_tokens": made.get("max_tokens", max_tokens),
            "stop_tokens": list(self.texts.stop_strings),
            "output_generator": model_label(made.get("output_generator", self.ctx.model.name)),
            "engine": made.get("engine", self.cfg.engine.kind), "n": made.get("n", n), "seed": seed,
        }

    def _with_instructions(self, *stages: str) -> Iterator[tuple[dict, ...]]:
        """(selected instruction, row of each stage) per problem, in id order."""
        streams = [stage_rows(self.ctx, SELECT, self.domain)]
        streams += [stage_rows(self.ctx, stage, self.domain) for stage in stages]
        # stage_rows checks each stream's ids against the plan, so equal lengths mean equal ids
        return zip(*streams, strict=True)

    def write_instructions(self) -> None:
        with TableWriter(self.out / self.names["instructions"]) as writer:
            for (row,) in self._with_instructions():
                writer.write(self._base(row))
                self.samples.instruction_tokens.append(row["instruction_tokens"])
        self.stats["instructions"] = writer.count

    def write_sft(self) -> None:
        excluded = 0
        loops = LoopCount()
        with (TableWriter(self.out / self.names["sft_data"]) as writer,
              TableWriter(self.out / self.names["sft_text"]) as text_writer):
            for selected, row in self._with_instructions(RESPONSES):
                self.samples.sft_response_tokens.append(row["output_tokens"][0])
                loops.add(row["finish_reasons"], row["responses"])
                if not row["complete"][0]:  # truncated, looped or answerless responses stay out of SFT (defect 7)
                    excluded += 1
                    continue
                record = self._base(selected)
                record.update(
                    response=row["responses"][0],
                    gen_response_configs=self._response_configs(
                        self.settings.response_temperature, self.cfg.responses.top_p,
                        self.settings.max_tokens_response, 1, row["seed"], row.get("_settings")),
                    reasoning=row["reasonings"][0], answer=row["answers"][0],
                    finish_reason=row["finish_reasons"][0], prompt_tokens=row["prompt_tokens"],
                    output_tokens=row["output_tokens"][0], truncated=row["truncated"][0],
                )
                writer.write(record)
                text_writer.write(self.formats.sft_record(row["id"], selected["instruction"], row["responses"][0]))
        self.stats.update(sft_records=writer.count, sft_excluded_incomplete=excluded,
                          **loops.stats("sft"))
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
        voted = vote_stream(self._with_instructions(MULTI_RESPONSES, REWARDS),
                            lambda rows: final_answers(rows[1]["answers"], rows[1]["complete"]), checker, equivalence)
        with (TableWriter(self.out / self.names["preference_data"]) as writer,
              TableWriter(self.out / self.names["dpo_data"]) as dpo,
              TableWriter(self.out / self.names["dpo_text"]) as dpo_text, contextlib.ExitStack() as stack):
            if checker is not None and checker is not self.checker:
                stack.callback(checker.close)
            for (selected, row, score_row), vote in voted:
                scores = score_row["scores"]
                if len(scores) != len(row["responses"]) or len(scores) != m.num_responses:
                    raise IncompleteRunError(f"merge: {row['id']} has {len(row['responses'])} responses and "
                                             f"{len(scores)} scores, expected {m.num_responses}")
                truncated += sum(row["truncated"])
                total += len(row["truncated"])
                loops.add(row["finish_reasons"], row["responses"])
                self.samples.preference_response_tokens.extend(row["output_tokens"])
                self.samples.scores.extend(scores)
                _, normalized = final_answers(row["answers"], row["complete"])
                majority, agreement, agree = vote.majority_answer, vote.agreement, vote.answers_agree
                agreements.append(agreement)
                disagreeing += not agree
                if not agree and q.drop_disagreeing:
                    skipped["disagreeing"] += 1
                    continue
                record = self._base(selected)
                del record["response"]
                record.update(
                    responses=row["responses"],
                    gen_response_configs=self._response_configs(m.temperature, m.top_p, m.max_tokens,
                                                                m.num_responses, row["seed"], row.get("_settings")),
                    rewards_armorm=[{"score": s} for s in scores], scores=scores,
                    reward_model=self.reward_label, reward_scored_part=score_row["scored_part"],
                    reasonings=row["reasonings"], answers=row["answers"], finish_reasons=row["finish_reasons"],
                    prompt_tokens=row["prompt_tokens"], output_tokens=row["output_tokens"],
                    truncated=row["truncated"], complete=row["complete"],
                    final_answers=normalized, majority_answer=majority, agreement=agreement, answers_agree=agree,
                )
                writer.write(record)
                # A DPO side must be complete and hold a non-empty answer part.
                usable = [bool(ok and a and a.strip()) for ok, a in zip(row["complete"], row["answers"])]
                pair, reason = choose_pair(row["responses"], scores, usable, q.dpo_min_margin)
                if pair is None:
                    skipped[reason] += 1
                    continue
                conversational = dpo_record(row["id"], record["instruction"], row["responses"], pair)
                dpo.write(conversational)
                dpo_text.write(self.formats.dpo_record(conversational, record["instruction"], row["responses"], pair))
                self.samples.margins.append(pair.margin)
        self.stats.update(preference_records=writer.count,
                          preference_truncation_rate=round(truncated / total, 4) if total else 0.0,
                          answers_disagreeing=disagreeing, preference_dropped_disagreeing=skipped["disagreeing"],
                          dpo_pairs=dpo.count, **{f"dpo_skipped_{k}": v for k, v in skipped.items()},
                          **loops.stats("preference"))
        self.loops["preference"] = loops
        equivalence.worker_restarts = checker.restarts - restarts if checker is not None else 0
        self.stats.update(answers_compared_by_value=equivalence.answers_by_value,
                          answers_compared_as_strings=equivalence.answers_by_string)
        self.quality = dict(truncated=truncated, responses=total, agreements=agreements, disagreeing=disagreeing,
                            dropped_disagreeing=skipped["disagreeing"], dpo_pairs=dpo.count, dpo_skipped=skipped,
                            equivalence=equivalence.to_json())

    def quality_section(self) -> dict:
        """dataset_info.json's `quality`: what `python -m magpie_hpc report` prints, flags included."""
        drop_reasons: Counter = Counter()
        for shard in stage_shards(self.cfg, INSTRUCTIONS, self.domain):
            done = self.ctx.store.shard(INSTRUCTIONS, self.domain, shard.shard).done() or {}
            drop_reasons.update(done.get("drop_reasons", {}))
        duplicates = read_duplicates(self.ctx.store, self.domain)
        figures = quality_figures(problems=self.settings.count, duplicates=duplicates, drop_reasons=drop_reasons,
                                  sft_excluded=self.stats["sft_excluded_incomplete"],
                                  decontamination=read_decontamination(self.ctx.store, self.domain), **self.quality)
        figures["loops"] = loop_figures(self.loops, self.cfg)
        self.stats.update(exact_duplicates_dropped=figures["exact_duplicates_dropped"],
                          near_duplicates_dropped=figures["near_duplicates_dropped"],
                          benchmark_problems_dropped=figures["decontamination"]["dropped"])
        figures["flags"] = domain_flags(self.domain, figures, self.cfg.quality)
        return figures

    def dataset_info(self) -> dict:
        s, m = self.settings, self.cfg.multi_responses
        return {
            "dataset_name": f"Magpie-{_title(self.domain)}-HLE-{_fmt_count(s.count)}",
            "model": self.generator, "model_revision": model_revision(self.ctx.manifest, "model"),
            "domain": self.domain, "problem_count": s.count,
            "description": s.description, "generation_date": self.date,
            "parameters": {
                "instruction_temperature": s.instruction_temperature,
                "response_temperature": s.response_temperature,
                "max_tokens_instruction": s.max_tokens_instruction,
                "max_tokens_response": s.max_tokens_response,
                "num_preference_responses": m.num_responses,
                "preference_temperature": m.temperature, "preference_top_p": m.top_p,
                "advanced_reasoning_mode": self.cfg.instructions.max_difficulty,
                "reward_model": self.reward_label,
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


def merge_run(run_dir: Path | str, ctx: RunContext | None = None,
              accounting: Callable[[RunStore], dict | None] | None = None) -> dict:
    """Write the dataset; raises IncompleteRunError listing what is missing, before writing anything.
    `accounting` (the SLURM merge task passes `slurm.accounting.run_accounting`) gives the run
    summary its GPU-hours; without it they are wall-clock seconds from the done markers."""
    ctx = ctx or RunContext(Path(run_dir))
    with merge_lock(ctx.run_dir):  # one merge at a time per run (publish.py)
        return _merge_locked(ctx, accounting)


def generation_configs(ctx: RunContext) -> dict[str, dict[str, list[dict]]]:
    """stage -> domain -> every distinct settings its chunks were generated (or scored) with."""
    out: dict[str, dict[str, list[dict]]] = {}
    for stage in (s.name for s in PIPELINE if s.gpu):  # select generates nothing
        for d in ctx.cfg.domains:
            seen: list[dict] = []
            for shard in stage_shards(ctx.cfg, stage, d):
                for settings in shard_settings(ctx.store.shard(stage, d, shard.shard)):
                    if settings not in seen:
                        seen.append(settings)
            out.setdefault(stage, {})[d] = seen
    return out


def _merge_locked(ctx: RunContext, accounting) -> dict:
    from .damage import check_run_files

    check_run_files(ctx)  # a damaged run file: one line naming it, before anything is written
    missing = missing_shards(ctx)
    if missing:
        shown = "; ".join(missing[:10]) + (f"; and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise IncompleteRunError(f"merge: {len(missing)} shard(s) not done: {shown}; run `python -m magpie_hpc resubmit {ctx.run_dir}`")
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # Everything is written into a staging folder and published together once complete.
    staging = Staging(ctx.run_dir)
    try:
        combined = _write_outputs(ctx, accounting, date, staging.dir)
    except BaseException:
        staging.discard()
        raise
    marker = ctx.store.shard(*MERGE_KEY)
    marker.done_path.unlink(missing_ok=True)  # old outputs are about to be replaced: not merged meanwhile
    staging.publish([*ctx.cfg.domains, PLOTS_DIR, "combined_dataset_info.json", "README.md"])
    # A table that had rows in an earlier merge and has none now: its old Parquet file would load as
    # current data (publish replaces files by name and leaves the rest).
    for domain, names in (combined.get("empty_tables") or {}).items():
        for name in names:
            inside(ctx.run_dir, ctx.run_dir / domain / name).with_suffix(".parquet").unlink(missing_ok=True)
    marker.mark_done({"stage": MERGE, "finished": date, "total_problems": ctx.cfg.total_problems})  # last
    return combined


def _write_outputs(ctx: RunContext, accounting, date: str, out: Path) -> dict:
    infos, samples = {}, {}
    q = ctx.cfg.quality
    with (EquivalenceChecker(q.equivalence_timeout_s, q.equivalence_workers) if q.answer_equivalence
          else contextlib.nullcontext()) as checker:
        for d in ctx.cfg.domains:
            merger = DomainMerger(ctx, d, date, out_root=out, checker=checker)
            infos[d], samples[d] = merger.run(), merger.samples
    rates = {d: {k: info["quality"][k] for k in ("truncation_rate", "sft_excluded_rate", "agreement_rate")}
             for d, info in infos.items()}
    plots = write_plots(out / PLOTS_DIR, samples, rates, ctx.cfg.quality.model_dump())
    del samples
    cfg = ctx.cfg
    total = cfg.total_problems
    all_six = len(cfg.domains) == len(cfg.domain_settings)
    combined = {
        "dataset_name": f"Magpie-Math-{'Complete' if all_six else 'Subset'}-HLE-{_fmt_count(total)}",
        "model": model_label(ctx.model.name), "model_revision": model_revision(ctx.manifest, "model"),
        "total_problems": total, "generation_date": date,
        "domains": {
            d: {"problems": cfg.domain(d).count, "description": cfg.domain(d).description, "directory": d}
            for d in cfg.domains
        },
        "files_per_domain": {k: v.replace(cfg.domains[0], "<domain>", 1)
                             for k, v in file_names(cfg.domains[0], cfg.multi_responses.num_responses).items()},
        "reward_model": model_label(ctx.reward_path),
        "reward_model_revision": model_revision(ctx.manifest, "reward_model"), "magpie_hpc_version": __version__,
        "run": ctx.manifest.get("run_name"),
        "summary": {d: info["counts"] for d, info in infos.items()},
        "empty_tables": {d: info["empty_tables"] for d, info in infos.items() if info["empty_tables"]},
        "quality_settings": cfg.quality.model_dump(),
        "quality_flags": [f for info in infos.values() for f in info["quality"]["flags"]],
        "plots": [f"{PLOTS_DIR}/{name}" for name in plots],
        "generation_configs": generation_configs(ctx),
    }
    # launch's record (run.json) plus the GPU types each stage ran on (DONE.json)
    combined["provenance"] = {**(ctx.manifest.get("provenance") or {}), "stage_gpus": stage_gpus(ctx),
                              "merged_by_magpie_hpc": __version__}
    combined["run_summary"] = build_run_summary(ctx, accounting)
    write_json_atomic(out / "combined_dataset_info.json", combined)
    readme = render_readme(combined, infos) + render_run_summary(combined["run_summary"])
    write_atomic(out / "README.md", readme.encode())
    return combined
