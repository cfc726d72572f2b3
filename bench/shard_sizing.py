"""Benchmark 6: the launcher's shard-size choices at 44K and 1M problems (pure computation).

For the default 44,000-problem run (all six domains, the A100 profile) and a 1,000,000-problem run
(every domain's count scaled proportionally), from the launcher's own code
(`magpie_hpc.plan.shard_size` / `stage_shards` / `estimated_gpu_hours` and
`magpie_hpc.slurm.submit.describe_plan`, MaxArraySize 1001 as SLURM's default):
per stage the tasks, arrays (split at MaxArraySize), problems per task, hours per task, chunk
files and other files written, expected GPU-hours, and the share of those spent loading models.

Usage: python bench/shard_sizing.py [--quick]   (same output; takes a second)
"""

from __future__ import annotations

import math

from _common import table, write_results

MAX_ARRAY_SIZE = 1001
STAGES = ("instructions", "select", "responses", "multi_responses", "rewards")
# Per finished shard folder besides its part-NNNNN.parquet chunks: DONE.json, attempts.jsonl, .lock
# (owner.json is removed on release).
FILES_PER_SHARD = 3


def plan_for(total: int | None):
    from magpie_hpc.config import load_config
    from magpie_hpc.plan import estimated_gpu_hours, estimated_tokens, stage_shards, task_gpus
    from magpie_hpc.registry import DOMAIN_PRESETS
    from magpie_hpc.slurm.submit import describe_plan

    counts = None
    if total is not None:
        base = sum(p["count"] for p in DOMAIN_PRESETS.values())
        counts = {d: round(p["count"] * total / base) for d, p in DOMAIN_PRESETS.items()}
    cfg = load_config(profile="a100", counts=counts)
    plan = describe_plan(cfg, MAX_ARRAY_SIZE, task_gpus(cfg, "responses"))
    t = cfg.throughput
    rows = []
    for stage in STAGES:
        arrays = [a for a in plan["arrays"] if a["stage"] == stage]
        shards = [s for d in cfg.domains for s in stage_shards(cfg, stage, d)]
        tasks = len(shards)
        chunks = 0
        for d in cfg.domains:
            for s in stage_shards(cfg, stage, d):
                if stage == "instructions":
                    # Samples drawn: kept target / keep rate, in chunks of chunk_size samples.
                    drawn = s.size * (1 + cfg.instructions.oversample) / t.keep_rate * 1.1
                    chunks += math.ceil(drawn / cfg.sharding.chunk_size)
                elif stage == "select":
                    chunks += 1
                else:
                    chunks += math.ceil(s.size / cfg.sharding.chunk_size)
        gpu_h = sum(estimated_gpu_hours(cfg, stage, d) for d in cfg.domains)
        gpus = task_gpus(cfg, stage)  # GPUs per task: hours per task are wall hours, GPU-hours / gpus
        load_h = tasks * t.model_load_seconds * gpus / 3600 if stage not in ("select",) else 0.0
        tokens = sum(estimated_tokens(cfg, stage, d) for d in cfg.domains)
        rows.append(
            {
                "stage": stage,
                "tasks": tasks,
                "arrays": sum(len(a["arrays"]) for a in arrays),
                "array_sizes": [n for a in arrays for n in a["arrays"]],
                "problems_per_task": max(a["problems_per_task"] for a in arrays),
                "gpus_per_task": gpus if stage != "select" else 0,
                "hours_per_task": round(gpu_h / tasks / gpus, 2) if gpu_h else 0.0,
                "chunk_files": chunks,
                "files": chunks + FILES_PER_SHARD * tasks,
                "estimated_tokens": round(tokens),
                "estimated_gpu_hours": round(gpu_h, 1),
                "model_load_share": round(load_h / gpu_h, 3) if gpu_h else None,
            }
        )
    return cfg, plan, rows


def main() -> None:
    results = {}
    for label, total in (("44K default (A100 profile)", None), ("1M, domains scaled", 1_000_000)):
        cfg, plan, rows = plan_for(total)
        results[label] = {
            "total_problems": cfg.total_problems,
            "counts": {d: cfg.domain(d).count for d in cfg.domains},
            "estimated_gpu_hours": plan["estimated_gpu_hours"],
            "stages": rows,
        }
        print(
            f"\n### {label}: {cfg.total_problems:,} problems, "
            f"{plan['estimated_gpu_hours']['total']:,} GPU-hours estimated\n"
        )
        print(
            table(
                [
                    "stage",
                    "tasks",
                    "arrays (split at 1001)",
                    "problems/task",
                    "hours/task",
                    "chunk files",
                    "files",
                    "GPU-hours",
                    "model-load share",
                ],
                [
                    [
                        r["stage"],
                        r["tasks"],
                        r["arrays"],
                        f"{r['problems_per_task']:,}",
                        r["hours_per_task"],
                        f"{r['chunk_files']:,}",
                        f"{r['files']:,}",
                        f"{r['estimated_gpu_hours']:,}",
                        "-" if r["model_load_share"] is None else f"{r['model_load_share']:.1%}",
                    ]
                    for r in rows
                ],
            )
        )
    from magpie_hpc.config import ThroughputConfig, load_config
    from magpie_hpc.models import resolve_model
    from magpie_hpc.slurm.submit import stage_resources

    # What a task asks SLURM for against what vLLM will need, per menu model.
    gpus_check = {}
    for key in ("1", "2", "3", "4", "5"):
        cfg_m = load_config(profile="a100", overrides={"model": key})
        model = resolve_model(key, cfg_m, need_weights=False)
        gpus_check[key] = {
            "model": model.name,
            "tensor_parallel_size": model.tensor_parallel_size,
            "gpus_per_task": stage_resources(cfg_m, "multi_responses", model.tensor_parallel_size).gpus,
        }
    print(
        "\n"
        + table(
            ["--model", "hub id", "vLLM tensor_parallel_size", "GPUs a generation task requests"],
            [
                [
                    k,
                    v["model"],
                    v["tensor_parallel_size"],
                    f"**{v['gpus_per_task']}**"
                    if v["gpus_per_task"] < v["tensor_parallel_size"]
                    else v["gpus_per_task"],
                ]
                for k, v in gpus_check.items()
            ],
        )
    )
    results["gpus_per_task_vs_tensor_parallel"] = gpus_check

    cfg = load_config(profile="a100")
    results["throughput_defaults"] = ThroughputConfig().model_dump()
    results["sharding_defaults"] = cfg.sharding.model_dump()
    write_results("shard_sizing", {"max_array_size": MAX_ARRAY_SIZE, "plans": results})


if __name__ == "__main__":
    main()
