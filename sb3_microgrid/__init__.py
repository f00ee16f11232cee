"""sb3_microgrid: Stable-Baselines3 extension for microgrid energy management.

Importing the package registers the gymnasium environments ``Microgrid-v0`` and ``MicrogridGoal-v0``.
The algorithms are exported here, as ``sb3_contrib`` exports its own.
"""

from gymnasium.envs.registration import register, registry

from .dyna import DynaSAC
from .epsilon_sac import EpsilonSAC
from .epsilon_td3 import EpsilonTD3
from .envs import MicrogridEnv, MicrogridVecEnv, ObservationLayout
from .paired_ars import PairedARS
from .per_sac import PerSAC
from .per_td3 import PerTD3
from .scenario import Difficulty, Scenario, ScenarioError, load_scenario
from .twin_ppo import TwinValuePPO

__version__ = "0.1.0"

if "Microgrid-v0" not in registry:
    register(id="Microgrid-v0", entry_point="sb3_microgrid.envs.microgrid_env:MicrogridEnv")
if "MicrogridGoal-v0" not in registry:
    register(id="MicrogridGoal-v0", entry_point="sb3_microgrid.goal_env:MicrogridGoalEnv")

__all__ = [
    "Difficulty",
    "DynaSAC",
    "EpsilonSAC",
    "EpsilonTD3",
    "MicrogridEnv",
    "MicrogridVecEnv",
    "ObservationLayout",
    "PairedARS",
    "PerSAC",
    "PerTD3",
    "Scenario",
    "ScenarioError",
    "TwinValuePPO",
    "load_scenario",
]
