"""Policy pieces for SB3: features extractors that read the observation's layout."""

from .attention import ForecastAttentionExtractor

__all__ = ["ForecastAttentionExtractor"]
