"""TD3 with prioritized experience replay."""

from sb3_microgrid.per_td3.per_td3 import PerTD3

__all__ = ["PerTD3"]
