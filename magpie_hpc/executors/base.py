"""Executors: the same DAG of stage shards, run here (local) or as SLURM job arrays (slurm)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path


class Executor(ABC):
    name: str

    def preflight(self, cfg) -> None:
        """Checks that must pass before the run directory is created (nothing by default)."""

    @abstractmethod
    def run(self, run_dir: Path) -> object:
        """Schedule (slurm) or execute (local) every shard of the run, then the merge."""
