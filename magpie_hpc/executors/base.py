"""Executors: the same DAG of stage shards, run here (local) or as SLURM job arrays (slurm).

Every executor covers a run's whole lifecycle behind one interface: `describe` (what a dry run
shows), `preflight` (checks before the run directory exists), `launch` and `resume`; launch and
resume return the same `LaunchResult`, whatever the executor did to get there.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the SLURM modules import submitit: only the SLURM executor loads them
    from ..config import RunConfig
    from ..slurm.submit import Piece

Notify = Callable[[str], None]  # a line for the person at the terminal, shown at once


def silent(line: str) -> None:
    """The default `notify`: a caller that shows nothing (a test, a script) passes none."""


@dataclass(frozen=True)
class PlanDescription:
    """What `launch --dry-run` shows: the submission plan and the per-stage layout."""

    model: str
    executor: str
    submission: dict  # slurm.submit.describe_plan: arrays, sizes, dependencies, resources
    stages: dict  # plan.stage_plan: layout, tokens/s per GPU, GPU-hours per stage and domain

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "executor": self.executor, **self.submission, **self.stages}, indent=2)

    def text(self) -> str:
        from ..plan import render_stage_plan

        return render_stage_plan(self.model, self.executor, self.stages)


@dataclass(frozen=True)
class LaunchResult:
    """What launching or resuming a run did. The CLI prints `err` to stderr, then `out` to stdout,
    and exits with `exit_code`."""

    executor: str
    run_dir: Path
    submitted: tuple[Piece, ...] = ()  # the arrays handed to the scheduler, if the executor queues work
    summary: dict | None = None  # the merged run's summary, if the executor ran the run to its end
    failed: tuple[str, ...] = ()  # shards past their attempt cap, left alone
    out: tuple[str, ...] = ()
    err: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Executor(ABC):
    name: str

    def preflight(self, cfg: RunConfig) -> None:
        """Checks that must pass before the run directory is created (nothing by default)."""

    def max_array_size(self) -> int:
        """The largest job array a dry run plans with: SLURM's default unless a cluster says otherwise."""
        from ..slurm.cluster import DEFAULT_MAX_ARRAY_SIZE

        return DEFAULT_MAX_ARRAY_SIZE

    def describe(self, cfg: RunConfig) -> PlanDescription:
        """The plan of a run of `cfg`, with the model as configured; nothing is written or submitted."""
        from ..models import tensor_parallel_size
        from ..plan import stage_plan
        from ..slurm.submit import describe_plan

        stages = stage_plan(cfg)  # a layout that cannot run is an error here, before anything else
        submission = describe_plan(cfg, self.max_array_size(), tensor_parallel_size(cfg))
        return PlanDescription(model=cfg.model, executor=self.name, submission=submission, stages=stages)

    @abstractmethod
    def launch(self, run_dir: Path) -> LaunchResult:
        """Schedule (slurm) or execute (local) every shard of a new run, then the merge."""

    @abstractmethod
    def resume(self, run_dir: Path, notify: Notify = silent) -> LaunchResult:
        """Carry on a run: redo damaged shards and do (or schedule) only what is not done."""
