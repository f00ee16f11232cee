"""Reptile's policies are PPO's: the meta-learned initial weights are those of an ordinary actor-critic, which
``PPO.load`` fine-tunes."""

from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy
