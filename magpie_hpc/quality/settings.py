"""The `[quality]` section lives with the rest of the config (magpie_hpc/config/quality.py); this
path stays because the quality report imports it."""

from ..config.quality import AGREEMENT_LEVEL, QualityConfig

__all__ = ["AGREEMENT_LEVEL", "QualityConfig"]
