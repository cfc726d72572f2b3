"""Benchmark 1: does the pipeline keep the engine as busy as a bare `LLM.generate` would?

Per generation stage (instructions, responses, 7 responses), on a real run directory and the real
vLLM engine, the model loaded ONCE for every measurement:

  pipeline  `run_shard(RunContext(run_dir), stage, "algebra", 0, engines=cache)` with the model already loaded
            (one VllmGenerator handed in through EngineCache): all a task does after its model
            load -- read the selection, build prompts, generate chunk by chunk, clean, commit each
            chunk (Parquet + fsync), write DONE.json.
  ceiling   the same prompts and sampling settings given to `LLM.generate` in ONE call on the same
            engine (no chunks, no files, prompts tokenized beforehand).
  original  the original scripts' way on the same engine: responses in batches of 4 prompts, the
            7 responses as 7 sequential passes in batches of 2 (n=1 each).

Figures: output tokens/s of pipeline / ceiling (target >= 0.95); the engine-busy share of the
pipeline's wall time (time the task waits inside Generator.generate or generate_stream / run_shard
wall time: the rest is the task's own CPU work, during which only a streaming engine keeps busy);
pipeline / original (the gain). Repetitions are interleaved
(pipeline, ceiling, pipeline, ...) and medians reported: the machine is shared. The response
stages stream their chunks through the engine (`Generator.generate_stream`: the next chunk is
queued before the current one is done), which this benchmark's first version measured as a
prototype ("streamed") and showed to close the gap at small chunks; the instructions stage plans
each chunk from what the previous one kept, so it goes chunk by chunk.
Then a chunk-size sweep: the same stage at several `sharding.chunk_size` values.

Usage: python bench/generation_efficiency.py [--quick] [--reps N] [--model PATH]
  --model: a local Qwen2/Llama-architecture model folder whose chat template is DeepSeek-R1's
  (default: the package's random-weight deepseek-r1-tiny); on a GPU node see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

from _common import make_run, median, quick_flag, reset_shard, scratch, set_config, table, tiny_models, write_results

DOMAIN = "algebra"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller shards, one repetition, no sweep")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions per stage (default 2, quick 1)")
    p.add_argument("--model", help="generator model folder (default: tiny deepseek-r1)")
    p.add_argument("--max-tokens", type=int, nargs=2, default=(128, 512), metavar=("INSTRUCTION", "RESPONSE"))
    p.add_argument("--max-model-len", type=int, default=1024)
    p.add_argument(
        "--response-temperature",
        type=float,
        default=0.8,
        help="responses stage temperature (domain default 0.05; see BENCHMARKS.md)",
    )
    p.add_argument("--instruction-problems", type=int, help="problems of the measured instruction shard")
    p.add_argument("--problems", type=int, help="problems of the response shard")
    p.add_argument("--multi-problems", type=int, help="problems of the 7-response shard")
    p.add_argument("--no-sweep", action="store_true", help="skip the chunk-size sweep")
    return p.parse_args()


def warm_imports() -> None:
    """One-time costs of a process (pyarrow imports pandas on its first table write, ~0.5 s) are
    paid here, not by whichever measurement comes first."""
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(pa.table({"a": [1]}), f"{tmp}/warm.parquet")
        pa.table({"a": [1]}).to_pylist()


class Bench:
    def __init__(self, args):
        from magpie_hpc.context import RunContext
        from magpie_hpc.engine import EngineCache
        from magpie_hpc.engine.vllm_engine import VllmGenerator
        from magpie_hpc.registry import DOMAIN_PRESETS

        self.quick = args.quick or quick_flag()
        self.reps = args.reps or (1 if self.quick else 2)
        self.n_ins = args.instruction_problems or (64 if self.quick else 128)
        self.n_resp = args.problems or (256 if self.quick else 512)
        self.n_multi = args.multi_problems or (16 if self.quick else 32)
        self.max_tokens = tuple(args.max_tokens)
        self.response_temperature = args.response_temperature
        root = scratch("generation_efficiency")
        shutil.rmtree(root / "data", ignore_errors=True)
        self.count = max(self.n_resp, self.n_multi)
        domain = {"max_tokens_instruction": self.max_tokens[0], "max_tokens_response": self.max_tokens[1]}
        sections = {f"domain_settings.{d}": dict(domain) for d in DOMAIN_PRESETS}
        sections[f"domain_settings.{DOMAIN}"]["response_temperature"] = self.response_temperature
        self.run_dir = make_run(
            root,
            count=self.count,
            engine={
                "kind": "vllm",
                "reward_kind": "transformers",
                "max_model_len": args.max_model_len,
                "enforce_eager": True,
            },
            sharding={
                "instructions": self.n_ins,
                "responses": self.n_resp,
                "multi_responses": self.n_multi,
                "chunk_size": 256,
            },
            multi_responses={"max_tokens": self.max_tokens[1]},
            quality={"near_dedup": False},  # selection is not measured here; synthetic text is repetitive
            **sections,
        )
        if args.model:
            manifest = json.loads((self.run_dir / "run.json").read_text())
            manifest["model"]["path"] = manifest["model"]["name"] = str(Path(args.model).resolve())
            (self.run_dir / "run.json").write_text(json.dumps(manifest, indent=2))
        self.ctx = ctx = RunContext(self.run_dir)
        m, eng = ctx.model, ctx.cfg.engine
        started = time.monotonic()
        self.gen = VllmGenerator(
            m.path,
            seed=0,
            dtype=eng.dtype,
            max_model_len=m.max_model_len,
            tensor_parallel_size=m.tensor_parallel_size,
            gpu_memory_utilization=eng.gpu_memory_utilization,
            enable_prefix_caching=eng.enable_prefix_caching,
            enforce_eager=eng.enforce_eager,
        )
        self.load_seconds = time.monotonic() - started
        self.llm = self.gen.llm
        # Time inside the engine during a pipeline run; the rest of the task's time is the
        # pipeline's own work (prompts, cleaning, Parquet, fsync), during which a GPU would idle.
        self.engine_seconds = 0.0
        inner = self.gen.generate

        def timed_generate(prompts, sampling, seeds=None):
            started = time.monotonic()
            try:
                return inner(prompts, sampling, seeds)
            finally:
                self.engine_seconds += time.monotonic() - started

        inner_stream = self.gen.generate_stream

        def timed_stream(requests):
            stream = inner_stream(requests)
            try:
                while True:
                    started = time.monotonic()
                    try:
                        results = next(stream)
                    except StopIteration:
                        return
                    finally:
                        self.engine_seconds += time.monotonic() - started
                    yield results
            finally:
                stream.close()

        self.gen.generate = timed_generate
        self.gen.generate_stream = timed_stream
        self.cache = EngineCache()
        self.cache.generator(lambda: self.gen)  # the one model load; every run_shard reuses it
        warm_imports()
        sched = self.llm.llm_engine.vllm_config.scheduler_config
        self.max_num_seqs = sched.max_num_seqs
        self.max_num_batched_tokens = sched.max_num_batched_tokens

    # -- the pipeline ------------------------------------------------------------------------
    def pipeline(self, stage: str, chunk_size: int = 256) -> dict:
        from magpie_hpc.stages import run_shard
        from magpie_hpc.context import RunContext

        set_config(self.run_dir, "sharding", "chunk_size", chunk_size)
        reset_shard(self.run_dir, stage, DOMAIN, 0)
        self.engine_seconds = 0.0
        started = time.monotonic()
        done = run_shard(RunContext(self.run_dir), stage, DOMAIN, 0, engines=self.cache)
        wall = time.monotonic() - started
        return {
            "tokens": done["output_tokens"],
            "seconds": wall,
            "tok_s": done["output_tokens"] / wall,
            "done_seconds": done["seconds"],
            "chunks": done["chunks"],
            "rows": done["rows"],
            "engine_seconds": self.engine_seconds,
            "overhead_seconds": wall - self.engine_seconds,
        }

    # -- raw vLLM on the same prompts and settings --------------------------------------------
    def stage_requests(self, stage: str, rows: int | None = None):
        """(prompts, SamplingParams) exactly as the stage builds them, all of the shard at once."""
        from magpie_hpc.engine import Sampling
        from magpie_hpc.plan import stage_shards
        from magpie_hpc.stages.instructions import InstructionsWork
        from magpie_hpc.stages.responses import MultiResponsesWork, ResponsesWork

        ctx = self.ctx
        shard = stage_shards(ctx.cfg, stage, DOMAIN)[0]
        if stage == "instructions":
            work = InstructionsWork(ctx, DOMAIN, shard)
            per = ctx.cfg.instructions.samples_per_prompt
            sampling = Sampling(
                temperature=work.settings.instruction_temperature,
                top_p=ctx.cfg.instructions.top_p,
                max_tokens=work.settings.max_tokens_instruction,
                n=per,
                stop=ctx.prompts.stop_strings,
                stop_token_ids=ctx.prompts.stop_token_ids,
                seed=0,
            )
            prompts = [work.prompt_ids] * math.ceil(rows / per)
        else:
            work = (ResponsesWork if stage == "responses" else MultiResponsesWork)(ctx, DOMAIN, shard)
            sampling = work.sampling(0)
            prompts = [ctx.prompts.response_prompt(item["instruction"])[1] for item in work.items]
        return [{"prompt_token_ids": list(p)} for p in prompts], sampling

    def timed_generate(self, prompts, sampling, batch: int | None = None, passes: int = 1) -> dict:
        params = self.gen.sampling_params(sampling)
        started = time.monotonic()
        tokens = 0
        for _ in range(passes):
            step = batch or len(prompts)
            for i in range(0, len(prompts), step):
                outs = self.llm.generate(prompts[i : i + step], params, use_tqdm=False)
                tokens += sum(len(c.token_ids) for o in outs for c in o.outputs)
        wall = time.monotonic() - started
        return {"tokens": tokens, "seconds": wall, "tok_s": tokens / wall}

    def ceiling(self, stage: str, rows: int | None = None) -> dict:
        prompts, sampling = self.stage_requests(stage, rows)
        return self.timed_generate(prompts, sampling)

    def original(self, stage: str, subset: int) -> dict:
        """The original scripts' batching on the same engine and prompts (a subset: it is slow)."""
        prompts, sampling = self.stage_requests(stage)
        prompts = prompts[:subset]
        if stage == "responses":
            return {**self.timed_generate(prompts, sampling, batch=4), "prompts": len(prompts), "how": "batches of 4"}
        single = dataclasses.replace(sampling, n=1)
        out = self.timed_generate(prompts, single, batch=2, passes=sampling.n)
        return {**out, "prompts": len(prompts), "how": f"{sampling.n} passes, batches of 2"}


def main() -> None:
    args = parse()
    from magpie_hpc.plan import stage_shards
    from magpie_hpc.stages import run_shard
    from magpie_hpc.context import RunContext

    tiny_models()
    b = Bench(args)
    print(
        f"model load (excluded from every figure): {b.load_seconds:.1f}s; vLLM max_num_seqs={b.max_num_seqs}, "
        f"max_num_batched_tokens={b.max_num_batched_tokens}",
        flush=True,
    )
    stages: dict[str, dict] = {}

    def show(stage, rep, runs):
        parts = [f"{k} {v[-1]['tok_s']:.0f} tok/s ({v[-1]['seconds']:.1f}s)" for k, v in runs.items() if v]
        print(f"{stage} rep {rep}: " + ", ".join(parts), flush=True)

    # Instructions first: the response stages need the selection.
    runs = {"pipeline": [], "ceiling": []}
    for rep in range(b.reps):
        p = b.pipeline("instructions")
        runs["pipeline"].append(p)
        runs["ceiling"].append(b.ceiling("instructions", rows=p["rows"]))  # the same number of samples
        show("instructions", rep, runs)
    stages["instructions"] = runs
    # The other instruction shards only feed the selection: the synthetic engine writes them at once
    # (its problems are realistic text: a better response prompt than the tiny model's noise).
    set_config(b.run_dir, "engine", "kind", "synthetic")
    for shard in stage_shards(b.ctx.cfg, "instructions", DOMAIN)[1:]:
        run_shard(RunContext(b.run_dir), "instructions", DOMAIN, shard.shard)
    set_config(b.run_dir, "engine", "kind", "vllm")
    run_shard(RunContext(b.run_dir), "select", DOMAIN, 0)

    for stage, subset in (("responses", 32 if b.quick else 64), ("multi_responses", 8 if b.quick else 16)):
        runs = {"pipeline": [], "ceiling": []}
        b.ceiling(stage)  # warm-up (prefix cache, allocator), for every variant alike
        for rep in range(b.reps):
            runs["pipeline"].append(b.pipeline(stage))
            runs["ceiling"].append(b.ceiling(stage))
            show(stage, rep, runs)
        runs["original"] = [b.original(stage, subset)]
        show(stage, "-", {"original": runs["original"]})
        stages[stage] = runs

    # Chunk-size sweep: the ratio against sequences per chunk (chunk_size x n) / max_num_seqs.
    sweep = []
    if not (args.no_sweep or b.quick):
        plan = [("responses", 64), ("multi_responses", 4)]
        for stage, chunk in plan:
            p, c = b.pipeline(stage, chunk_size=chunk), b.ceiling(stage)
            n = 7 if stage == "multi_responses" else 1
            sweep.append(
                {
                    "stage": stage,
                    "chunk_size": chunk,
                    "sequences_per_chunk": chunk * n,
                    "chunks": p["chunks"],
                    "pipeline_tok_s": round(p["tok_s"], 1),
                    "ceiling_tok_s": round(c["tok_s"], 1),
                    "ratio": round(p["tok_s"] / c["tok_s"], 3),
                    "engine_busy_share": round(p["engine_seconds"] / p["seconds"], 4),
                }
            )
            print(f"sweep {stage} chunk {chunk}: pipeline/ceiling {sweep[-1]['ratio']}", flush=True)
        set_config(b.run_dir, "sharding", "chunk_size", 256)

    rows, summary = [], {}
    for stage, runs in stages.items():
        ratios = [p["tok_s"] / c["tok_s"] for p, c in zip(runs["pipeline"], runs["ceiling"])]
        pipe = median([r["tok_s"] for r in runs["pipeline"]])
        ceil = median([r["tok_s"] for r in runs["ceiling"]])
        busy = median([r["engine_seconds"] / r["seconds"] for r in runs["pipeline"]])
        overhead_ms = median([1000 * r["overhead_seconds"] / r["rows"] for r in runs["pipeline"]])
        orig = runs.get("original", [{}])[0]
        last = runs["pipeline"][-1]
        summary[stage] = {
            "ratio_median": round(median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "pipeline_tok_s": round(pipe, 1),
            "ceiling_tok_s": round(ceil, 1),
            "engine_busy_share": round(busy, 4),
            "overhead_ms_per_row": round(overhead_ms, 3),
            "pipeline_chunks": last["chunks"],
            "rows": last["rows"],
            "output_tokens": last["tokens"],
            "pipeline_seconds": [round(r["seconds"], 2) for r in runs["pipeline"]],
            "pipeline_engine_seconds": [round(r["engine_seconds"], 2) for r in runs["pipeline"]],
            "done_json_seconds": [r["done_seconds"] for r in runs["pipeline"]],
            "ceiling_seconds": [round(r["seconds"], 2) for r in runs["ceiling"]],
            "original": (
                {
                    "how": orig["how"],
                    "prompts": orig["prompts"],
                    "tok_s": round(orig["tok_s"], 1),
                    "gain_pipeline_over_original": round(pipe / orig["tok_s"], 2),
                }
                if orig
                else None
            ),
        }
        rows.append(
            [
                stage,
                last["rows"],
                last["chunks"],
                f"{pipe:.0f}",
                f"{ceil:.0f}",
                f"**{median(ratios):.3f}**",
                f"{busy:.3f}",
                f"{overhead_ms:.2f}",
                f"{orig['tok_s']:.0f} ({orig['how']})" if orig else "-",
                f"{pipe / orig['tok_s']:.1f}x" if orig else "-",
            ]
        )
    print()
    print(
        table(
            [
                "stage",
                "rows",
                "chunks",
                "pipeline tok/s",
                "ceiling tok/s",
                "pipeline/ceiling",
                "engine busy share",
                "overhead ms/row",
                "original tok/s",
                "pipeline/original",
            ],
            rows,
        )
    )
    if sweep:
        print()
        print(
            table(
                ["stage", "chunk_size", "sequences/chunk", "chunks", "pipeline/ceiling", "engine busy share"],
                [
                    [
                        s["stage"],
                        s["chunk_size"],
                        s["sequences_per_chunk"],
                        s["chunks"],
                        s["ratio"],
                        s["engine_busy_share"],
                    ]
                    for s in sweep
                ],
            )
        )
    write_results(
        "generation_efficiency",
        {
            "quick": b.quick,
            "reps": b.reps,
            "model": str(b.ctx.model.path),
            "engine": "vllm (CPU build)" if b.gen.on_cpu else "vllm",
            "model_load_seconds": round(b.load_seconds, 1),
            "max_num_seqs": b.max_num_seqs,
            "max_num_batched_tokens": b.max_num_batched_tokens,
            "max_tokens": list(b.max_tokens),
            "response_temperature": b.response_temperature,
            "problems": {"instructions": b.n_ins, "responses": b.n_resp, "multi_responses": b.n_multi},
            "stages": summary,
            "chunk_sweep": sweep,
        },
    )
    b.cache.close()


if __name__ == "__main__":
    main()
