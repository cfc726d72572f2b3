"""Measured generation throughput per GPU beside the planned figure, and `calibrate`.

Each done generation shard records its output tokens, its seconds and its model-load seconds
(DONE.json). Per stage and domain, the measured figure is output tokens over GPU-seconds spent
generating: (seconds - model_load_seconds) x the task's GPUs (the tensor-parallel group). Shards
resumed after a restart are left out: their DONE.json counts the tokens of every attempt's chunks
but only the last attempt's seconds. `calibration_toml` turns the figures into a `--config` snippet
(`[throughput.measured."MODEL"."GPU"]`) so that a pilot run (`--count 256`) sizes the full one.
"""

from __future__ import annotations

import json

from .errors import MagpieError
from .hardware import find_gpu
from .pipeline import generation_stages
from .plan import stage_shards, tokens_per_second_per_gpu
from .store import RunView


def measured_throughput_or_none(ctx) -> tuple[list[dict], str | None]:
    """For status and the run summary, which must not fail on it: (rows, None) or ([], why not)."""
    try:
        return measured_throughput(ctx), None
    except MagpieError as exc:
        return [], f"no planned/measured throughput: {exc}"


def measured_throughput(ctx) -> list[dict]:
    """Per generation stage and domain: planned and measured tokens/s per GPU."""
    from .model_arch import resolve_gpu

    cfg, gpus = ctx.cfg, ctx.model.tensor_parallel_size
    view = RunView(ctx.store)
    configured = resolve_gpu(cfg).name
    rows = []
    for stage in (s.name for s in generation_stages()):
        for domain in cfg.domains:
            tokens, gpu_seconds, shards, devices = 0, 0.0, 0, set()
            for rng in stage_shards(cfg, stage, domain):
                done = view.done(stage, domain, rng.shard)
                if not done or done.get("resumed_at_chunk", 0) or "output_tokens" not in done:
                    continue
                busy = float(done.get("seconds", 0.0)) - float(done.get("model_load_seconds", 0.0))
                if busy <= 0:
                    continue
                tokens += int(done["output_tokens"])
                gpu_seconds += busy * gpus
                shards += 1
                if done.get("gpu"):
                    devices.add(done["gpu"])
            known = {(find_gpu(d).name if find_gpu(d) else d) for d in devices}
            rows.append(
                {
                    "stage": stage,
                    "domain": domain,
                    "planned_tokens_per_second_per_gpu": round(tokens_per_second_per_gpu(cfg, stage, domain), 1),
                    "measured_tokens_per_second_per_gpu": round(tokens / gpu_seconds, 1) if gpu_seconds else None,
                    "measured_shards": shards,
                    "output_tokens": tokens,
                    "gpu_seconds": round(gpu_seconds, 3),
                    "tensor_parallel_size": gpus,
                    "gpu": known.pop() if len(known) == 1 else configured,
                    "measured_on_gpu": bool(devices),
                }
            )
    return rows


def calibration_toml(ctx) -> str:
    """A `--config` snippet with the measured figures: per stage, tokens over GPU-seconds of all
    measured shards of the stage (every domain together)."""
    from .roofline import model_key

    rows = [r for r in measured_throughput(ctx) if r["measured_tokens_per_second_per_gpu"] is not None]
    if not rows:
        from .errors import ConfigError

        raise ConfigError(
            f"calibrate: {ctx.run_dir} has no done generation shard that ran from its start; "
            "run a pilot (e.g. --count 256) to the end first"
        )
    by_gpu: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        by_gpu.setdefault(r["gpu"], {}).setdefault(r["stage"], []).append(r)
    model = model_key(ctx.cfg)
    lines = [
        f"# Measured by `python -m magpie_hpc calibrate` from {ctx.run_dir}",
        f"# tensor parallel {rows[0]['tensor_parallel_size']}; pass this file with --config",
    ]
    for gpu, stages in by_gpu.items():
        if not any(r["measured_on_gpu"] for rs in stages.values() for r in rs):
            lines.append(f"# not measured on a GPU: the run's engine had none; keyed by its hardware.gpu ({gpu})")
        lines.append(f"[throughput.measured.{json.dumps(model)}.{json.dumps(gpu)}]")  # TOML quoted keys
        for stage, rs in stages.items():
            figure = sum(r["output_tokens"] for r in rs) / sum(r["gpu_seconds"] for r in rs)
            planned = rs[0]["planned_tokens_per_second_per_gpu"]
            shards = sum(r["measured_shards"] for r in rs)
            lines.append(f"{stage} = {figure:.1f}  # planned {planned:,.1f}; {shards} shard(s)")
    return "\n".join(lines) + "\n"


def per_stage(rows: list[dict]) -> dict[str, tuple[float | None, float]]:
    """stage -> (measured over all domains, planned: the mean of the domains' figures)."""
    out = {}
    for stage in (s.name for s in generation_stages()):
        mine = [r for r in rows if r["stage"] == stage]
        if not mine:
            continue
        seconds = sum(r["gpu_seconds"] for r in mine)
        measured = sum(r["output_tokens"] for r in mine) / seconds if seconds else None
        out[stage] = (measured, sum(r["planned_tokens_per_second_per_gpu"] for r in mine) / len(mine))
    return out


def throughput_line(rows: list[dict]) -> str:
    """`status`: one line, per generation stage, measured vs planned tokens/s per GPU."""
    parts = [f"{stage}: {'-' if m is None else f'{m:,.0f}'} vs {p:,.0f}" for stage, (m, p) in per_stage(rows).items()]
    where = "" if any(r["measured_on_gpu"] for r in rows) else " (no GPU: not comparable)"
    return f"tokens/s per GPU, measured vs planned{where}: " + "; ".join(parts)
