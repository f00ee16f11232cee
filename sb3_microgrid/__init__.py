"""sb3_microgrid: Stable-Baselines3 extension for microgrid energy management.

Importing the package registers the gymnasium environments ``Microgrid-v0`` and ``MicrogridGoal-v0``.
"""

from gymnasium.envs.registration import register, registry

from .envs import MicrogridEnv, MicrogridVecEnv, ObservationLayout
from .scenario import Difficulty, Scenario, ScenarioError, load_scenario

__version__ = "0.1.0"

if "Microgrid-v0" not in registry:
    register(id="Microgrid-v0", entry_point="sb3_microgrid.envs.microgrid_env:MicrogridEnv")
if "MicrogridGoal-v0" not in registry:
    register(id="MicrogridGoal-v0", entry_point="sb3_microgrid.envs.goal_env:MicrogridGoalEnv")

__all__ = ["Difficulty", "MicrogridEnv", "MicrogridVecEnv", "ObservationLayout", "Scenario", "ScenarioError", "load_scenario"]
