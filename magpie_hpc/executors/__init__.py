"""Interchangeable executors behind one base class."""

from .base import Executor


def get_executor(name: str) -> Executor:
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor()
    if name == "slurm":
        from .slurm import SlurmExecutor

        return SlurmExecutor()
    raise ValueError(f"unknown executor {name!r}")


__all__ = ["Executor", "get_executor"]
