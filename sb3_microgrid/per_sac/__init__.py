"""SAC with prioritized experience replay."""

from sb3_microgrid.per_sac.per_sac import PerSAC

__all__ = ["PerSAC"]
