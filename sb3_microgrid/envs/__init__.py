"""The microgrid environments: one vectorized physics core and its gymnasium and VecEnv faces.

The names below are imported on first use (PEP 562), so a module of this package (the supervisor, the
layouts) imports alone, without gymnasium, Stable-Baselines3 or the data generator behind the env.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("COST_COMPONENTS", "EPISODE_KEYS", "STEP_KEYS", "MicrogridCore", "observation_layout"), ".core"),
        **dict.fromkeys(("ActionLayout", "ObservationLayout"), ".layout"),
        "MicrogridEnv": ".microgrid_env",
        "MicrogridVecEnv": ".vec_env",
    },
)

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
