"""Exploration pieces, each usable alone with ``model.learn()``: epsilon-random actions (PPO policy, SAC/TD3
subclasses, decay callback), parameter-space noise (callback) and Random Network Distillation (VecEnv wrapper).
See ``docs/training_exploration.md``."""

from .epsilon import (
    EpsilonActorCriticPolicy,
    EpsilonDecayCallback,
    EpsilonOffPolicyMixin,
    EpsilonSAC,
    EpsilonTD3,
    epsilon_owner,
)
from .param_noise import ParameterNoiseCallback, actor_module_names
from .rnd import RNDRewardWrapper

__all__ = [
    "EpsilonActorCriticPolicy",
    "EpsilonDecayCallback",
    "EpsilonOffPolicyMixin",
    "EpsilonSAC",
    "EpsilonTD3",
    "ParameterNoiseCallback",
    "RNDRewardWrapper",
    "actor_module_names",
    "epsilon_owner",
]
