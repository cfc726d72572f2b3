"""Where a run stands: `python -m magpie_hpc status RUN_DIR`.

`model` is what `--json` prints (`RunStatus`, pydantic; schema in status_schema.json), `collect`
builds it from the disk and SLURM, `render` turns it into the table, `watch` is the command (one
look, or a redraw until nothing is queued or running). Exit codes: 0 complete, or active without
failures; 1 any shard failed, or the run stopped incomplete; 2 not a run directory.
"""

from .collect import collect_status
from .model import (
    SCHEMA_PATH,
    Disagreement,
    FailedShard,
    MergeStatus,
    RunStatus,
    StageCost,
    StageStatus,
    StageThroughput,
    Totals,
    schema_text,
    write_schema,
)
from .render import render_table
from .watch import status_command

__all__ = [
    "SCHEMA_PATH",
    "Disagreement",
    "FailedShard",
    "MergeStatus",
    "RunStatus",
    "StageCost",
    "StageStatus",
    "StageThroughput",
    "Totals",
    "collect_status",
    "render_table",
    "schema_text",
    "status_command",
    "write_schema",
]
