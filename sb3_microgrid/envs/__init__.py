"""The microgrid environments: one vectorized physics core and its gymnasium and VecEnv faces."""

from .core import COST_COMPONENTS, EPISODE_KEYS, STEP_KEYS, MicrogridCore, observation_layout
from .layout import ObservationLayout
from .microgrid_env import MicrogridEnv
from .vec_env import MicrogridVecEnv

__all__ = [
    "COST_COMPONENTS",
    "EPISODE_KEYS",
    "STEP_KEYS",
    "MicrogridCore",
    "MicrogridEnv",
    "MicrogridVecEnv",
    "ObservationLayout",
    "observation_layout",
]
