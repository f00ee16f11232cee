"""The microgrid environments: one vectorized physics core and its gymnasium and VecEnv faces."""

from .core import COST_COMPONENTS, EPISODE_KEYS, STEP_KEYS, MicrogridCore, observation_layout
from .layout import ActionLayout, ObservationLayout
from .microgrid_env import MicrogridEnv
from .vec_env import MicrogridVecEnv

__all__ = [
    "ActionLayout",
    "COST_COMPONENTS",
    "EPISODE_KEYS",
    "STEP_KEYS",
    "MicrogridCore",
    "MicrogridEnv",
    "MicrogridVecEnv",
    "ObservationLayout",
    "observation_layout",
]
