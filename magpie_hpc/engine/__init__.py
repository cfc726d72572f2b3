"""Engines behind one interface: vLLM and transformers for real, synthetic for orchestration tests."""

from .base import Completion, EngineFault, Generator, PromptResult, Request, Sampling, Scorer
from .factory import EngineCache, build_generator, build_scorer

__all__ = [
    "Completion",
    "EngineCache",
    "EngineFault",
    "Generator",
    "PromptResult",
    "Request",
    "Sampling",
    "Scorer",
    "build_generator",
    "build_scorer",
]
