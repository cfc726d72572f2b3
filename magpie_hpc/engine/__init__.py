"""Engines behind one interface: vLLM and transformers for real, synthetic for orchestration tests."""

from .base import Completion, EngineFault, Generator, PromptResult, Sampling, Scorer
from .factory import EngineCache, build_generator, build_scorer

__all__ = [
    "Completion", "EngineCache", "EngineFault", "Generator", "PromptResult", "Sampling", "Scorer",
    "build_generator", "build_scorer",
]
