"""What a run cost and produced, per stage and domain: the merge's `run_summary` and its README
section, and the GPU-time figures `status` shows. The disk is read through the run's view
(store/view.py); which SLURM states count as preempted or cut short is slurm/states.py's.

No SLURM here: GPU-hours come from an accounting callable the SLURM merge task passes in
(`slurm.accounting.run_accounting`: every task run's elapsed seconds x GPUs, preempted and failed
runs included). Without one (local executor, or accounting unavailable) they are the wall-clock
seconds of each shard's final attempt from DONE.json, and labelled so.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import MagpieError
from .pipeline import PIPELINE, STAGE_NAMES, stage as stage_spec
from .plan import estimated_gpu_hours, loop_tokens_saved, stage_max_tokens, stage_shards
from .slurm import states
from .store import RunStore, RunView

Accounting = Callable[[RunStore], "dict | None"]


def _truncation(done: dict) -> tuple[int, int]:
    reasons = done.get("finish_reasons") or {}
    return int(reasons.get("length", 0)), int(sum(reasons.values()))


def _empty() -> dict:
    return {
        "gpu_seconds": 0.0,
        "gpu_hours": 0.0,
        "shards": 0,
        "records": 0,
        "output_tokens": 0,
        "prompt_tokens": 0,
        "truncated": 0,
        "completions": 0,
        "truncation_rate": None,
        "attempts": 0,
        "retries": 0,
        "preemptions": 0,
        "slurm_task_runs": 0,
        "stopped_as_loops": 0,
        "loop_tokens_saved": 0,
        "loop_gpu_hours_saved": None,
        "gpu_seconds_cut_short": 0.0,
        "discarded_tokens": 0,
        "gpu_hours_planned": 0.0,
        "gpu_hours_cut_short": 0.0,
        "gpu_hours_discarded": 0.0,
    }


# Figures _finish derives from the summed ones: never summed themselves.
_DERIVED = ("gpu_hours", "truncation_rate", "loop_gpu_hours_saved", "gpu_hours_cut_short", "gpu_hours_discarded")


def _add(into: dict, other: dict) -> None:
    for key, value in other.items():
        if key in _DERIVED:
            continue
        into[key] = None if into[key] is None or value is None else into[key] + value


def _finish(metrics: dict) -> dict:
    metrics["gpu_seconds"] = round(metrics["gpu_seconds"], 1)
    metrics["gpu_hours"] = round(metrics["gpu_seconds"] / 3600, 4)
    metrics["truncation_rate"] = (
        round(metrics["truncated"] / metrics["completions"], 4) if metrics["completions"] else None
    )
    # At the rate this stage generated (its tokens over its GPU-seconds, model loads included): what
    # the tokens the loop stop did not spend would have cost.
    if metrics["gpu_seconds"] > 0 and metrics["output_tokens"] > 0:
        rate = metrics["output_tokens"] / metrics["gpu_seconds"]
        metrics["loop_gpu_hours_saved"] = round(metrics["loop_tokens_saved"] / rate / 3600, 4)
    metrics["gpu_hours_cut_short"] = round(metrics["gpu_seconds_cut_short"] / 3600, 4)
    # The GPU time of the finished runs, shared out by tokens: what the thrown-away responses took.
    finished = max(0.0, metrics["gpu_seconds"] - metrics["gpu_seconds_cut_short"])
    share = metrics["discarded_tokens"] / metrics["output_tokens"] if metrics["output_tokens"] else 0.0
    metrics["gpu_hours_discarded"] = round(finished * min(share, 1.0) / 3600, 4)
    if metrics["gpu_hours_planned"] is not None:
        metrics["gpu_hours_planned"] = round(metrics["gpu_hours_planned"], 4)
    return metrics


def _planned(cfg, stage: str, domain: str) -> float | None:
    """The plan's GPU-hours for the stage (None where the planner cannot say, e.g. no architecture)."""
    try:
        return estimated_gpu_hours(cfg, stage, domain)
    except (MagpieError, KeyError, ValueError):
        return None


def build_run_summary(ctx, accounting: Accounting | None = None, *, throughput: list[dict] | None = None) -> dict:
    """GPU-hours, tokens, truncation, attempts, retries and preemptions per stage and domain.
    `throughput`: the measured throughput rows where the caller has them already (status)."""
    cfg, store = ctx.cfg, ctx.store
    view = RunView(store)
    acct, note = None, None
    if accounting is not None:
        try:
            acct = accounting(store)
        except Exception as exc:  # noqa: BLE001 - the summary must never fail the merge
            note = f"accounting failed ({type(exc).__name__}: {exc}); "
    per: dict[tuple[str, str], dict] = {}
    for spec in PIPELINE:
        stage = spec.name
        for domain in cfg.domains:
            m = _empty()
            m["gpu_hours_planned"] = _planned(cfg, stage, domain)
            for shard in stage_shards(cfg, stage, domain):
                disk = view.shard(stage, domain, shard.shard, progress=False)
                done = disk.done or {}
                m["shards"] += 1
                m["records"] += disk.records
                m["output_tokens"] += int(done.get("output_tokens", 0))
                m["prompt_tokens"] += int(done.get("prompt_tokens", 0))
                truncated, completions = _truncation(done)
                m["truncated"] += truncated
                m["completions"] += completions
                if spec.generates:  # the engine's loop stop can end any generated request early
                    loops = int((done.get("finish_reasons") or {}).get("repetition", 0))
                    m["stopped_as_loops"] += loops
                    m["loop_tokens_saved"] += loop_tokens_saved(
                        stage_max_tokens(cfg, stage, domain), loops, int(done.get("repetition_output_tokens", 0))
                    )
                if spec.responds:  # a cut-off response ran to max_tokens; a loop, as far as it got
                    m["discarded_tokens"] += truncated * stage_max_tokens(cfg, stage, domain) + int(
                        done.get("repetition_output_tokens", 0)
                    )
                m["attempts"] += len(disk.starts)
                m["retries"] += disk.retries
                if acct is None:
                    m["preemptions"] += disk.interrupted
                    if spec.gpu:
                        m["gpu_seconds"] += float(done.get("seconds", 0.0))
            per[(stage, domain)] = m
    if acct is not None:
        for rec in acct.get("records", []):
            m = per.get((rec["stage"], rec["domain"]))
            if m is None:
                continue
            gpu_seconds = float(rec.get("elapsed_seconds", 0)) * int(rec.get("gpus", 0))
            m["gpu_seconds"] += gpu_seconds
            if rec.get("state") in states.CUT_SHORT:
                m["gpu_seconds_cut_short"] += gpu_seconds
            m["slurm_task_runs"] += 1
            if rec.get("state") in states.PREEMPTED:
                m["preemptions"] += 1
        source = acct.get("source", "sacct")
        note = (
            "SLURM accounting: elapsed seconds x allocated GPUs of every run of every task "
            "(failed, preempted and requeued runs included)"
        )
    else:
        source = "wall_clock"
        note = (note or "") + (
            "no SLURM accounting: wall-clock seconds of each shard's final attempt "
            "(DONE.json `seconds`), one GPU assumed per GPU stage; earlier attempts not counted"
        )
    stages: dict[str, dict] = {}
    total = _empty()
    for stage in STAGE_NAMES:
        stage_total = _empty()
        for domain in cfg.domains:
            _add(stage_total, per[(stage, domain)])
        _add(total, stage_total)
        stages[stage] = {"total": _finish(stage_total), "domains": {d: _finish(per[(stage, d)]) for d in cfg.domains}}
    if throughput is None:
        from .calibration import measured_throughput_or_none

        throughput = measured_throughput_or_none(ctx)[0]
    return {
        "gpu_hours_source": source,
        "gpu_hours_note": note,
        "total": _finish(total),
        "stages": stages,
        "throughput": throughput,
    }


def _hours(hours: float) -> str:
    return f"{hours:,.2f}" if hours >= 1 else f"{hours:.4f}"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def render_run_summary(summary: dict) -> str:
    """The dataset README's "Run summary" section (Markdown)."""
    label = "GPU-hours" if summary["gpu_hours_source"] != "wall_clock" else "wall-clock hours"
    lines = [
        "",
        "## Run summary",
        "",
        f"{label} per stage and domain ({summary['gpu_hours_note']}). Tokens are generated tokens; "
        "truncation is the share of completions that hit `max_tokens`; attempts are task starts "
        "recorded in each shard's `attempts.jsonl`, retries those beyond the first.",
        "",
        f"| stage | domain | {label} | tokens | truncated | attempts | retries | preemptions |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for stage, block in summary["stages"].items():
        rows = list(block["domains"].items())
        if len(rows) > 1:
            rows.append(("all", block["total"]))
        for domain, m in rows:
            lines.append(
                f"| {stage} | {domain} | {_hours(m['gpu_hours'])} | {m['output_tokens']:,} | "
                f"{_pct(m['truncation_rate'])} | {m['attempts']} | {m['retries']} | {m['preemptions']} |"
            )
    t = summary["total"]
    loop_lines = loop_savings_lines(summary)
    lines.append(
        f"| **total** | | **{_hours(t['gpu_hours'])}** | **{t['output_tokens']:,}** | {_pct(t['truncation_rate'])} | "
        f"{t['attempts']} | {t['retries']} | {t['preemptions']} |"
    )
    if summary.get("throughput"):
        from .calibration import per_stage

        lines += [
            "",
            "Generation tokens/s per GPU, measured (done shards run from their start, model load excluded) vs planned:",
            "",
            "| stage | measured | planned |",
            "| --- | ---: | ---: |",
        ]
        for stage, (measured, planned) in per_stage(summary["throughput"]).items():
            lines.append(f"| {stage} | {'-' if measured is None else f'{measured:,.0f}'} | {planned:,.0f} |")
    lines += ["", *cost_lines(summary, markdown=True)]
    lines.append("")
    if loop_lines:
        lines += [
            "Requests vLLM stopped as loops (finish reason `repetition`), and the tokens they did not spend "
            "(`max_tokens` minus what they generated) at each stage's own tokens per second:",
            "",
            *[f"- {line}" for line in loop_lines],
            "",
        ]
    return "\n".join(lines)


def loop_savings_lines(summary: dict) -> list[str]:
    """One line per generation stage that stopped loops: count, tokens and GPU-hours saved."""
    lines = []
    for stage, block in summary["stages"].items():
        m = block["total"]
        if not m.get("stopped_as_loops"):
            continue
        hours = m.get("loop_gpu_hours_saved")
        unit = "GPU-hours" if summary.get("gpu_hours_source") != "wall_clock" else "wall-clock hours"
        lines.append(
            f"{stage}: {m['stopped_as_loops']} stopped as loops, {m['loop_tokens_saved']:,} tokens not "
            "generated" + (f" (~{_hours(hours)} {unit})" if hours is not None else "")
        )
    return lines


def cost_lines(summary: dict, *, markdown: bool = False) -> list[str]:
    """Per GPU stage: the hours spent beside the plan's, and how much of them went to runs a
    preemption, kill or failure cut short and to responses thrown away (cut off at max_tokens or
    stopped as loops: not in the SFT file, never a DPO side)."""
    unit = "GPU-hours" if summary.get("gpu_hours_source") != "wall_clock" else "wall-clock hours"
    lines = []
    for stage, block in summary["stages"].items():
        if not stage_spec(stage).gpu:
            continue
        m = block["total"]
        spent = m["gpu_hours"]
        planned = m.get("gpu_hours_planned")
        parts = [f"{_hours(spent)} {unit} spent" + (f" of {_hours(planned)} planned" if planned is not None else "")]
        for key, what in (
            ("gpu_hours_cut_short", "on runs cut short (preempted, killed, failed)"),
            ("gpu_hours_discarded", "on responses thrown away (cut off or stopped as loops)"),
        ):
            value = m.get(key) or 0.0
            if key == "gpu_hours_discarded" and not stage_spec(stage).responds:
                continue
            parts.append(f"{_hours(value)} ({_pct(value / spent if spent else None)}) {what}")
        lines.append(("- " if markdown else "") + f"{stage}: " + "; ".join(parts))
    if summary.get("gpu_hours_source") == "wall_clock" and lines:
        lines.append(
            ("- " if markdown else "") + "(no SLURM accounting: runs cut short are not timed, "
            "so their share shows as 0)"
        )
    return lines
