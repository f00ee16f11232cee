"""sb3_microgrid: Stable-Baselines3 extension for microgrid energy management.

Importing the package registers the gymnasium environments ``Microgrid-v0`` and ``MicrogridGoal-v0``.
The algorithms are exported here, as ``sb3_contrib`` exports its own. They and the environments are
imported on first use (PEP 562), so ``import sb3_microgrid`` loads neither torch nor Stable-Baselines3:
the site controller (:mod:`sb3_microgrid.deploy`) runs without them.
"""

from gymnasium.envs.registration import register, registry

from ._lazy import lazy_exports
from .scenario import Difficulty, Scenario, ScenarioError, load_scenario

__version__ = "0.1.0"

if "Microgrid-v0" not in registry:
    register(id="Microgrid-v0", entry_point="sb3_microgrid.envs.microgrid_env:MicrogridEnv")
if "MicrogridGoal-v0" not in registry:
    register(id="MicrogridGoal-v0", entry_point="sb3_microgrid.goal_env:MicrogridGoalEnv")

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DynaSAC": ".dyna",
        "EpsilonSAC": ".epsilon_sac",
        "EpsilonTD3": ".epsilon_td3",
        "MicrogridEnv": ".envs",
        "MicrogridVecEnv": ".envs",
        "MultiSiteVecEnv": ".envs.multi_site",
        "ObservationLayout": ".envs",
        "PairedARS": ".paired_ars",
        "PerSAC": ".per_sac",
        "PerTD3": ".per_td3",
        "Reptile": ".reptile",
        "TwinValuePPO": ".twin_ppo",
    },
)

__all__ = [
    "Difficulty",
    "DynaSAC",
    "EpsilonSAC",
    "EpsilonTD3",
    "MicrogridEnv",
    "MicrogridVecEnv",
    "MultiSiteVecEnv",
    "ObservationLayout",
    "PairedARS",
    "PerSAC",
    "PerTD3",
    "Reptile",
    "Scenario",
    "ScenarioError",
    "TwinValuePPO",
    "load_scenario",
]
