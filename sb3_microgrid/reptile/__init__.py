"""Reptile (first-order meta-learning, Nichol et al. 2018) around PPO, over microgrid sites; registry name ``reptile``."""

from sb3_microgrid.reptile.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_microgrid.reptile.reptile import Reptile, refuse_reptile

__all__ = ["CnnPolicy", "MlpPolicy", "MultiInputPolicy", "Reptile", "refuse_reptile"]
