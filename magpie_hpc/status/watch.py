"""`python -m magpie_hpc status`: one look, or (`--watch`) a redraw until nothing is queued or running."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .collect import collect_status
from .render import render_table

CLEAR = "\x1b[H\x1b[2J"


def status_command(
    run_dir: Path | str, *, as_json: bool = False, watch: float | None = None, use_sacct: bool | None = None, out=None
) -> int:
    """What `python -m magpie_hpc status` does; returns the exit code."""
    out = out or sys.stdout
    if watch is None:
        status = collect_status(run_dir, use_sacct=use_sacct)
        out.write(status.model_dump_json(indent=2) + "\n" if as_json else render_table(status))
        return status.exit_code
    interval = max(float(watch), 1.0)
    redraw = out.isatty()
    while True:
        status = collect_status(run_dir, use_sacct=use_sacct)
        text = render_table(status)
        if status.active:
            text += f"\nrefreshing every {interval:g}s until nothing is queued or running (Ctrl-C to stop)\n"
        out.write((CLEAR if redraw else "\n") + text)
        out.flush()
        if not status.active:
            return status.exit_code
        time.sleep(interval)
