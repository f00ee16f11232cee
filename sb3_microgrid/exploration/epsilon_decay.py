"""Linear decay of ε for the epsilon-random pieces (PPO's policy, ``EpsilonSAC`` / ``EpsilonTD3``)."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from ..common.epsilon import EpsilonOffPolicyMixin, check_epsilon
from .epsilon_policy import EpsilonActorCriticPolicy


def epsilon_owner(model: BaseAlgorithm) -> EpsilonActorCriticPolicy | EpsilonOffPolicyMixin:
    """The object whose ``epsilon`` attribute drives ``model``'s exploration: its policy for PPO/A2C, the
    algorithm itself for :class:`EpsilonSAC` / :class:`EpsilonTD3`."""
    if isinstance(model.policy, EpsilonActorCriticPolicy):
        return model.policy
    if isinstance(model, EpsilonOffPolicyMixin):
        return model
    raise TypeError(f"{type(model).__name__} with {type(model.policy).__name__} has no epsilon exploration")


class EpsilonDecayCallback(BaseCallback):
    """Decays ε linearly from ``initial_epsilon`` to ``final_epsilon`` over the first ``decay_steps`` env steps
    (``model.num_timesteps``), then holds it. ε is set at each rollout start, so under PPO it is the same while
    the rollout is collected and while ``train()`` evaluates it. Logs ``exploration/epsilon``.

    :param initial_epsilon: ε at step 0
    :param final_epsilon: ε from ``decay_steps`` on
    :param decay_steps: number of env steps (summed over envs) of the decay
    :param verbose: verbosity
    """

    def __init__(self, initial_epsilon: float = 0.2, final_epsilon: float = 0.0, decay_steps: int = 100_000, verbose: int = 0) -> None:
        super().__init__(verbose)
        if decay_steps <= 0:
            raise ValueError(f"decay_steps must be positive, got {decay_steps}")
        self.initial_epsilon = check_epsilon(initial_epsilon)
        self.final_epsilon = check_epsilon(final_epsilon)
        self.decay_steps = decay_steps

    def _init_callback(self) -> None:
        self._owner = epsilon_owner(self.model)

    def _on_rollout_start(self) -> None:
        progress = min(self.model.num_timesteps / self.decay_steps, 1.0)
        self._owner.epsilon = self.initial_epsilon + progress * (self.final_epsilon - self.initial_epsilon)
        self.logger.record("exploration/epsilon", self._owner.epsilon)

    def _on_step(self) -> bool:
        return True
