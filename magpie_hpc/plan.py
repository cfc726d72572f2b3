"""Split each domain's count into shards, per stage, and derive per-shard seeds.

Instruction shards generate candidates; the per-domain `select` step turns them into exactly
`count` instructions with ids `<domain>-<index>`; response, multi-response and reward shards then
cover index ranges of that list. Reward shard i scores multi-response shard i (same ranges), which
is what lets SLURM chain them task by task (`aftercorr`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from .config import RunConfig
from .pipeline import PIPELINE, stage as stage_spec


@dataclass(frozen=True)
class ShardRange:
    shard: int
    start: int  # first instruction index (instruction stage: first candidate slot)
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def shard_ranges(count: int, shard_size: int) -> list[ShardRange]:
    """Balanced shards of at most shard_size: 10 by 4 gives 4,3,3 rather than 4,4,2."""
    n = max(1, math.ceil(count / shard_size))
    base, extra = divmod(count, n)
    ranges, start = [], 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        ranges.append(ShardRange(i, start, start + size))
        start += size
    return ranges


def shard_size(cfg: RunConfig, stage: str, domain: str) -> int:
    """The configured size, or what fills `target_task_hours` of one GPU by the throughput model."""
    explicit = getattr(cfg.sharding, stage)
    if explicit is not None:
        return explicit
    t = cfg.throughput
    per_problem = estimated_tokens(cfg, stage, domain) / cfg.domain(domain).count
    budget = max(cfg.sharding.target_task_hours * 3600 - t.model_load_seconds, 60.0)
    task_rate = tokens_per_second_per_gpu(cfg, stage, domain) * task_gpus(cfg, stage)
    return max(1, int(budget * task_rate / per_problem))


def task_gpus(cfg: RunConfig, stage: str) -> int:
    """GPUs one task of the stage holds: the generator's tensor-parallel group; the reward model one."""
    if not stage_spec(stage).generates:
        return 1
    from .roofline import choose_tensor_parallel, explicit_tensor_parallel

    # a configured group needs no architecture (launch's validate checks that it fits)
    return explicit_tensor_parallel(cfg) or choose_tensor_parallel(cfg).tensor_parallel_size


def tokens_per_second_per_gpu(cfg: RunConfig, stage: str, domain: str) -> float:
    """Planned output (rewards: scored) tokens/s per GPU: a configured figure, else the roofline's."""
    t = cfg.throughput
    if stage_spec(stage).engine == "scorer":
        return t.reward_tokens_per_second
    if t.generation_tokens_per_second is not None:
        return t.generation_tokens_per_second
    from .model_arch import resolve_gpu
    from .roofline import model_key, stage_layout

    measured = t.measured.get(model_key(cfg), {}).get(resolve_gpu(cfg).name, {}).get(stage)
    if measured is not None:  # a pilot run's figure (calibrate) beats the roofline's
        return measured

    return stage_layout(cfg, stage, domain, task_gpus(cfg, stage)).tokens_per_second_per_gpu


def stage_shards(cfg: RunConfig, stage: str, domain: str) -> list[ShardRange]:
    count = cfg.domain(domain).count
    key = stage_spec(stage).sharding
    if key is None:
        return [ShardRange(0, 0, count)]
    return shard_ranges(count, shard_size(cfg, key, domain))


def instruction_target(cfg: RunConfig, shard: ShardRange) -> int:
    """Clean instructions a shard keeps: its share plus the oversample margin for cross-shard dedup."""
    return math.ceil(shard.size * (1 + cfg.instructions.oversample))


def derive_seed(run_seed: int, *parts: object) -> int:
    """Distinct, reproducible seeds per (stage, domain, shard, chunk): never the wall clock (defect 4)."""
    digest = hashlib.sha256(repr((run_seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def instruction_id(domain: str, index: int) -> str:
    return f"{domain}-{index}"


def estimated_tokens(cfg: RunConfig, stage: str, domain: str) -> float:
    """Tokens a stage generates (or scores) for a domain, from the token budgets and fill rates: an
    instruction fills `instruction_fill` of its budget, a response `response_fill`; a scorer reads
    the instruction and the response it scores (the upstream stage's budget)."""
    spec, d, t = stage_spec(stage), cfg.domain(domain), cfg.throughput
    requests = d.count * spec.samples(cfg)
    instruction = d.max_tokens_instruction * t.instruction_fill
    if spec.engine == "scorer":
        scored = stage_spec(spec.upstream)
        return requests * (instruction + scored.max_tokens(cfg, domain) * t.response_fill)
    if spec.generates:
        fill = t.response_fill if spec.responds else t.instruction_fill
        return requests * spec.max_tokens(cfg, domain) * fill
    return 0.0


def estimated_gpu_hours(cfg: RunConfig, stage: str, domain: str) -> float:
    if not stage_spec(stage).gpu:
        return 0.0
    t = cfg.throughput
    rate = tokens_per_second_per_gpu(cfg, stage, domain)
    shards = len(stage_shards(cfg, stage, domain))
    # every GPU of a task waits out the model load
    return (estimated_tokens(cfg, stage, domain) / rate + shards * t.model_load_seconds * task_gpus(cfg, stage)) / 3600


def plan_summary(cfg: RunConfig) -> dict:
    """Shard counts per stage and domain, as recorded in run.json and printed by --dry-run."""
    return {
        domain: {spec.name: len(stage_shards(cfg, spec.name, domain)) for spec in PIPELINE} for domain in cfg.domains
    }


def stage_max_tokens(cfg: RunConfig, stage: str, domain: str) -> int:
    """The `max_tokens` each request of a generation stage runs to at most."""
    return stage_spec(stage).max_tokens(cfg, domain)


def loop_tokens_saved(max_tokens: int, loops: int, loop_output_tokens: int) -> int:
    """Tokens the loop stop did not spend: each loop-stopped request would have run on to max_tokens
    (a loop does not end by itself), minus what it did generate before the stop."""
    return max(0, loops * max_tokens - loop_output_tokens)


def planned_loop_savings(cfg: RunConfig, loop_rate: float, stopped_at: float) -> dict[str, dict]:
    """What the loop stop would save for this config if `loop_rate` of the responses loop and each is
    stopped after `stopped_at` of its max_tokens: {stage: {"tokens", "gpu_hours"}} at the planned
    throughput. The real loop rate and stop point come from a pilot run (run summary)."""
    out = {}
    for spec in (s for s in PIPELINE if s.responds):
        stage, n = spec.name, spec.samples(cfg)
        per_domain = {
            d: cfg.domain(d).count * n * loop_rate * stage_max_tokens(cfg, stage, d) * (1 - stopped_at)
            for d in cfg.domains
        }
        gpu_seconds = sum(t / tokens_per_second_per_gpu(cfg, stage, d) for d, t in per_domain.items())
        out[stage] = {"tokens": int(sum(per_domain.values())), "gpu_hours": round(gpu_seconds / 3600, 2)}
    return out


def stage_plan(cfg: RunConfig) -> dict:
    """Per stage and domain: the layout, planned tokens/s per GPU, tasks and GPU-hours (--dry-run)."""
    from .model_arch import resolve_gpu
    from .roofline import choose_tensor_parallel, stage_layout

    choice = choose_tensor_parallel(cfg)
    gpu = resolve_gpu(cfg).name
    stages = []
    for spec in PIPELINE:
        stage = spec.name
        for domain in cfg.domains:
            entry = {
                "stage": stage,
                "domain": domain,
                "gpu": None,
                "tensor_parallel_size": None,
                "kv_cache_tokens": None,
                "max_num_seqs": None,
                "tokens_per_second_per_gpu": None,
                "tasks": len(stage_shards(cfg, stage, domain)),
                "gpu_hours": round(estimated_gpu_hours(cfg, stage, domain), 2),
            }
            if spec.engine == "scorer":
                entry.update(
                    gpu=gpu, tensor_parallel_size=1, tokens_per_second_per_gpu=cfg.throughput.reward_tokens_per_second
                )
            elif spec.generates:
                lay = stage_layout(cfg, stage, domain, choice.tensor_parallel_size)
                entry.update(
                    gpu=gpu,
                    tensor_parallel_size=choice.tensor_parallel_size,
                    kv_cache_tokens=lay.kv_cache_tokens,
                    max_num_seqs=cfg.engine.max_num_seqs or lay.max_num_seqs,
                    tokens_per_second_per_gpu=round(tokens_per_second_per_gpu(cfg, stage, domain), 1),
                )
            stages.append(entry)
    return {
        "gpu": gpu,
        "tensor_parallel_size": choice.tensor_parallel_size,
        "tensor_parallel_source": "config" if choice.explicit else "planner",
        "tensor_parallel_note": choice.note,
        "generation_gpu_hours_by_tensor_parallel": {str(tp): round(h, 1) for tp, h in choice.hours.items()},
        "stages": stages,
        "total_gpu_hours": round(sum(s["gpu_hours"] for s in stages), 1),
    }


def render_stage_plan(model: str, executor: str, plan: dict) -> str:
    """The plan as `launch --dry-run` prints it: one row per stage and domain."""

    def num(v, fmt="{:,}"):
        return "-" if v is None else fmt.format(v)

    source = plan["tensor_parallel_source"]
    lines = [f"model {model}, executor {executor}, tensor parallel {plan['tensor_parallel_size']} ({source})"]
    if plan["tensor_parallel_note"]:
        lines.append(f"note: {plan['tensor_parallel_note']}")
    head = ("stage", "domain", "gpu", "tp", "kv-cache tokens", "seqs", "tokens/s/GPU", "tasks", "GPU-hours")
    rows = [head] + [
        (
            s["stage"],
            s["domain"],
            s["gpu"] or "-",
            num(s["tensor_parallel_size"]),
            num(s["kv_cache_tokens"]),
            num(s["max_num_seqs"]),
            num(s["tokens_per_second_per_gpu"], "{:,.0f}"),
            num(s["tasks"]),
            f"{s['gpu_hours']:,.1f}",
        )
        for s in plan["stages"]
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines.append(f"total GPU-hours: {plan['total_gpu_hours']:,.1f}")
    return "\n".join(lines)
