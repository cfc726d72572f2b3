"""The merge: every shard's chunks -> the dataset layout users load (SPEC.md), nothing else.

Streams every stage one committed chunk at a time, row by row in id order, so memory is bounded by
one chunk and one output batch whatever the run's size. Before writing, it proves the run complete:
every shard done; while writing, that every id of every range is present exactly once, in order.
"""

from __future__ import annotations

import contextlib
import functools
import json
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
from .plan import instruction_id, stage_shards
from .provenance import stage_gpus
from .quality.answers import extract_boxed
from .quality.answers import normalize_answer as _normalize_answer
from .quality.dpo import SKIP_REASONS, choose_pair, dpo_record
from .quality.equivalence import EquivalenceChecker, EquivalenceStats, vote_stream
from .quality.plots import PLOTS, DomainSamples, write_plots
from .quality.report import domain_flags, quality_figures
from .run_summary import build_run_summary, render_run_summary
from .stages.select import read_decontamination, read_duplicates
from .store import RunStore, write_atomic, write_json_atomic

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
        if self._parquet is None:  # an empty table still gets its (empty) Parquet file
            pq.write_table(pa.table({"id": pa.array([], pa.string())}), self._tmp_parquet)
        else:
            self._parquet.close()
        os.replace(self._tmp_json, self.json_path)
        os.replace(self._tmp_parquet, self.parquet_path)


def _fmt_count(n: int) -> str:
    return f"{n // 1000}K" if n % 1000 == 0 and n >= 1000 else str(n)


def _title(domain: str) -> str:
    return domain.replace("_", " ").title().replace(" ", "")


def file_names(domain: str, num_responses: int) -> dict[str, str]:
    """The per-domain files, the preference file named after the configured response count (defect 10)."""
    return {
        "instructions": f"{domain}_ins.json",
        "sft_data": f"{domain}_ins_res.json",
        "preference_data": f"{domain}_ins_{num_responses}res_armorm.json",
        "dpo_data": f"{domain}_dpo.json",
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
        for stage in ("instructions", "select", "responses", "multi_responses", "rewards"):
            for shard in stage_shards(ctx.cfg, stage, domain):
                if ctx.store.shard(stage, domain, shard.shard).done() is None:
                    missing.append(f"{stage} {domain} shard {shard.shard}")
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
        for chunk in store.committed_indices():
            for row in pq.read_table(store.chunk_path(chunk)).to_pylist():
                if index >= shard.stop or row["id"] != instruction_id(domain, index):
                    raise wrong
                yield row
                index += 1
        if index != shard.stop:
            raise wrong


class DomainMerger:
    def __init__(self, ctx: RunContext, domain: str, generation_date: str,
                 checker: EquivalenceChecker | None = None):
        self.ctx, self.cfg, self.domain, self.date = ctx, ctx.cfg, domain, generation_date
        self.checker = checker  # shared by the domains of one merge: its workers start once
        self.settings = self.cfg.domain(domain)
        self.out = ctx.run_dir / domain
        self.names = file_names(domain, self.cfg.multi_responses.num_responses)
        self.texts = ctx.template_texts
        self.pre_query = self.texts.pre_query[domain]
        self.stats: dict = {}
        self.samples = DomainSamples()  # small numbers for the plots, collected while streaming
        self.quality: dict = {}

    def _base(self, row: dict) -> dict:
        return {
            "id": row["id"], "pre_query_template": self.pre_query, "instruction": row["instruction"],
            "response": None, "created": row["created"],
            "gen_input_configs": {
                "temperature": self.settings.instruction_temperature, "top_p": self.cfg.instructions.top_p,
                "input_generator": self.ctx.model.name, "seed": row["seed"], "domain": self.domain,
                "max_tokens": self.settings.max_tokens_instruction,
            },
            "gen_response_configs": None,
            "instruction_tokens": row["instruction_tokens"],
        }

    def _response_configs(self, temperature: float, top_p: float, max_tokens: int, n: int, seed: int) -> dict:
        return {
            "prompt": self.texts.response_prompt, "temperature": temperature, "top_p": top_p,
            "repetition_penalty": self.cfg.responses.repetition_penalty, "max_tokens": max_tokens,
            "stop_tokens": list(self.texts.stop_strings), "output_generator": self.ctx.model.name,
            "engine": self.cfg.engine.kind, "n": n, "seed": seed,
        }

    def _with_instructions(self, *stages: str) -> Iterator[tuple[dict, ...]]:
        """(selected instruction, row of each stage) per problem, in id order."""
        streams = [stage_rows(self.ctx, "select", self.domain)]
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
        with TableWriter(self.out / self.names["sft_data"]) as writer:
            for selected, row in self._with_instructions("responses"):
                self.samples.sft_response_tokens.append(row["output_tokens"][0])
                if not row["complete"][0]:  # truncated or answerless responses stay out of SFT (defect 7)
                    excluded += 1
                    continue
                record = self._base(selected)
                record.update(
                    response=row["responses"][0],
                    gen_response_configs=self._response_configs(
                        self.settings.response_temperature, self.cfg.responses.top_p,
                        self.settings.max_tokens_response, 1, row["seed"]),
                    reasoning=row["reasonings"][0], answer=row["answers"][0],
                    finish_reason=row["finish_reasons"][0], prompt_tokens=row["prompt_tokens"],
                    output_tokens=row["output_tokens"][0], truncated=row["truncated"][0],
                )
                writer.write(record)
        self.stats.update(sft_records=writer.count, sft_excluded_incomplete=excluded)

    def write_preference(self) -> None:
        """The preference file and, from the same stream, the DPO file (quality/dpo.py's rule)."""
        m, q = self.cfg.multi_responses, self.cfg.quality
        truncated = total = disagreeing = 0
        agreements = array("d")
        skipped = dict.fromkeys((*SKIP_REASONS, "disagreeing"), 0)
        # Answers grouped by equivalence (quality/equivalence.py), a window of problems at a time.
        equivalence = EquivalenceStats(enabled=q.answer_equivalence)
        checker = self.checker
        if checker is None and q.answer_equivalence:
            checker = EquivalenceChecker(q.equivalence_timeout_s, q.equivalence_workers)
        restarts = checker.restarts if checker is not None else 0
        voted = vote_stream(self._with_instructions("multi_responses", "rewards"),
                            lambda rows: final_answers(rows[1]["answers"], rows[1]["complete"]), checker, equivalence)
        with (TableWriter(self.out / self.names["preference_data"]) as writer,
              TableWriter(self.out / self.names["dpo_data"]) as dpo, contextlib.ExitStack() as stack):
            if checker is not None and checker is not self.checker:
                stack.callback(checker.close)
            for (selected, row, score_row), vote in voted:
                scores = score_row["scores"]
                if len(scores) != len(row["responses"]) or len(scores) != m.num_responses:
                    raise IncompleteRunError(f"merge: {row['id']} has {len(row['responses'])} responses and "
                                             f"{len(scores)} scores, expected {m.num_responses}")
                truncated += sum(row["truncated"])
                total += len(row["truncated"])
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
                                                                m.num_responses, row["seed"]),
                    rewards_armorm=[{"score": s} for s in scores], scores=scores,
                    reward_model=self.cfg.reward_model, reward_scored_part=score_row["scored_part"],
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
                dpo.write(dpo_record(row["id"], record["instruction"], row["responses"], pair))
                self.samples.margins.append(pair.margin)
        self.stats.update(preference_records=writer.count,
                          preference_truncation_rate=round(truncated / total, 4) if total else 0.0,
                          answers_disagreeing=disagreeing, preference_dropped_disagreeing=skipped["disagreeing"],
                          dpo_pairs=dpo.count, **{f"dpo_skipped_{k}": v for k, v in skipped.items()})
        equivalence.worker_restarts = checker.restarts - restarts if checker is not None else 0
        self.stats.update(answers_compared_by_value=equivalence.answers_by_value,
                          answers_compared_as_strings=equivalence.answers_by_string)
        self.quality = dict(truncated=truncated, responses=total, agreements=agreements, disagreeing=disagreeing,
                            dropped_disagreeing=skipped["disagreeing"], dpo_pairs=dpo.count, dpo_skipped=skipped,
                            equivalence=equivalence.to_json())

    def quality_section(self) -> dict:
        """dataset_info.json's `quality`: what `python -m magpie_hpc report` prints, flags included."""
        drop_reasons: Counter = Counter()
        for shard in stage_shards(self.cfg, "instructions", self.domain):
            done = self.ctx.store.shard("instructions", self.domain, shard.shard).done() or {}
            drop_reasons.update(done.get("drop_reasons", {}))
        duplicates = read_duplicates(self.ctx.store, self.domain)
        figures = quality_figures(problems=self.settings.count, duplicates=duplicates, drop_reasons=drop_reasons,
                                  sft_excluded=self.stats["sft_excluded_incomplete"],
                                  decontamination=read_decontamination(self.ctx.store, self.domain), **self.quality)
        self.stats.update(exact_duplicates_dropped=figures["exact_duplicates_dropped"],
                          near_duplicates_dropped=figures["near_duplicates_dropped"],
                          benchmark_problems_dropped=figures["decontamination"]["dropped"])
        figures["flags"] = domain_flags(self.domain, figures, self.cfg.quality)
        return figures

    def dataset_info(self) -> dict:
        s, m = self.settings, self.cfg.multi_responses
        return {
            "dataset_name": f"Magpie-{_title(self.domain)}-HLE-{_fmt_count(s.count)}",
            "model": self.ctx.model.name, "domain": self.domain, "problem_count": s.count,
            "description": s.description, "generation_date": self.date,
            "parameters": {
                "instruction_temperature": s.instruction_temperature,
                "response_temperature": s.response_temperature,
                "max_tokens_instruction": s.max_tokens_instruction,
                "max_tokens_response": s.max_tokens_response,
                "num_preference_responses": m.num_responses,
                "preference_temperature": m.temperature, "preference_top_p": m.top_p,
                "advanced_reasoning_mode": self.cfg.instructions.max_difficulty,
                "reward_model": self.cfg.reward_model,
                "reward_scored_part": "full" if self.cfg.rewards.score_reasoning else "answer",
                "seed": self.cfg.seed,
                "quality_settings": self.cfg.quality.model_dump(),
            },
            "files": {k: v for k, v in self.names.items() if k != "info"},
            "counts": self.stats,
            "quality": self.quality_section(),
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
    missing = missing_shards(ctx)
    if missing:
        shown = "; ".join(missing[:10]) + (f"; and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise IncompleteRunError(f"merge: {len(missing)} shard(s) not done: {shown}; run `python -m magpie_hpc resubmit {ctx.run_dir}`")
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    infos, samples = {}, {}
    q = ctx.cfg.quality
    with (EquivalenceChecker(q.equivalence_timeout_s, q.equivalence_workers) if q.answer_equivalence
          else contextlib.nullcontext()) as checker:
        for d in ctx.cfg.domains:
            merger = DomainMerger(ctx, d, date, checker)
            infos[d], samples[d] = merger.run(), merger.samples
    rates = {d: {k: info["quality"][k] for k in ("truncation_rate", "sft_excluded_rate", "agreement_rate")}
             for d, info in infos.items()}
    plots = write_plots(ctx.run_dir / PLOTS_DIR, samples, rates, ctx.cfg.quality.model_dump())
    del samples
    cfg = ctx.cfg
    total = cfg.total_problems
    all_six = len(cfg.domains) == len(cfg.domain_settings)
    combined = {
        "dataset_name": f"Magpie-Math-{'Complete' if all_six else 'Subset'}-HLE-{_fmt_count(total)}",
        "model": ctx.model.name, "total_problems": total, "generation_date": date,
        "domains": {
            d: {"problems": cfg.domain(d).count, "description": cfg.domain(d).description, "directory": d}
            for d in cfg.domains
        },
        "files_per_domain": {k: v.replace(cfg.domains[0], "<domain>", 1)
                             for k, v in file_names(cfg.domains[0], cfg.multi_responses.num_responses).items()},
        "reward_model": cfg.reward_model, "magpie_hpc_version": __version__,
        "run": ctx.manifest.get("run_name"),
        "summary": {d: info["counts"] for d, info in infos.items()},
        "quality_settings": cfg.quality.model_dump(),
        "quality_flags": [f for info in infos.values() for f in info["quality"]["flags"]],
        "plots": [f"{PLOTS_DIR}/{name}" for name in plots],
    }
    # launch's record (run.json) plus the GPU types each stage ran on (DONE.json)
    combined["provenance"] = {**(ctx.manifest.get("provenance") or {}), "stage_gpus": stage_gpus(ctx),
                              "merged_by_magpie_hpc": __version__}
    combined["run_summary"] = build_run_summary(ctx, accounting)
    write_json_atomic(ctx.run_dir / "combined_dataset_info.json", combined)
    readme = render_readme(combined, infos) + render_run_summary(combined["run_summary"])
    write_atomic(ctx.run_dir / "README.md", readme.encode())
    ctx.store.shard("merge", "all", 0).mark_done({"stage": "merge", "finished": date, "total_problems": total})
    return combined


def _provenance_lines(prov: dict) -> list[str]:
    """The card's provenance section: model revisions, package versions, SLURM, GPUs per stage."""
    if not prov:
        return []

    def revision(entry: dict | None) -> str:
        entry = entry or {}
        if entry.get("source") == "hf-cache":
            return f"`{entry['revision']}` (Hugging Face cache snapshot)"
        if entry.get("revision"):
            return f"`{entry['revision']}` (of its config and tokenizer files)"
        return "unknown (not a local folder at launch)"

    packages = prov.get("packages") or {}
    git = prov.get("magpie_hpc_git")
    lines = ["", "## Provenance", "",
             f"- Generator revision: {revision(prov.get('model'))}.",
             f"- Reward model revision: {revision(prov.get('reward_model'))}.",
             "- Packages at launch: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in packages.items())
             + (f"; magpie-hpc from git commit `{git['commit']}`" + (" (with local changes)" if git.get("dirty") else "")
                if git else "") + ".",
             f"- SLURM: {prov.get('slurm') or 'not installed where the run was launched'}."]
    gpus = prov.get("stage_gpus") or {}
    if gpus:
        lines += ["", "| stage | GPU types |", "| --- | --- |"]
        lines += [f"| {stage} | {', '.join(types)} |" for stage, types in gpus.items()]
    return lines


def _decontamination_lines(infos: dict[str, dict]) -> list[str]:
    """The card's decontamination table: instructions dropped at select per benchmark file."""
    sections = {d: info["quality"].get("decontamination") or {} for d, info in infos.items()}
    files = sorted({f for s in sections.values() for f in s.get("files", {})})
    if not files:
        return ["**Decontamination**: none (no `quality.decontamination_files` were given), so nothing checks "
                "these problems against evaluation benchmarks.", ""]
    first = next(s for s in sections.values() if s.get("files"))
    lines = [f"**Decontamination** against evaluation benchmarks, at selection (before any response was "
             f"generated): instructions sharing a {first['ngram']}-word n-gram with a benchmark problem, or with "
             f"an estimated Jaccard similarity >= {first['threshold']:g} (character 5-grams, MinHash), were dropped "
             "and replaced.", "",
             "| benchmark file | problems | " + " | ".join(infos) + " |",
             "| --- | --- | " + " | ".join("---" for _ in infos) + " |"]
    for f in files:
        size = next(s["files"][f]["problems"] for s in sections.values() if f in s.get("files", {}))
        counts = [str(sections[d].get("files", {}).get(f, {}).get("dropped", "-")) for d in infos]
        lines.append(f"| `{Path(f).name}` | {size} | " + " | ".join(counts) + " |")
    return lines + [""]


def _equivalence_lines(infos: dict[str, dict]) -> list[str]:
    """The card's paragraph on how answers were compared (dataset_info.json `answer_equivalence`)."""
    stats = {d: info["quality"].get("answer_equivalence") or {} for d, info in infos.items()}
    if not any(s.get("enabled") for s in stats.values()):
        return ["Final answers were compared as normalised LaTeX strings (`quality.answer_equivalence` off).", ""]
    total = lambda key: sum(s.get(key, 0) for s in stats.values())  # noqa: E731
    return [
        "Final answers are grouped by mathematical equivalence with `math-verify` before the vote "
        f"(`0.5` = `\\frac{{1}}{{2}}`): of the distinct answers that had to be compared, "
        f"{total('answers_by_value')} were compared by value ({total('answers_by_exact_rational')} of them exactly "
        f"as integers or fractions) and {total('answers_by_string')} as normalised strings (unparsable, or past "
        f"the time limit: {total('parse_timeouts')} parse and {total('comparison_timeouts')} comparison "
        f"timeouts); equivalence joined differently written answers in {total('problems_merged')} problems.", ""]


# The card's configs: one per domain and file kind, named `<domain>_<suffix>`, and the count that
# says whether the file holds records (`datasets` cannot load an empty file).
CARD_CONFIGS = (("instructions", "instructions", "instructions"), ("sft", "sft_data", "sft_records"),
                ("preference", "preference_data", "preference_records"), ("dpo", "dpo_data", "dpo_pairs"))


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def card_configs(combined: dict, infos: dict[str, dict]) -> list[dict]:
    """[{"config_name", "data_files"}] for every non-empty Parquet table, paths relative to the run dir."""
    configs = []
    for d, info in infos.items():
        directory = combined["domains"][d]["directory"]
        for suffix, key, count in CARD_CONFIGS:
            if info["counts"].get(count, 0) > 0:
                parquet = Path(info["files"][key]).with_suffix(".parquet").name
                configs.append({"config_name": f"{d}_{suffix}", "data_files": f"{directory}/{parquet}"})
    return configs


def render_readme(combined: dict, infos: dict[str, dict]) -> str:
    """The run's README.md: a Hugging Face dataset card (YAML front matter with one config per domain
    and file kind), then counts, pictures, the settings used and the known limits."""
    files = combined["files_per_domain"]
    q = combined.get("quality_settings", {})
    first = next(iter(infos))
    params = infos[first]["parameters"]
    configs = card_configs(combined, infos)
    yaml = [
        "---", "license: other", "task_categories:", "- text-generation", "language:", "- en",
        "tags:", "- math", "- synthetic", "- magpie",
        f"pretty_name: {json.dumps(combined['dataset_name'])}",
        "size_categories:", f"- {_size_category(combined['total_problems'])}", "configs:",
    ]
    for c in configs:
        yaml += [f"- config_name: {json.dumps(c['config_name'])}", f"  data_files: {json.dumps(c['data_files'])}"]
    yaml.append("---")

    lines = [
        *yaml, "", f"# {combined['dataset_name']}", "",
        f"Research-level math problems synthesised with the Magpie method by `{combined['model']}` (the model "
        "writes the question from its pre-query template alone), answered by the same model and scored by "
        f"`{combined['reward_model']}`. Generated {combined['generation_date']} by magpie-hpc "
        f"{combined['magpie_hpc_version']} (run `{combined.get('run')}`).", "",
        "## Contents", "",
        "| domain | problems | SFT records | preference records | DPO pairs | duplicates removed (exact / near) "
        "| truncated (preference) | answers agree |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d, info in infos.items():
        c, qual = info["counts"], info["quality"]
        lines.append(
            f"| {d} | {info['problem_count']} | {c['sft_records']} | {c['preference_records']} | {c['dpo_pairs']} | "
            f"{qual['exact_duplicates_dropped'] + qual['instruction_stage_duplicates']} / "
            f"{qual['near_duplicates_dropped']} | {qual['truncation_rate']:.1%} | {qual['agreement_rate']:.1%} |")
    lines += [
        "", f"*answers agree*: share of problems whose most common final answer is given by at least "
        f"{infos[first]['quality']['agreement_level']:.0%} of the {params['num_preference_responses']} responses. "
        "Every figure, with the DPO problems skipped by reason, is in each domain's `dataset_info.json` "
        "(`counts`, `quality`); `python -m magpie_hpc report RUN_DIR` prints them and flags thresholds.", "",
    ]
    lines += _equivalence_lines(infos)
    lines += _decontamination_lines(infos)
    flags = combined.get("quality_flags", [])
    if flags:
        lines += ["**Quality flags** (thresholds of `[quality]`):", "", *[f"- {f}" for f in flags], ""]

    lines += [
        "## Configs and files", "",
        "Each domain folder holds these files, each JSON file with a Parquet twin beside it; the card's "
        "configs (`<domain>_instructions`, `<domain>_sft`, `<domain>_preference`, `<domain>_dpo`) point at "
        "the Parquet files.", "",
        f"- `{files['instructions']}` (`_instructions`): instructions only (`id`, `instruction`, "
        "`pre_query_template`, `gen_input_configs` with the seed, `instruction_tokens`).",
        f"- `{files['sft_data']}` (`_sft`): `instruction` + `response`, with `reasoning` and `answer` split at "
        "`</think>`; responses that were cut off (finish_reason `length`, or a reasoning model that never "
        "closed `</think>`) are left out.",
        f"- `{files['preference_data']}` (`_preference`): `instruction`, `responses`, `scores` (also as "
        "`rewards_armorm`), per response `finish_reasons`, `truncated`, `complete`, `final_answers` (normalised "
        "last `\\boxed{}` of the answer part, null when none or incomplete), and per problem `majority_answer`, "
        "`agreement` (its share of the responses) and `answers_agree` (some answer given twice), answers "
        "counted together when equal in value"
        + ("; problems whose answers never agree are left out." if q.get("drop_disagreeing") else "."),
        f"- `{files['dpo_data']}` (`_dpo`): TRL `DPOTrainer` conversational format: `prompt` "
        "(`[{role: user, content}]`), `chosen` and `rejected` (`[{role: assistant, content}]`), with "
        "`score_chosen`, `score_rejected`, `margin`. Chosen is the highest-scored complete response, rejected "
        "the lowest-scored complete response with a different text; problems with fewer than two distinct "
        "complete responses or equal scores"
        + (f", or a margin below {q['dpo_min_margin']:g}," if q.get("dpo_min_margin") else "")
        + " give no pair.",
        f"- `{files['info']}`: per-domain metadata, counts and quality figures.", "",
        "## Loading", "", "```python", "from datasets import load_dataset", "",
        "# one file", f"dpo = load_dataset(\"parquet\", data_files=\"{first}/{first}_dpo.parquet\")[\"train\"]",
        "# a config of this card (a local copy of the folder, or its Hub repository)",
        f"sft = load_dataset(\"path/to/this/folder\", \"{first}_sft\")[\"train\"]", "```", "",
    ]
    if combined.get("plots"):
        lines += ["## Pictures", ""]
        for path in combined["plots"]:
            caption = PLOTS.get(Path(path).name, Path(path).stem)
            lines += [f"![{caption}]({path})", "", f"*{caption}.*", ""]

    lines += [
        "## Settings used", "",
        f"- Generator: `{combined['model']}`; reward model: `{combined['reward_model']}`, scoring the "
        f"{'reasoning and answer' if params['reward_scored_part'] == 'full' else 'answer part only'}.",
        f"- Preference responses: {params['num_preference_responses']} per problem, temperature "
        f"{params['preference_temperature']:g}, top_p {params['preference_top_p']:g}; run seed {params['seed']}.",
        f"- Instructions: advanced reasoning mode {params['advanced_reasoning_mode']}; cleaned (cut-off "
        "questions, appended answers, typed-out template tokens) and de-duplicated: exact duplicates, then "
        + (f"near-duplicates across the whole domain (estimated Jaccard of character 5-grams >= "
           f"{q.get('near_dup_threshold', 0.85):g})." if q.get("near_dedup", True) else "no near-duplicate removal."),
        f"- Quality settings: `{json.dumps(q)}`.", "",
        "| domain | instruction temperature | response temperature | max tokens (instruction / response) |",
        "| --- | --- | --- | --- |",
    ]
    for d, info in infos.items():
        p = info["parameters"]
        lines.append(f"| {d} | {p['instruction_temperature']:g} | {p['response_temperature']:g} | "
                     f"{p['max_tokens_instruction']} / {p['max_tokens_response']} |")
    lines += _provenance_lines(combined.get("provenance") or {})
    lines += [
        "", "## Known limits", "",
        "- No ground truth: `majority_answer` and `agreement` measure self-consistency, not correctness. "
        + ("Answers are grouped by mathematical equivalence (math-verify), so `0.5` and `\\frac{1}{2}` agree; "
           "an answer it cannot parse in time is compared as normalised LaTeX, where equal values written "
           "differently count as disagreeing." if q.get("answer_equivalence", True) else
           "Answers are compared as normalised LaTeX, never evaluated, so equal values written differently "
           "(`0.5` and `\\frac{1}{2}`) count as disagreeing."),
        "- Reward scores come from one reward model, uncalibrated across domains; a DPO margin is a score "
        "difference, not a probability.",
        "- The questions are written by the model itself: some may be ill-posed, unsolvable or trivially easy; "
        + ("they are checked against the benchmark files listed above only (an n-gram and MinHash test, not "
           "paraphrase detection); " if q.get("decontamination_files") else
           "nothing checks them against public benchmarks (contamination); ")
        + "near-duplicates are removed within each domain only (a MinHash estimate), not across domains.",
        "- The SFT file holds fewer records than problems when responses were cut off; the preference file "
        "keeps cut-off responses, marked by `truncated` and `complete`.",
        "- `datasets` cannot load a file without records; such files are left out of the configs above.",
        f"- License: the records are output of `{combined['model']}` and `{combined['reward_model']}`; their "
        "licenses and terms of use apply (`license: other`).", "",
    ]
    return "\n".join(lines)
