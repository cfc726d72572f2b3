"""Interchangeable executors behind one base class."""

import shutil

from .base import Executor, LaunchResult, Notify, PlanDescription, silent


def default_executor() -> str:
    """The executor a config that names none gets: SLURM where sbatch is on PATH."""
    return "slurm" if shutil.which("sbatch") else "local"


def get_executor(name: str | None = None) -> Executor:
    """The executor called `name` (None: `default_executor()`); its module is imported only when
    chosen, so a local run never loads submitit."""
    name = name or default_executor()
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor()
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor()
    raise ValueError(f"unknown executor {name!r}")


__all__ = ["Executor", "LaunchResult", "Notify", "PlanDescription", "default_executor", "get_executor", "silent"]
