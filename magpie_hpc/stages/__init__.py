"""The pipeline's stages (pipeline.PIPELINE names their work classes), each shard through one runner."""

from .runner import run_shard

__all__ = ["run_shard"]
