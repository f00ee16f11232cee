"""TD3 with epsilon-random actions."""

from sb3_microgrid.epsilon_td3.epsilon_td3 import EpsilonTD3

__all__ = ["EpsilonTD3"]
