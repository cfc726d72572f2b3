"""The pipeline's stages, each `run_shard(ctx, stage, domain, shard)` through one runner."""

from .runner import WORK, run_shard

__all__ = ["WORK", "run_shard"]
