"""The merge: every shard's chunks -> the dataset layout users load (SPEC.md), nothing else.

Streams shard by shard, so memory is bounded by one shard whatever the run's size. Before writing,
it proves the run complete: every shard done, every id of every range present exactly once.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .context import RunContext
from .errors import IncompleteRunError
from .plan import instruction_id, stage_shards
from .store import write_atomic, write_json_atomic

BATCH = 512


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
        self._json = open(self._tmp_json, "w", encoding="utf-8")
        self._json.write("[")
        self._parquet: pq.ParquetWriter | None = None
        self._batch: list[dict] = []
        self.count = 0

    def write(self, record: dict) -> None:
        text = json.dumps(record, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        self._json.write(("\n  " if self.count == 0 else ",\n  ") + text)
        self.count += 1
        self._batch.append(record)
        if len(self._batch) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        if self._parquet is None:
            inferred = pa.Table.from_pylist(self._batch).schema
            schema = pa.schema([pa.field(f.name, _null_to_string(f.type)) for f in inferred])
            self._parquet = pq.ParquetWriter(self._tmp_parquet, schema, compression="zstd")
        self._parquet.write_table(pa.Table.from_pylist(self._batch, schema=self._parquet.schema))
        self._batch = []

    def close(self) -> None:
        self._flush()
        self._json.write("\n]\n" if self.count else "]\n")
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
        "info": "dataset_info.json",
    }


def missing_shards(ctx: RunContext) -> list[str]:
    """Every shard of every stage that has no done marker, as `stage domain shard` strings."""
    missing = []
    for domain in ctx.cfg.domains:
        for stage in ("instructions", "select", "responses", "multi_responses", "rewards"):
            for shard in stage_shards(ctx.cfg, stage, domain):
                if ctx.store.shard(stage, domain, shard.shard).done() is None:
                    missing.append(f"{stage} {domain} shard {shard.shard}")
    return missing


def _shard_rows(ctx: RunContext, stage: str, domain: str) -> Iterator[tuple[int, list[dict]]]:
    """(start index, rows) per shard, after checking the rows are exactly the shard's ids in order."""
    for shard in stage_shards(ctx.cfg, stage, domain):
        rows = ctx.store.shard(stage, domain, shard.shard).read_all().to_pylist()
        expected = [instruction_id(domain, i) for i in range(shard.start, shard.stop)]
        if [r["id"] for r in rows] != expected:
            raise IncompleteRunError(
                f"merge: {stage} {domain} shard {shard.shard} does not hold exactly ids "
                f"{expected[0]}..{expected[-1]} once each; delete that shard folder and resubmit"
            )
        yield shard.start, rows


class DomainMerger:
    def __init__(self, ctx: RunContext, domain: str, generation_date: str):
        self.ctx, self.cfg, self.domain, self.date = ctx, ctx.cfg, domain, generation_date
        self.settings = self.cfg.domain(domain)
        self.out = ctx.run_dir / domain
        self.names = file_names(domain, self.cfg.multi_responses.num_responses)
        template, _ = ctx.prompts.magpie_prompt(self.settings, self.cfg.instructions.max_difficulty)
        self.pre_query = template
        self.response_prompt = ctx.prompts.response_prompt("{instruction}")[0]
        self.selection = ctx.selection(domain).to_pylist()
        self.stats: dict = {}

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
            "prompt": self.response_prompt, "temperature": temperature, "top_p": top_p,
            "repetition_penalty": self.cfg.responses.repetition_penalty, "max_tokens": max_tokens,
            "stop_tokens": list(self.ctx.prompts.stop_strings), "output_generator": self.ctx.model.name,
            "engine": self.cfg.engine.kind, "n": n, "seed": seed,
        }

    def write_instructions(self) -> None:
        writer = TableWriter(self.out / self.names["instructions"])
        for row in self.selection:
            writer.write(self._base(row))
        writer.close()
        self.stats["instructions"] = writer.count

    def write_sft(self) -> None:
        writer = TableWriter(self.out / self.names["sft_data"])
        excluded = 0
        for start, rows in _shard_rows(self.ctx, "responses", self.domain):
            for offset, row in enumerate(rows):
                if not row["complete"][0]:  # truncated or answerless responses stay out of SFT (defect 7)
                    excluded += 1
                    continue
                record = self._base(self.selection[start + offset])
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
        writer.close()
        self.stats.update(sft_records=writer.count, sft_excluded_incomplete=excluded)

    def write_preference(self) -> None:
        m = self.cfg.multi_responses
        writer = TableWriter(self.out / self.names["preference_data"])
        truncated = total = 0
        rewards = _shard_rows(self.ctx, "rewards", self.domain)
        for (start, rows), (_, scored) in zip(_shard_rows(self.ctx, "multi_responses", self.domain), rewards):
            for offset, (row, score_row) in enumerate(zip(rows, scored)):
                scores = score_row["scores"]
                if len(scores) != len(row["responses"]) or len(scores) != m.num_responses:
                    raise IncompleteRunError(f"merge: {row['id']} has {len(row['responses'])} responses and "
                                             f"{len(scores)} scores, expected {m.num_responses}")
                record = self._base(self.selection[start + offset])
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
                )
                truncated += sum(row["truncated"])
                total += len(row["truncated"])
                writer.write(record)
        writer.close()
        self.stats.update(preference_records=writer.count,
                          preference_truncation_rate=round(truncated / total, 4) if total else 0.0)

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
            },
            "files": {k: v for k, v in self.names.items() if k != "info"},
            "counts": self.stats,
        }

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self.write_instructions()
        self.write_sft()
        self.write_preference()
        info = self.dataset_info()
        write_json_atomic(self.out / self.names["info"], info)
        return info


def merge_run(run_dir: Path | str, ctx: RunContext | None = None) -> dict:
    """Write the dataset; raises IncompleteRunError listing what is missing, before writing anything."""
    ctx = ctx or RunContext(Path(run_dir))
    missing = missing_shards(ctx)
    if missing:
        shown = "; ".join(missing[:10]) + (f"; and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise IncompleteRunError(f"merge: {len(missing)} shard(s) not done: {shown}; run `python -m magpie_hpc resubmit {ctx.run_dir}`")
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    infos = {d: DomainMerger(ctx, d, date).run() for d in ctx.cfg.domains}
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
    }
    write_json_atomic(ctx.run_dir / "combined_dataset_info.json", combined)
    write_atomic(ctx.run_dir / "README.md", render_readme(combined, infos).encode())
    ctx.store.shard("merge", "all", 0).mark_done({"stage": "merge", "finished": date, "total_problems": total})
    return combined


def render_readme(combined: dict, infos: dict[str, dict]) -> str:
    files = combined["files_per_domain"]
    lines = [
        f"# {combined['dataset_name']}", "",
        f"Math problems synthesised with the Magpie method by `{combined['model']}`, "
        f"answered by the same model and scored by `{combined['reward_model']}`. "
        f"Generated {combined['generation_date']} by magpie-hpc {combined['magpie_hpc_version']}.", "",
        "| domain | problems | SFT records | preference records | truncation (preference) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d, info in infos.items():
        c = info["counts"]
        lines.append(f"| {d} | {info['problem_count']} | {c['sft_records']} | {c['preference_records']} | "
                     f"{c['preference_truncation_rate']:.1%} |")
    lines += [
        "", "## Files per domain", "",
        f"- `{files['instructions']}`: instructions only (`instruction`, `id`, generation settings).",
        f"- `{files['sft_data']}`: SFT data, `instruction` + `response`; responses that were cut off "
        "(finish_reason `length`, or a reasoning model that never closed `</think>`) are left out.",
        f"- `{files['preference_data']}`: `instruction`, `responses`, `scores` (also as `rewards_armorm`).",
        f"- `{files['info']}`: per-domain metadata. Each JSON file has a Parquet twin beside it.", "",
        "## Loading", "", "```python", "import json",
        f"records = json.load(open('algebra/{files['sft_data'].replace('<domain>', 'algebra')}'))",
        "```", "",
    ]
    return "\n".join(lines)
