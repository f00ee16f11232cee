"""PPO with twin value heads (min or mean) and an exact-KL early stop; the launcher's name is ``twin_ppo``."""

from sb3_microgrid.twin_ppo.policies import MlpPolicy, TwinValueActorCriticPolicy
from sb3_microgrid.twin_ppo.twin_ppo import TwinValuePPO

__all__ = ["MlpPolicy", "TwinValueActorCriticPolicy", "TwinValuePPO"]
