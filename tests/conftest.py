"""Shared fixtures: tiny models written by the package itself, and run configs for tests."""

from __future__ import annotations

import os

import pytest

# Tiny models need a small KV cache; one engine process keeps CI's 2 cores for the work itself.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    from magpie_hpc.fixtures import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def synthetic_args(tiny_models, tmp_path):
    """CLI args for a fast local run on the synthetic engine (real tokenizer, no weights used)."""
    return [
        "launch",
        "--executor",
        "local",
        "--engine",
        "synthetic",
        "--model",
        str(tiny_models.deepseek),
        "--reward-model",
        str(tiny_models.reward),
        "--output-root",
        str(tmp_path / "data"),
    ]
