"""Exploration pieces, each usable alone with ``model.learn()``: the epsilon-random PPO/A2C policy and the ε decay
callback, parameter-space noise (callback) and Random Network Distillation (VecEnv wrapper). The epsilon-random
off-policy algorithms are :class:`~sb3_microgrid.epsilon_sac.EpsilonSAC` and
:class:`~sb3_microgrid.epsilon_td3.EpsilonTD3`. See ``docs/training_exploration.md``."""

from .epsilon_decay import EpsilonDecayCallback, epsilon_owner
from .epsilon_policy import EpsilonActorCriticPolicy
from .param_noise import ParameterNoiseCallback, actor_module_names, end_perturbation, unperturbed
from .rnd import RNDRewardWrapper

__all__ = [
    "EpsilonActorCriticPolicy",
    "EpsilonDecayCallback",
    "ParameterNoiseCallback",
    "RNDRewardWrapper",
    "actor_module_names",
    "end_perturbation",
    "epsilon_owner",
    "unperturbed",
]
