"""Fixtures of the tests against the real development cluster."""

from __future__ import annotations

import pytest

from slurm_helpers import devcluster_profile


@pytest.fixture()
def slurm_args(synthetic_args):
    """The synthetic-engine launch arguments, submitted to the dev cluster instead of run locally."""
    return [a if a != "local" else "slurm" for a in synthetic_args] + ["--profile", devcluster_profile()]
