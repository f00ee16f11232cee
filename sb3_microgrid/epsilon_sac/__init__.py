"""SAC with epsilon-random actions."""

from sb3_microgrid.epsilon_sac.epsilon_sac import EpsilonSAC

__all__ = ["EpsilonSAC"]
