"""The pipeline's stages (pipeline.PIPELINE names their work classes), each `run_shard(ctx, stage, domain,
shard)` through one runner."""

from .runner import run_shard

__all__ = ["run_shard"]
