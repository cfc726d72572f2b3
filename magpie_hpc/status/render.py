"""The text `python -m magpie_hpc status` prints: a head line, a table per domain and stage, the
merge, throughput and GPU time, then what failed (with its log's tail) and the notes."""

from __future__ import annotations

from pathlib import Path

from ..calibration import throughput_line
from ..pipeline import MERGE, stage as stage_spec
from ..run_summary import cost_lines
from .model import RunStatus, StageStatus


def _num(n: float | int | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}" if n >= 10 or n == int(n) else f"{n:.1f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds == 0:
        return "done"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


COLUMNS = [
    ("domain", "<"),
    ("stage", "<"),
    ("shards", ">"),
    ("done", ">"),
    ("run", ">"),
    ("pend", ">"),
    ("preempt", ">"),
    ("fail", ">"),
    ("cancel", ">"),
    ("records", ">"),
    ("tokens", ">"),
    ("tok/s", ">"),
    ("prob/h", ">"),
    ("ETA", ">"),
]


def _row_cells(r: StageStatus, first_of_domain: bool) -> list[str]:
    pct = f"{min(r.records_done / r.records_target, 1):.0%}" if r.records_target else "-"
    tokens = stage_spec(r.stage).generates  # what a scorer reads is not output
    return [
        r.domain if first_of_domain else "",
        r.stage,
        str(r.shards),
        str(r.done),
        str(r.running),
        str(r.pending),
        str(r.preempted),
        str(r.failed),
        str(r.cancelled),
        f"{r.records_done}/{r.records_target} {pct:>4}",
        _num(r.output_tokens) if tokens else "-",
        _num(r.tokens_per_second) if tokens else "-",
        _num(r.problems_per_hour),
        _duration(r.eta_seconds),
    ]


def render_table(status: RunStatus) -> str:
    s, t = status, status.totals
    source = {
        "sacct": "SLURM states from sacct + squeue",
        "squeue": "SLURM states from squeue only",
        "disk": "local run: disk only",
    }[s.source]
    head = f"{s.state.upper()}: {t.done}/{t.shards} shards done"
    parts = [
        f"{getattr(t, n)} {label}"
        for n, label in (
            ("running", "running"),
            ("pending", "pending"),
            ("preempted", "preempted"),
            ("failed", "failed"),
            ("cancelled", "cancelled"),
        )
        if getattr(t, n)
    ]
    head += (", " + ", ".join(parts) if parts else "") + f"; merge {s.merge.state}"
    if s.eta_seconds and not s.complete:
        head += f"; ETA {_duration(s.eta_seconds)} (running stages)"
    lines = [
        f"run {s.run_name}",
        f"  {s.run_dir}",
        f"  {s.executor} executor; {source}; checked {s.checked_at}",
        f"  {head}",
        "",
    ]
    table = [[name for name, _ in COLUMNS]]
    previous = None
    for r in s.stages:
        if r.domain != previous and previous is not None:
            table.append(None)
        table.append(_row_cells(r, r.domain != previous))
        previous = r.domain
    widths = [max(len(row[i]) for row in table if row) for i in range(len(COLUMNS))]

    def fmt(row: list[str]) -> str:
        return "  ".join(f"{cell:{align}{w}}" for cell, (_, align), w in zip(row, COLUMNS, widths)).rstrip()

    lines.append(fmt(table[0]))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["" if row is None else fmt(row) for row in table[1:]]
    m = s.merge
    merge_line = f"merge: {m.state}"
    if m.job_id:
        merge_line += (
            f" (job {m.job_id}"
            + (f", {m.slurm_state}" if m.slurm_state else "")
            + (f", {m.reason}" if m.reason and m.state == "pending" else "")
            + ")"
        )
    lines += ["", merge_line]
    if s.throughput:
        lines.append(throughput_line([r.model_dump() for r in s.throughput]))
    if s.gpu_hours:
        summary = {
            "gpu_hours_source": s.gpu_hours[0].source,
            "stages": {c.stage: {"total": c.model_dump()} for c in s.gpu_hours},
        }
        lines += ["GPU time:", *[f"  {line}" for line in cost_lines(summary)]]
    if t.retries or t.preemptions:
        lines.append(f"retries so far: {t.retries}; preemptions: {t.preemptions}")
    if s.failed:
        lines += ["", f"FAILED ({len(s.failed)}):"]
        for f in s.failed:
            what = MERGE if f.stage == MERGE else f"{f.stage} {f.domain} shard {f.shard}"
            slurm = ", ".join(
                x
                for x in (
                    f"job {f.job_id}" if f.job_id else "",
                    f"node {f.node}" if f.node else "",
                    f"exit code {f.exit_code}" if f.exit_code else "",
                    f"reason {f.reason}" if f.reason else "",
                )
                if x
            )
            lines.append(f"  {what}: {f.problem}" + (f"; {slurm}" if slurm else ""))
            if f.stage != MERGE:
                cap = " - failed permanently, resubmit will not retry it" if f.permanent else ""
                lines.append(f"    attempts: {f.attempts} of {f.max_attempts}{cap}")
            if f.last_error:
                lines.append(f"    last error (attempts.jsonl): {f.last_error.splitlines()[0][:300]}")
            if f.log_path:
                missing = not f.log_tail and not Path(f.log_path).exists()
                lines.append(f"    log: {f.log_path}" + (" (missing)" if missing else ""))
                lines += [f"      | {line}" for line in f.log_tail]
    if s.disagreements:
        lines += ["", "disk and SLURM disagree:"]
        lines += [f"  {d.message}" for d in s.disagreements]
    if s.source_note or s.notes:
        lines.append("")
        lines += [f"note: {n}" for n in s.notes]
    if s.failed and s.executor == "slurm":
        lines += ["", f"see why: python -m magpie_hpc logs {s.run_dir} --failed"]
    return "\n".join(lines) + "\n"
